package io.flatmon.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * dashboards/*.json type-checked against Grafana's published dashboard model: @grafana/schema's
 * Dashboard type, and each panel's options against its panel plugin's types, with the TypeScript
 * compiler (src/test/dashboards-schema/check.mjs; npm packages pinned by its package-lock.json and
 * installed under target/). The few diagnostics that are the types' limits are allow-listed there,
 * each with its reason.
 */
class DashboardSchemaTest {
  private static final Path SOURCE = Path.of("src", "test", "dashboards-schema");
  private static final Path WORK = Path.of("target", "dashboards-schema");
  private static final ObjectMapper JSON = new ObjectMapper();

  @BeforeAll
  static void installGrafanaSchema() throws Exception {
    Files.createDirectories(WORK);
    byte[] lock = Files.readAllBytes(SOURCE.resolve("package-lock.json"));
    Path installed = WORK.resolve("node_modules").resolve(".flatmon-lock");
    if (!Files.exists(installed) || !java.util.Arrays.equals(Files.readAllBytes(installed), lock)) {
      Files.copy(SOURCE.resolve("package.json"), WORK.resolve("package.json"),
          java.nio.file.StandardCopyOption.REPLACE_EXISTING);
      Files.write(WORK.resolve("package-lock.json"), lock);
      Result npm = run(WORK, 300, "npm", "ci", "--no-audit", "--no-fund", "--prefer-offline");
      assertEquals(0, npm.exit(), "npm ci of @grafana/schema and typescript failed:\n" + npm.output());
      Files.write(installed, lock);
    }
  }

  @Test
  void dashboardsMatchGrafanasSchema() throws Exception {
    List<String> args = new ArrayList<>();
    try (Stream<Path> files = Files.list(Path.of("dashboards"))) {
      files.filter(p -> p.toString().endsWith(".json")).sorted().forEach(p -> args.add(p.toString()));
    }
    assertEquals(3, args.size(), "the three dashboards");
    Result check = check(args);
    System.out.println(check.output());
    assertEquals(0, check.exit(), "dashboards vs @grafana/schema:\n" + check.output());
    assertTrue(check.output().contains(" 0 problems"), check.output());
  }

  /** Breaking a dashboard on purpose: each kind of mistake is reported, in its own file. */
  @Test
  void brokenDashboardsFail(@TempDir Path dir) throws Exception {
    Path wrongType = breakPanel(dir, "wrong-type", p -> p.put("type", "stat"));
    Path unknownType = breakPanel(dir, "unknown-type", p -> p.put("type", "timeseriez"));
    Path misspelled = breakPanel(dir, "misspelled-field", p -> p.set("gridpos", p.remove("gridPos")));
    Path badEnum = breakPanel(dir, "bad-enum", p -> ((ObjectNode) p.path("fieldConfig").path("defaults")
        .path("color")).put("mode", "palette-classix"));
    Path badLegend = breakPanel(dir, "bad-option", p -> ((ObjectNode) p.path("options").path("legend"))
        .put("placment", "bottom"));
    Result check = check(List.of(wrongType.toString(), unknownType.toString(), misspelled.toString(),
        badEnum.toString(), badLegend.toString()));
    System.out.println(check.output());
    assertEquals(1, check.exit(), check.output());
    String out = check.output();
    assertProblem(out, "gen/wrong-type.ts", "TS2353"); // a time series' legend/tooltip are no stat options
    assertProblem(out, "unknown-type.json", "unknown panel type \"timeseriez\"");
    assertProblem(out, "gen/misspelled-field.ts", "\"gridpos\"' does not exist");
    assertProblem(out, "gen/bad-enum.ts", "\"palette-classix\"");
    assertProblem(out, "gen/bad-option.ts", "\"placment\"' does not exist");
  }

  private static void assertProblem(String output, String file, String text) {
    assertTrue(output.lines().anyMatch(l -> l.startsWith("PROBLEM") && l.contains(file) && l.contains(text)),
        "expected a problem in " + file + " with " + text + ":\n" + output);
  }

  /** A copy of fleet-overview.json whose first time-series panel is changed by {@code edit}. */
  private static Path breakPanel(Path dir, String name, java.util.function.Consumer<ObjectNode> edit)
      throws IOException {
    JsonNode dashboard = JSON.readTree(Path.of("dashboards", "fleet-overview.json").toFile());
    for (JsonNode panel : dashboard.path("panels")) {
      if (panel.path("type").asText().equals("timeseries")) {
        edit.accept((ObjectNode) panel);
        Path out = dir.resolve(name + ".json");
        JSON.writerWithDefaultPrettyPrinter().writeValue(out.toFile(), dashboard);
        return out;
      }
    }
    throw new AssertionError("no time-series panel in fleet-overview.json");
  }

  private static Result check(List<String> dashboards) throws Exception {
    List<String> cmd = new ArrayList<>(List.of("node", SOURCE.resolve("check.mjs").toString(), WORK.toString()));
    cmd.addAll(dashboards);
    return run(Path.of("."), 120, cmd.toArray(String[]::new));
  }

  private record Result(int exit, String output) {
  }

  private static Result run(Path dir, int timeoutSeconds, String... cmd) throws Exception {
    Process p;
    try {
      p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
    } catch (IOException e) {
      throw new AssertionError(cmd[0] + " is needed (Debian nodejs and npm): scripts/install-deps test", e);
    }
    byte[] out = p.getInputStream().readAllBytes();
    assertTrue(p.waitFor(timeoutSeconds, TimeUnit.SECONDS), String.join(" ", cmd) + " timed out");
    return new Result(p.exitValue(), new String(out, StandardCharsets.UTF_8));
  }
}
