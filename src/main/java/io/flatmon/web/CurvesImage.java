package io.flatmon.web;

import io.flatmon.proto.v1.Estimate;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.SignalAction;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TrainerSignal;
import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.geom.Path2D;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.function.Function;
import javax.imageio.ImageIO;

/**
 * A PNG of one run's curves, drawn headless with Java 2D from the same final results the page charts:
 * κ and Tr H with ± one standard error bands, train/eval loss and their gap, accuracy, against the
 * training step, for one layer; WARN and STOP signals as vertical markers, STOP with its reason.
 */
public final class CurvesImage {
  private static final int WIDTH = 1200;
  private static final int HEIGHT = 760;
  private static final Color TRAIN = new Color(0x1f5fbf);
  private static final Color EVAL = new Color(0xe8590c);
  private static final Color GAP = new Color(0x7b2cbf);
  private static final Color STOP = new Color(0xc62828);
  private static final Color WARN = new Color(0xe0a100);
  private static final Color GRID = new Color(0xe3e6ec);
  private static final Color TEXT = new Color(0x1d2330);

  private CurvesImage() {
  }

  private record Panel(String title, Function<FlatnessResult, Estimate> value, boolean band, boolean gap,
      boolean needsLabels) {
  }

  private static final List<Panel> PANELS = List.of(
      new Panel("relative flatness κ (± 1 SE)", FlatnessResult::getRelativeFlatness, true, false, false),
      new Panel("Tr H (± 1 SE)", FlatnessResult::getHessianTrace, true, false, false),
      new Panel("loss: train, eval and gap (eval − train)", FlatnessResult::getLoss, false, true, true),
      new Panel("accuracy", FlatnessResult::getAccuracy, false, false, true));

  /**
   * Writes the curves of {@code layer} (the first layer in the results when null) to {@code png}.
   *
   * @param results final results of the run, any order
   */
  public static void write(Path png, String title, String layer, List<FlatnessResult> results,
      List<TrainerSignal> signals) throws IOException {
    System.setProperty("java.awt.headless", "true");
    String chosen = layer != null ? layer : results.stream().map(FlatnessResult::getLayer).findFirst().orElse("");
    List<FlatnessResult> rows = results.stream().filter(r -> r.getFinal() && r.getLayer().equals(chosen))
        .sorted(Comparator.comparingLong(FlatnessResult::getStep)).toList();
    BufferedImage image = new BufferedImage(WIDTH, HEIGHT, BufferedImage.TYPE_INT_RGB);
    Graphics2D g = image.createGraphics();
    try {
      g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
      g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
      g.setColor(Color.WHITE);
      g.fillRect(0, 0, WIDTH, HEIGHT);
      g.setColor(TEXT);
      g.setFont(new Font(Font.SANS_SERIF, Font.BOLD, 16));
      g.drawString(title + (chosen.isEmpty() ? "" : "  ·  layer " + chosen), 20, 28);
      g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
      g.setColor(TRAIN);
      g.drawString("— train", WIDTH - 250, 28);
      g.setColor(EVAL);
      g.drawString("— eval", WIDTH - 180, 28);
      g.setColor(STOP);
      g.drawString("| STOP", WIDTH - 120, 28);
      g.setColor(WARN);
      g.drawString("¦ WARN", WIDTH - 65, 28);
      long minStep = rows.isEmpty() ? 0 : rows.get(0).getStep();
      long maxStep = rows.isEmpty() ? 1 : Math.max(rows.get(rows.size() - 1).getStep(), minStep + 1);
      int pw = (WIDTH - 60) / 2;
      int ph = (HEIGHT - 70) / 2;
      for (int i = 0; i < PANELS.size(); i++) {
        int x = 20 + (i % 2) * (pw + 20);
        int y = 45 + (i / 2) * (ph + 10);
        panel(g, PANELS.get(i), rows, signals, minStep, maxStep, x, y, pw, ph);
      }
    } finally {
      g.dispose();
    }
    ImageIO.write(image, "png", png.toFile());
  }

  private static void panel(Graphics2D g, Panel p, List<FlatnessResult> rows, List<TrainerSignal> signals,
      long minStep, long maxStep, int x, int y, int w, int h) {
    g.setColor(TEXT);
    g.setFont(new Font(Font.SANS_SERIF, Font.BOLD, 13));
    g.drawString(p.title(), x, y + 14);
    int left = x + 62;
    int top = y + 26;
    int right = x + w - 10;
    int bottom = y + h - 26;
    List<List<double[]>> series = new ArrayList<>(); // per split: {step, mean, se}
    for (Split split : List.of(Split.TRAIN, Split.EVAL)) {
      List<double[]> points = new ArrayList<>();
      for (FlatnessResult r : rows) {
        if (r.getSplit() == split && hasValue(r, p)) {
          Estimate e = p.value().apply(r);
          points.add(new double[] {r.getStep(), e.getMean(), e.getStandardError()});
        }
      }
      series.add(points);
    }
    List<double[]> gap = new ArrayList<>();
    if (p.gap()) {
      for (double[] t : series.get(0)) {
        for (double[] e : series.get(1)) {
          if (e[0] == t[0]) {
            gap.add(new double[] {t[0], e[1] - t[1], 0});
          }
        }
      }
    }
    double lo = Double.POSITIVE_INFINITY;
    double hi = Double.NEGATIVE_INFINITY;
    for (List<double[]> s : List.of(series.get(0), series.get(1), gap)) {
      for (double[] v : s) {
        double band = p.band() ? v[2] : 0;
        if (Double.isFinite(v[1] - band) && Double.isFinite(v[1] + band)) {
          lo = Math.min(lo, v[1] - band);
          hi = Math.max(hi, v[1] + band);
        }
      }
    }
    g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 11));
    g.setColor(GRID);
    g.drawRect(left, top, right - left, bottom - top);
    if (!(lo <= hi)) {
      g.setColor(Color.GRAY);
      g.drawString("not measured", left + 10, top + 20);
      return;
    }
    if (hi - lo < 1e-12 * Math.max(1, Math.abs(hi))) {
      hi += 0.5 * Math.max(1e-9, Math.abs(hi));
      lo -= 0.5 * Math.max(1e-9, Math.abs(lo));
    }
    double ylo = lo - 0.05 * (hi - lo);
    double yhi = hi + 0.05 * (hi - lo);
    Scale sx = new Scale(minStep, maxStep, left, right);
    Scale sy = new Scale(ylo, yhi, bottom, top);
    for (int k = 0; k <= 4; k++) {
      double v = ylo + k * (yhi - ylo) / 4;
      int py = (int) Math.round(sy.at(v));
      g.setColor(GRID);
      g.drawLine(left, py, right, py);
      g.setColor(Color.GRAY);
      String label = String.format(Locale.ROOT, "%.3g", v);
      g.drawString(label, left - 6 - g.getFontMetrics().stringWidth(label), py + 4);
      double s = minStep + k * (double) (maxStep - minStep) / 4;
      int px = (int) Math.round(sx.at(s));
      String step = Long.toString(Math.round(s));
      g.drawString(step, px - g.getFontMetrics().stringWidth(step) / 2, bottom + 14);
    }
    g.drawString("step", (left + right) / 2 - 10, bottom + 26);
    Color[] colors = {TRAIN, EVAL};
    for (int s = 0; s < 2; s++) {
      List<double[]> pts = series.get(s);
      if (p.band() && pts.size() > 1) {
        Path2D.Double band = new Path2D.Double();
        for (int i = 0; i < pts.size(); i++) {
          double[] v = pts.get(i);
          if (i == 0) {
            band.moveTo(sx.at(v[0]), sy.at(v[1] + v[2]));
          } else {
            band.lineTo(sx.at(v[0]), sy.at(v[1] + v[2]));
          }
        }
        for (int i = pts.size() - 1; i >= 0; i--) {
          double[] v = pts.get(i);
          band.lineTo(sx.at(v[0]), sy.at(v[1] - v[2]));
        }
        band.closePath();
        Color c = colors[s];
        g.setColor(new Color(c.getRed(), c.getGreen(), c.getBlue(), 40));
        g.fill(band);
      }
      line(g, pts, sx, sy, colors[s], new BasicStroke(2f));
    }
    line(g, gap, sx, sy, GAP, new BasicStroke(1.5f, BasicStroke.CAP_BUTT, BasicStroke.JOIN_ROUND, 1f,
        new float[] {5f, 4f}, 0f));
    boolean labelled = false;
    for (TrainerSignal sig : signals) {
      if (sig.getAction() != SignalAction.STOP && sig.getAction() != SignalAction.WARN) {
        continue;
      }
      int px = (int) Math.round(sx.at(sig.getStep()));
      if (px < left || px > right) {
        continue;
      }
      boolean stop = sig.getAction() == SignalAction.STOP;
      g.setColor(stop ? STOP : WARN);
      g.setStroke(stop ? new BasicStroke(2.5f) : new BasicStroke(1f, BasicStroke.CAP_BUTT, BasicStroke.JOIN_ROUND,
          1f, new float[] {4f, 3f}, 0f));
      g.drawLine(px, top, px, bottom);
      if (stop && !labelled) {
        String label = "STOP " + sig.getReason() + " @" + sig.getStep();
        int tw = g.getFontMetrics().stringWidth(label);
        g.drawString(label, px + 5 + tw > right ? px - 5 - tw : px + 5, top + 14);
        labelled = true;
      }
    }
    g.setStroke(new BasicStroke(1f));
  }

  private static boolean hasValue(FlatnessResult r, Panel p) {
    return (!p.needsLabels() || r.getLabelledSamples() > 0) && Double.isFinite(p.value().apply(r).getMean());
  }

  private static void line(Graphics2D g, List<double[]> pts, Scale sx, Scale sy, Color color, BasicStroke stroke) {
    g.setColor(color);
    g.setStroke(stroke);
    Path2D.Double path = new Path2D.Double();
    boolean pen = false;
    for (double[] v : pts) {
      if (!Double.isFinite(v[1])) {
        pen = false;
        continue;
      }
      if (pen) {
        path.lineTo(sx.at(v[0]), sy.at(v[1]));
      } else {
        path.moveTo(sx.at(v[0]), sy.at(v[1]));
        pen = true;
      }
    }
    g.draw(path);
    if (pts.size() == 1 && Double.isFinite(pts.get(0)[1])) {
      g.fillOval((int) sx.at(pts.get(0)[0]) - 3, (int) sy.at(pts.get(0)[1]) - 3, 6, 6);
    }
  }

  private record Scale(double from, double to, double pixelFrom, double pixelTo) {
    double at(double v) {
      return pixelFrom + (v - from) / (to - from) * (pixelTo - pixelFrom);
    }
  }
}
