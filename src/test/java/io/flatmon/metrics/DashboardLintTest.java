package io.flatmon.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * Static checks of dashboards/*.json: Grafana 10+ schema, templated datasource everywhere, the run and
 * layer variables, a unit on every panel, $__rate_interval in rates, nothing hard-coded to a run.
 * Every problem of every dashboard is reported at once.
 */
class DashboardLintTest {
  private static final Pattern TEMPLATED_DATASOURCE = Pattern.compile("^\\$\\{?datasource}?$");
  /** A run matcher whose value is the run variable, in any of Grafana's spellings. */
  private static final Pattern RUN_VARIABLE = Pattern.compile("^(\\$run|\\$\\{run(:[a-z]+)?}|\\[\\[run]])$");
  private static final Pattern RUN_MATCHER = Pattern.compile("\\brun\\s*(=~|!~|!=|=)\\s*\"([^\"]*)\"");
  private static final Pattern RATE_CALL = Pattern.compile("\\b(rate|irate|increase|delta|idelta)\\s*\\(");
  private static final Pattern RANGE = Pattern.compile("\\[([^\\]]*)]");
  private static final Set<String> RATE_RANGES = Set.of("$__rate_interval", "${__rate_interval}", "$__range",
      "${__range}");
  private static final Set<String> OTHER_RANGES = Set.of("$__rate_interval", "${__rate_interval}", "$__range",
      "${__range}", "$__interval", "${__interval}");

  @Test
  void requiredDashboardsExist() {
    for (String name : Dashboards.REQUIRED) {
      assertTrue(Files.isRegularFile(Dashboards.DIR.resolve(name)), "missing dashboards/" + name);
    }
  }

  @Test
  void dashboardsFollowTheRules() {
    List<String> problems = new ArrayList<>();
    Set<String> uids = new HashSet<>();
    for (Path file : Dashboards.files()) {
      String name = file.getFileName().toString();
      JsonObject d;
      try {
        d = Dashboards.load(file);
      } catch (RuntimeException e) {
        problems.add(name + ": does not parse as JSON: " + e.getMessage());
        continue;
      }
      checkDashboard(name, d, uids, problems);
    }
    assertEquals(List.of(), problems, problems.size() + " problem(s):\n" + String.join("\n", problems));
  }

  @Test
  void everyExpressionIsCheckedForRatesAndRunIds() {
    List<String> problems = new ArrayList<>();
    int count = 0;
    for (Path file : Dashboards.files()) {
      for (Dashboards.Expr e : Dashboards.expressions(file)) {
        count++;
        checkExpression(e.toString(), e.expr(), problems);
      }
    }
    assertTrue(count >= 30, "suspiciously few expressions: " + count);
    assertEquals(List.of(), problems, problems.size() + " problem(s):\n" + String.join("\n", problems));
  }

  /** The lint itself must catch what it is meant to catch. */
  @Test
  void lintCatchesHardCodedRunsAndFixedRateWindows() {
    List<String> problems = new ArrayList<>();
    checkExpression("bad 1", "flatmon_loss{run=\"resnet-42\"}", problems);
    checkExpression("bad 2", "rate(flatmon_measured_samples_total{run=~\"$run\"}[5m])", problems);
    checkExpression("bad 3", "sum(rate(x[1m])) / sum(rate(y[$__rate_interval]))", problems);
    checkExpression("bad 4", "max_over_time(flatmon_loss{run=~\"a|$run\"}[$__interval])", problems);
    assertEquals(4, problems.size(), String.join("\n", problems));
    problems.clear();
    checkExpression("good", "sum by (run) (rate(flatmon_measured_samples_total{run=~\"${run}\", layer=~\"$layer\"}"
        + "[$__rate_interval])) + increase(x{run=\"$run\"}[$__range]) + changes(y{run=~\"${run:regex}\"}[$__interval])",
        problems);
    assertEquals(List.of(), problems);
  }

  private static void checkDashboard(String name, JsonObject d, Set<String> uids, List<String> problems) {
    String uid = Dashboards.string(d, "uid");
    if (uid.isEmpty() || !uids.add(uid)) {
      problems.add(name + ": missing or duplicate uid '" + uid + "'");
    }
    if (Dashboards.string(d, "title").isEmpty()) {
      problems.add(name + ": no title");
    }
    int schema = d.has("schemaVersion") ? d.get("schemaVersion").getAsInt() : 0;
    if (schema < 38) {
      problems.add(name + ": schemaVersion " + schema + " < 38 (Grafana 10)");
    }

    List<JsonObject> variables = Dashboards.variables(d);
    JsonObject datasource = find(variables, "datasource");
    if (datasource == null || !"datasource".equals(Dashboards.string(datasource, "type"))
        || !"prometheus".equals(Dashboards.string(datasource, "query"))) {
      problems.add(name + ": no datasource variable of type 'datasource' with query 'prometheus'");
    }
    for (String v : List.of("run", "layer")) {
      JsonObject variable = find(variables, v);
      if (variable == null || !"query".equals(Dashboards.string(variable, "type"))) {
        problems.add(name + ": no query variable '" + v + "'");
      }
    }
    for (JsonObject v : variables) {
      if (!"query".equals(Dashboards.string(v, "type"))) {
        continue;
      }
      String where = name + ": variable " + Dashboards.string(v, "name");
      checkDatasource(where, v.get("datasource"), problems);
      String query = Dashboards.variableQuery(v);
      if (Dashboards.variableAsPromql(v) == null) {
        problems.add(where + ": query is not label_values(<selector>, <label>): " + query);
      }
      checkExpression(where, query, problems);
    }

    Set<Integer> ids = new HashSet<>();
    List<JsonObject> panels = Dashboards.panels(d);
    if (panels.isEmpty()) {
      problems.add(name + ": no panels");
    }
    for (JsonObject p : panels) {
      String where = name + ": panel \"" + Dashboards.string(p, "title") + "\"";
      if (!p.has("id") || !ids.add(p.get("id").getAsInt())) {
        problems.add(where + ": missing or duplicate id");
      }
      if (!p.has("gridPos")) {
        problems.add(where + ": no gridPos");
      }
      checkDatasource(where, p.get("datasource"), problems);
      String unit = p.has("fieldConfig") && p.getAsJsonObject("fieldConfig").has("defaults")
          ? Dashboards.string(p.getAsJsonObject("fieldConfig").getAsJsonObject("defaults"), "unit") : "";
      if (unit.isBlank()) {
        problems.add(where + ": no unit (fieldConfig.defaults.unit)");
      }
      if (Dashboards.array(p, "targets").isEmpty()) {
        problems.add(where + ": no targets");
      }
      for (JsonElement t : Dashboards.array(p, "targets")) {
        JsonObject target = t.getAsJsonObject();
        String tw = where + " target " + Dashboards.string(target, "refId");
        checkDatasource(tw, target.get("datasource"), problems);
        if (Dashboards.string(target, "expr").isBlank()) {
          problems.add(tw + ": empty expr");
        }
      }
    }
    for (JsonObject a : Dashboards.annotations(d)) {
      checkDatasource(name + ": annotation \"" + Dashboards.string(a, "name") + "\"", a.get("datasource"), problems);
    }
  }

  private static void checkDatasource(String where, JsonElement ds, List<String> problems) {
    String uid = ds != null && ds.isJsonObject() ? Dashboards.string(ds.getAsJsonObject(), "uid")
        : ds != null && ds.isJsonPrimitive() ? ds.getAsString() : "";
    if (!TEMPLATED_DATASOURCE.matcher(uid).matches()) {
      problems.add(where + ": datasource is '" + uid + "', not ${datasource}");
    }
  }

  static void checkExpression(String where, String expr, List<String> problems) {
    Matcher run = RUN_MATCHER.matcher(expr);
    while (run.find()) {
      if (!RUN_VARIABLE.matcher(run.group(2)).matches()) {
        problems.add(where + ": hard-coded run matcher " + run.group());
      }
    }
    List<int[]> rateSpans = new ArrayList<>();
    Matcher call = RATE_CALL.matcher(expr);
    while (call.find()) {
      int end = closingParen(expr, call.end() - 1);
      rateSpans.add(new int[] {call.end(), end});
      String args = expr.substring(call.end(), end);
      Matcher range = RANGE.matcher(args);
      boolean any = false;
      while (range.find()) {
        any = true;
        if (!RATE_RANGES.contains(range.group(1).trim())) {
          problems.add(where + ": " + call.group(1) + "() over [" + range.group(1) + "], use [$__rate_interval]");
        }
      }
      if (!any) {
        problems.add(where + ": " + call.group(1) + "() without a range selector");
      }
    }
    Matcher range = RANGE.matcher(expr);
    while (range.find()) {
      String r = range.group(1).trim();
      boolean inRate = rateSpans.stream().anyMatch(s -> range.start() >= s[0] && range.end() <= s[1]);
      if (!inRate && !OTHER_RANGES.contains(r)) {
        problems.add(where + ": fixed range [" + r + "], use a Grafana interval variable");
      }
    }
  }

  private static int closingParen(String s, int open) {
    int depth = 0;
    for (int i = open; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '"') {
        i = s.indexOf('"', i + 1);
        if (i < 0) {
          return s.length();
        }
      } else if (c == '(') {
        depth++;
      } else if (c == ')' && --depth == 0) {
        return i;
      }
    }
    return s.length();
  }

  private static JsonObject find(List<JsonObject> variables, String name) {
    return variables.stream().filter(v -> name.equals(Dashboards.string(v, "name"))).findFirst().orElse(null);
  }
}
