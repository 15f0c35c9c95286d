package io.flatmon.metrics;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/** The Grafana dashboards under dashboards/: loading, their panels, PromQL expressions and variables. */
final class Dashboards {
  static final Path DIR = Path.of("dashboards");
  /** The dashboards flatmon ships (fleet overview, run detail, service health); more may be added. */
  static final List<String> REQUIRED = List.of("fleet-overview.json", "run-detail.json", "service-health.json");
  /**
   * Metrics exported only in some deployments: an expression using one must evaluate, but may be empty.
   * flatmon_hessian_max_eigenvalue appears only for measurements that compute λ_max.
   */
  static final Set<String> OPTIONAL_METRICS = Set.of("flatmon_hessian_max_eigenvalue");

  private Dashboards() {
  }

  /** One PromQL expression of a dashboard, with where it is (for messages). */
  record Expr(String dashboard, String where, String expr) {
    boolean optional() {
      return OPTIONAL_METRICS.stream().anyMatch(expr::contains);
    }

    @Override
    public String toString() {
      return dashboard + " / " + where + ": " + expr;
    }
  }

  static List<Path> files() {
    try (Stream<Path> s = Files.list(DIR)) {
      return s.filter(p -> p.getFileName().toString().endsWith(".json")).sorted().toList();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot list " + DIR.toAbsolutePath(), e);
    }
  }

  static JsonObject load(Path file) {
    try {
      return JsonParser.parseString(Files.readString(file, StandardCharsets.UTF_8)).getAsJsonObject();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Every panel except rows, including the panels of collapsed rows. */
  static List<JsonObject> panels(JsonObject dashboard) {
    List<JsonObject> out = new ArrayList<>();
    collect(array(dashboard, "panels"), out);
    return out;
  }

  private static void collect(JsonArray panels, List<JsonObject> out) {
    for (JsonElement e : panels) {
      JsonObject p = e.getAsJsonObject();
      if ("row".equals(string(p, "type"))) {
        collect(array(p, "panels"), out);
      } else {
        out.add(p);
      }
    }
  }

  static List<JsonObject> variables(JsonObject dashboard) {
    List<JsonObject> out = new ArrayList<>();
    JsonObject templating = dashboard.has("templating") ? dashboard.getAsJsonObject("templating") : new JsonObject();
    array(templating, "list").forEach(v -> out.add(v.getAsJsonObject()));
    return out;
  }

  static List<JsonObject> annotations(JsonObject dashboard) {
    List<JsonObject> out = new ArrayList<>();
    JsonObject a = dashboard.has("annotations") ? dashboard.getAsJsonObject("annotations") : new JsonObject();
    array(a, "list").forEach(v -> out.add(v.getAsJsonObject()));
    return out;
  }

  /** The query of a query variable (a string, or an object with a "query" string). */
  static String variableQuery(JsonObject variable) {
    JsonElement q = variable.get("query");
    if (q == null || q.isJsonNull()) {
      return "";
    }
    if (q.isJsonObject()) {
      return string(q.getAsJsonObject(), "query");
    }
    return q.getAsString();
  }

  /** Every PromQL expression: panel targets and annotation queries. */
  static List<Expr> expressions(Path file) {
    JsonObject d = load(file);
    String name = file.getFileName().toString();
    List<Expr> out = new ArrayList<>();
    for (JsonObject p : panels(d)) {
      for (JsonElement t : array(p, "targets")) {
        JsonObject target = t.getAsJsonObject();
        out.add(new Expr(name, "panel \"" + string(p, "title") + "\" " + string(target, "refId"),
            string(target, "expr")));
      }
    }
    for (JsonObject a : annotations(d)) {
      if (a.has("expr")) {
        out.add(new Expr(name, "annotation \"" + string(a, "name") + "\"", string(a, "expr")));
      }
    }
    return out;
  }

  private static final Pattern LABEL_VALUES =
      Pattern.compile("^\\s*label_values\\(\\s*(.*?)\\s*,\\s*([a-zA-Z_][a-zA-Z0-9_]*)\\s*\\)\\s*$");

  /**
   * A query variable's label_values(expr, label) as PromQL that returns one series per value, or null
   * when the variable is not a label_values query.
   */
  static String variableAsPromql(JsonObject variable) {
    Matcher m = LABEL_VALUES.matcher(variableQuery(variable));
    if (!m.matches()) {
      return null;
    }
    return "count by (" + m.group(2) + ") (" + m.group(1) + ")";
  }

  private static final Pattern VARIABLE =
      Pattern.compile("\\$\\{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-zA-Z]+)?}|\\$([a-zA-Z_][a-zA-Z0-9_]*)|\\[\\[([a-zA-Z_][a-zA-Z0-9_]*)]]");

  /**
   * Replaces Grafana variables ($x, ${x}, ${x:format}, [[x]]) by the given values; the built-ins
   * $__rate_interval, $__interval and $__range must be in {@code values} too.
   *
   * @throws IllegalArgumentException for a variable without a value
   */
  static String substitute(String expr, Map<String, String> values) {
    Matcher m = VARIABLE.matcher(expr);
    StringBuilder out = new StringBuilder();
    while (m.find()) {
      String name = m.group(1) != null ? m.group(1) : m.group(2) != null ? m.group(2) : m.group(3);
      String value = values.get(name);
      if (value == null) {
        throw new IllegalArgumentException("no value for variable $" + name + " in " + expr);
      }
      m.appendReplacement(out, Matcher.quoteReplacement(value));
    }
    m.appendTail(out);
    return out.toString();
  }

  static JsonArray array(JsonObject o, String key) {
    JsonElement e = o.get(key);
    return e != null && e.isJsonArray() ? e.getAsJsonArray() : new JsonArray();
  }

  static String string(JsonObject o, String key) {
    JsonElement e = o.get(key);
    return e != null && e.isJsonPrimitive() ? e.getAsString() : "";
  }
}
