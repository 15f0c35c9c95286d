package io.flatmon.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.service.FlatmonService;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * flatmon (embedded broker) fed by a real producer, scraped every second by a real Prometheus server:
 * the exposition passes `promtool check metrics` in both formats, Prometheus scrapes it cleanly, every
 * PromQL expression of every dashboard (variables substituted) returns data, the variables list the
 * live run, ended runs' series disappear and rejections are counted.
 */
class PrometheusIntegrationTest {
  private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
  private static final String OPENMETRICS = "application/openmetrics-text; version=1.0.0";
  private static final Path RULES = Path.of("deploy/prometheus/flatmon-rules.yml");

  @TempDir
  static Path dir;

  private static FlatmonService service;
  private static Prometheus prometheus;
  private static String liveRun;
  private static String endedRun;
  private static String instance;

  @BeforeAll
  static void start() throws Exception {
    Prometheus.binary("prometheus");
    Prometheus.binary("promtool");
    long t0 = System.nanoTime();
    String suffix = UUID.randomUUID().toString().substring(0, 6);
    liveRun = "live-" + suffix;
    endedRun = "ended-" + suffix;
    service = SyntheticTelemetry.start(SyntheticTelemetry.config(null, dir.resolve("flatmon"), "flatmon-prom-" + suffix,
        3));
    instance = "127.0.0.1:" + service.httpPort();
    prometheus = Prometheus.start(dir.resolve("prometheus"), List.of(instance), Duration.ofSeconds(1),
        List.of(RULES));
    prometheus.awaitSeries("up{job=\"flatmon\"} == 1", Duration.ofSeconds(30));
    System.out.println("PrometheusIntegrationTest: flatmon and Prometheus up after " + SyntheticTelemetry.since(t0));

    try (KafkaProducer<String, byte[]> producer = SyntheticTelemetry.producer(service.bootstrapServers())) {
      SyntheticTelemetry live = new SyntheticTelemetry(liveRun, 11);
      SyntheticTelemetry ended = new SyntheticTelemetry(endedRun, 12);
      for (SyntheticTelemetry run : List.of(live, ended)) {
        List<TelemetryRecord> records = new ArrayList<>();
        records.add(run.started());
        for (int s = 1; s <= 3; s++) {
          records.addAll(run.step(100L * s, 1, 1, true));
        }
        if (run == ended) {
          records.add(run.ended(300));
        }
        run.send(producer, records);
      }
      // Not a TelemetryRecord: rejected as UNDECODABLE.
      SyntheticTelemetry.send(producer, liveRun, List.of(new byte[] {(byte) 0xff, 0x01, 0x02}));
    }

    // Every (layer, split) of the live run measured, the rejection counted, the ended run released.
    long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
    String exposition = "";
    while (System.nanoTime() < deadline) {
      exposition = service.metrics().scrape(null);
      if (count(exposition, "flatmon_measurement_step{", liveRun) == 4
          && exposition.contains("flatmon_rejected_records_total{reason=\"undecodable\"} 1")
          && !exposition.contains("\"" + endedRun + "\"")) {
        break;
      }
      Thread.sleep(250);
    }
    assertEquals(4, count(exposition, "flatmon_measurement_step{", liveRun),
        "the live run's 2 layers x 2 splits are exported:\n" + grep(exposition, "flatmon_measurement_step"));
    assertFalse(exposition.contains("\"" + endedRun + "\""), "the ended run is released after its retention");
    System.out.println("PrometheusIntegrationTest: telemetry measured after " + SyntheticTelemetry.since(t0));

    // Prometheus has the per-run series and the Kafka Streams metrics (Micrometer binds them lazily).
    List<String> selectors = List.of(
        "flatmon_hessian_trace{run=\"" + liveRun + "\"}",
        "flatmon_rejected_records_total{reason=\"undecodable\"}",
        "kafka_stream_thread_process_rate",
        "kafka_stream_task_process_rate",
        "kafka_stream_state_total_sst_files_size",
        "kafka_consumer_fetch_manager_records_lag_max{topic=\"flatmon.v1.telemetry\"}");
    prometheus.awaitSeries("flatmon_rejected_records_total{reason=\"undecodable\"} >= 1", Duration.ofSeconds(90));
    for (String q : selectors) {
      prometheus.awaitSeries(q, Duration.ofSeconds(90));
    }
    prometheus.awaitNoSeries("flatmon_measurement_step{run=\"" + endedRun + "\"}", Duration.ofSeconds(15));
    // Rates and increases need two samples of the newest series: wait until Prometheus holds them.
    for (String q : selectors) {
      prometheus.awaitSeries("count_over_time(" + q + "[1m]) >= 2", Duration.ofSeconds(30));
    }
    System.out.println("PrometheusIntegrationTest: Prometheus has every metric after " + SyntheticTelemetry.since(t0));
  }

  @AfterAll
  static void stop() {
    if (prometheus != null) {
      prometheus.close();
    }
    if (service != null) {
      service.close();
    }
  }

  @Test
  void textExpositionPassesPromtool() throws Exception {
    HttpResponse<String> r = get("/metrics", null);
    assertEquals(200, r.statusCode());
    assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/plain; version=0.0.4"),
        r.headers().toString());
    Prometheus.Result check = Prometheus.checkMetrics(r.body());
    assertEquals(0, check.exitCode(), "promtool check metrics:\n" + check.output());
  }

  /**
   * promtool check metrics reads only the Prometheus text format (it stops at OpenMetrics' "info" type),
   * so the OpenMetrics exposition goes through Prometheus' strict OpenMetrics parser instead, and
   * through the Prometheus server's own scrape, which negotiates OpenMetrics first.
   */
  @Test
  void openMetricsExpositionParsesStrictlyAndPrometheusScrapesIt() throws Exception {
    HttpResponse<String> r = get("/metrics", OPENMETRICS);
    assertEquals(200, r.statusCode());
    assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("application/openmetrics-text"),
        r.headers().toString());
    String body = r.body();
    assertTrue(body.endsWith("# EOF\n"), "OpenMetrics ends with # EOF");
    Prometheus.Result parse = Prometheus.parseOpenMetrics(body, dir.resolve("openmetrics"));
    assertEquals(0, parse.exitCode(), "strict OpenMetrics parse:\n" + parse.output());
    long samples = body.lines().filter(l -> !l.isEmpty() && !l.startsWith("#")).count();
    assertTrue(parse.output().matches("(?s).*\\s" + samples + "\\s+" + samples + "\\s+" + samples + "\\s.*"),
        "every one of the " + samples + " samples became a series:\n" + parse.output());
    assertTrue(body.contains("flatmon_measurement_step{layer=\"" + SyntheticTelemetry.LAYERS.get(0) + "\",run=\""
        + liveRun + "\",split=\"train\"}"), "per-run series in OpenMetrics too");

    JsonArray targets = JsonParser.parseString(prometheus.targets()).getAsJsonObject().getAsJsonObject("data")
        .getAsJsonArray("activeTargets");
    assertEquals(1, targets.size(), targets.toString());
    JsonObject target = targets.get(0).getAsJsonObject();
    assertEquals("up", Dashboards.string(target, "health"), target.toString());
    assertEquals("", Dashboards.string(target, "lastError"), target.toString());
  }

  @Test
  void everyDashboardExpressionReturnsData() {
    Map<String, String> values = variableValues();
    List<String> failures = new ArrayList<>();
    int checked = 0;
    for (Path file : Dashboards.files()) {
      for (Dashboards.Expr e : Dashboards.expressions(file)) {
        checked++;
        String promql = Dashboards.substitute(e.expr(), values);
        String failure = evaluate(promql, e.optional());
        if (failure != null) {
          failures.add(e + "\n    evaluated as: " + promql + "\n    " + failure);
        }
      }
    }
    System.out.println("PrometheusIntegrationTest: evaluated " + checked + " dashboard expressions, "
        + failures.size() + " failed");
    assertTrue(checked >= 30, "suspiciously few expressions: " + checked);
    assertEquals(List.of(), failures, failures.size() + " of " + checked
        + " dashboard expressions failed or returned no data:\n" + String.join("\n", failures));
  }

  @Test
  void dashboardVariablesListTheLiveRunAndItsLayers() {
    Map<String, String> values = variableValues();
    List<String> failures = new ArrayList<>();
    for (Path file : Dashboards.files()) {
      for (JsonObject v : Dashboards.variables(Dashboards.load(file))) {
        String promql = Dashboards.variableAsPromql(v);
        if (promql == null) {
          continue;
        }
        String name = Dashboards.string(v, "name");
        String label = promql.substring("count by (".length(), promql.indexOf(')'));
        JsonArray series = prometheus.vector(Dashboards.substitute(promql, values));
        List<String> found = new ArrayList<>();
        series.forEach(s -> found.add(s.getAsJsonObject().getAsJsonObject("metric").get(label).getAsString()));
        String expected = values.get(name);
        if (!found.contains(expected)) {
          failures.add(file.getFileName() + " variable " + name + " (" + Dashboards.variableQuery(v) + "): "
              + found + " lacks " + expected);
        }
      }
    }
    assertEquals(List.of(), failures, String.join("\n", failures));
  }

  @Test
  void endedRunWasExportedAndThenDisappeared() {
    assertFalse(prometheus.vector("max_over_time(flatmon_measurement_step{run=\"" + endedRun + "\"}[10m])").isEmpty(),
        "Prometheus saw the ended run while it was live");
    assertTrue(prometheus.vector("flatmon_measurement_step{run=\"" + endedRun + "\"}").isEmpty(),
        "the ended run is gone now");
    assertTrue(prometheus.vector("flatmon_run_last_signal{run=\"" + endedRun + "\"}").isEmpty());
    assertFalse(service.metrics().scrape(null).contains(endedRun));
    assertEquals(1, prometheus.vector("flatmon_run_last_signal{run=\"" + liveRun + "\"}").size());
  }

  @Test
  void namingFollowsPrometheusRules() {
    String exposition = service.metrics().scrape(null);
    List<String> problems = new ArrayList<>();
    String type = "";
    String family = "";
    for (String line : exposition.split("\n")) {
      if (line.startsWith("# TYPE ")) {
        String[] parts = line.split(" ");
        family = parts[2];
        type = parts[3];
        if (type.equals("counter") && !family.endsWith("_total")) {
          problems.add("counter without _total: " + family);
        }
        if (!type.equals("counter") && family.endsWith("_total")) {
          problems.add(type + " named like a counter: " + family);
        }
        if (family.startsWith("flatmon_") && family.matches(".*_(milliseconds|ms|micros|nanos)(_.*)?")) {
          problems.add("not a base unit: " + family);
        }
      }
    }
    assertEquals(List.of(), problems);
    assertTrue(exposition.contains("# TYPE flatmon_batch_compute_seconds histogram"), "compute time in seconds");
    assertTrue(exposition.contains("# TYPE flatmon_publish_to_result_seconds histogram"));
    assertTrue(exposition.contains("# TYPE flatmon_measured_samples_total counter"));
  }

  /**
   * deploy/prometheus/flatmon-rules.yml on real metrics: every rule evaluates without error, and the
   * rejection alert fires for the undecodable record.
   */
  @Test
  void alertingRulesEvaluateAndTheRejectionAlertFires() {
    JsonObject rules = JsonParser.parseString(prometheus.get("/api/v1/rules")).getAsJsonObject();
    List<String> problems = new ArrayList<>();
    int count = 0;
    for (JsonElement g : rules.getAsJsonObject("data").getAsJsonArray("groups")) {
      for (JsonElement r : g.getAsJsonObject().getAsJsonArray("rules")) {
        JsonObject rule = r.getAsJsonObject();
        count++;
        if (!"ok".equals(Dashboards.string(rule, "health"))) {
          problems.add(Dashboards.string(rule, "name") + ": " + Dashboards.string(rule, "health") + " "
              + Dashboards.string(rule, "lastError"));
        }
      }
    }
    assertTrue(count >= 5, "rules loaded: " + rules);
    assertEquals(List.of(), problems);
    long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
    String alerts = "";
    while (System.nanoTime() < deadline) {
      alerts = prometheus.get("/api/v1/alerts");
      if (alerts.contains("\"FlatmonRecordsRejected\"") && alerts.contains("\"undecodable\"")) {
        break;
      }
      Prometheus.sleep(500);
    }
    assertTrue(alerts.contains("\"FlatmonRecordsRejected\"") && alerts.contains("\"undecodable\""),
        "the rejection alert fires: " + alerts);
    assertFalse(alerts.contains("FlatmonInstanceDown"), alerts);
  }

  /** Values for the dashboards' variables: the live run, its first layer, the train split. */
  private static Map<String, String> variableValues() {
    Map<String, String> v = new HashMap<>();
    v.put("run", liveRun);
    v.put("layer", SyntheticTelemetry.LAYERS.get(0));
    v.put("split", "train");
    v.put("instance", instance);
    v.put("datasource", "prometheus");
    v.put("__rate_interval", "1m");
    v.put("__interval", "15s");
    v.put("__range", "5m");
    return v;
  }

  /** Null if the query succeeded with data (or, optional, at least succeeded); else why not. */
  private static String evaluate(String promql, boolean optional) {
    JsonObject r = prometheus.query(promql);
    if (!"success".equals(Dashboards.string(r, "status"))) {
      return "Prometheus: " + Dashboards.string(r, "errorType") + ": " + Dashboards.string(r, "error");
    }
    JsonObject data = r.getAsJsonObject("data");
    String type = Dashboards.string(data, "resultType");
    JsonElement result = data.get("result");
    if (optional) {
      return null;
    }
    if ((type.equals("vector") || type.equals("matrix")) && result.getAsJsonArray().isEmpty()) {
      return "empty result";
    }
    return null;
  }

  private static HttpResponse<String> get(String path, String accept) throws IOException, InterruptedException {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://" + instance + path))
        .timeout(Duration.ofSeconds(10));
    if (accept != null) {
      b.header("Accept", accept);
    }
    return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
  }

  private static int count(String exposition, String prefix, String run) {
    int n = 0;
    for (String line : exposition.split("\n")) {
      if (line.startsWith(prefix) && line.contains("run=\"" + run + "\"")) {
        n++;
      }
    }
    return n;
  }

  private static String grep(String exposition, String prefix) {
    StringBuilder b = new StringBuilder();
    for (String line : exposition.split("\n")) {
      if (line.startsWith(prefix)) {
        b.append(line).append('\n');
      }
    }
    return b.toString();
  }
}
