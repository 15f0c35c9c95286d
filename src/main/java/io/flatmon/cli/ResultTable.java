package io.flatmon.cli;

import io.flatmon.proto.v1.Estimate;
import io.flatmon.proto.v1.FlatnessResult;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/** Formats results as an aligned text table: one row per (run, layer, step, split). */
final class ResultTable {
  private ResultTable() {
  }

  static void print(List<FlatnessResult> results, boolean eigen, PrintWriter out) {
    List<String[]> rows = new ArrayList<>();
    List<String> header = new ArrayList<>(List.of("run", "layer", "step", "split", "samples",
        "Tr H", "±se", "κ", "±se", "κ_norm", "±se"));
    if (eigen) {
      header.add("λ_max");
    }
    header.addAll(List.of("loss", "accuracy", "Tr H_V", "κ_V", "flags"));
    rows.add(header.toArray(String[]::new));
    for (FlatnessResult r : results) {
      List<String> row = new ArrayList<>(List.of(r.getRunId(), r.getLayer(), Long.toString(r.getStep()),
          r.getSplit().name().toLowerCase(Locale.ROOT), Long.toString(r.getSamples())));
      addEstimate(row, r.getHessianTrace());
      addEstimate(row, r.getRelativeFlatness());
      addEstimate(row, r.getRelativeFlatnessNormalized());
      if (eigen) {
        row.add(r.hasHessianMaxEigenvalue() ? number(r.getHessianMaxEigenvalue()) : "-");
      }
      row.add(r.getLabelledSamples() > 0 ? number(r.getLoss().getMean()) : "-");
      row.add(r.getLabelledSamples() > 0 ? String.format(Locale.ROOT, "%.4f", r.getAccuracy().getMean()) : "-");
      row.add(number(r.getClassifierHessianTrace().getMean()));
      row.add(number(r.getClassifierRelativeFlatness().getMean()));
      List<String> flags = new ArrayList<>();
      if (r.getNonFinite()) {
        flags.add("non-finite");
      }
      if (r.getWeightDecayTrace() != 0) {
        flags.add("+wd Tr " + number(r.getWeightDecayTrace()) + " κ " + number(r.getWeightDecayRelativeFlatness()));
      }
      row.add(flags.isEmpty() ? "" : String.join(", ", flags));
      rows.add(row.toArray(String[]::new));
    }
    int[] widths = new int[rows.get(0).length];
    for (String[] row : rows) {
      for (int i = 0; i < row.length; i++) {
        widths[i] = Math.max(widths[i], row[i].length());
      }
    }
    for (String[] row : rows) {
      StringBuilder sb = new StringBuilder();
      for (int i = 0; i < row.length; i++) {
        if (i > 0) {
          sb.append("  ");
        }
        boolean left = i < 4 || i == row.length - 1;
        String cell = row[i];
        String pad = " ".repeat(widths[i] - cell.length());
        sb.append(left ? cell + pad : pad + cell);
      }
      out.println(sb.toString().stripTrailing());
    }
  }

  private static void addEstimate(List<String> row, Estimate e) {
    row.add(number(e.getMean()));
    row.add(Double.isNaN(e.getStandardError()) ? "-" : number(e.getStandardError()));
  }

  static String number(double v) {
    if (Double.isNaN(v)) {
      return "NaN";
    }
    return String.format(Locale.ROOT, "%.7g", v);
  }
}
