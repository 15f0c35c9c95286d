package io.flatmon.web;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.flatmon.proto.v1.ActivationKind;
import io.flatmon.proto.v1.EarlyStopPolicy;
import io.flatmon.proto.v1.MonitoredQuantity;
import io.flatmon.proto.v1.PolicyMode;
import io.flatmon.proto.v1.RunStarted;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.service.FlatmonService;
import io.flatmon.stream.FlatmonTopology;
import io.flatmon.stream.it.Services;
import io.flatmon.stream.it.TelemetryFixtures;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.imageio.ImageIO;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;

/**
 * The live page in a real browser: a flatmon instance (embedded broker) measures four synthetic runs
 * (one told to STOP, one to WARN, one ended, one with a run id that needs URL encoding); headless
 * Debian Chromium loads the fleet and run views; the test compares the rendered DOM with the query
 * API's JSON and looks for the drawn curves and the STOP marker in the screenshots
 * (target/web-screenshots/). Last, a second instance joins and the browser, talking to it only, sees
 * every run, those it forwards to the first instance included.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class LivePageBrowserTest {
  private static final String CHROMIUM = "/usr/bin/chromium";
  private static final int STEPS = 4;
  private static final String PLAIN = "resnet18-wd5e-4";
  private static final String STOP = "resnet18:cutout,lr=0.1"; // sent encoded
  private static final String WARN = "vgg11-dropout";
  private static final String ENDED = "resnet18-baseline";
  /** Two labelled heads (loss and accuracy measured), weight decay on the first. */
  private static final List<TelemetryFixtures.LayerSpec> LAYERS = List.of(
      new TelemetryFixtures.LayerSpec("layer4.relu", 8, 4, 10, 3, 1, 4, ActivationKind.RELU, true, 5e-4),
      new TelemetryFixtures.LayerSpec("layer4.gelu", 8, 4, 10, 3, 1, 4, ActivationKind.GELU, true, null));
  private static final Path SHOTS = Path.of("target", "web-screenshots");
  private static final HttpClient HTTP = HttpClient.newHttpClient();
  private static final ObjectMapper JSON = new ObjectMapper();

  @TempDir
  static Path dir;
  static FlatmonService service;
  static String applicationId;
  /** The instance the browser talks to: {@link #service}'s, or a second instance's in the last test. */
  static int port;

  @BeforeAll
  static void measureRuns() throws Exception {
    assertTrue(Files.isExecutable(Path.of(CHROMIUM)), "Debian's chromium is needed: scripts/install-deps test");
    long t0 = System.nanoTime();
    applicationId = Services.applicationId("page");
    service = Services.start(Services.config(null, dir.resolve("data"), applicationId, 2,
        Services.fastFailover()));
    port = service.httpPort();
    // STOP: nothing improves κ by 1e9, so patience 2 is exhausted at the third step; WARN: patience 100.
    EarlyStopPolicy stop = EarlyStopPolicy.newBuilder().setMonitor(MonitoredQuantity.RELATIVE_FLATNESS)
        .setMode(PolicyMode.MIN).setMinDelta(1e9).setPatience(2).build();
    EarlyStopPolicy warn = stop.toBuilder().setPatience(100).build();
    List<TelemetryFixtures.Message> messages = new ArrayList<>();
    messages.addAll(run(PLAIN, 1, null, false));
    messages.addAll(run(STOP, 2, stop, false));
    messages.addAll(run(WARN, 3, warn, false));
    messages.addAll(run(ENDED, 4, null, true));
    try (KafkaProducer<String, byte[]> producer = TelemetryFixtures.producer(
        Services.bootstrap(service.bootstrapServers()))) {
      TelemetryFixtures.produce(producer, messages);
    }
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
    while (!(allMeasured() && api("/signals/" + enc(STOP)).contains("\"action\":\"STOP\""))) {
      if (System.nanoTime() >= deadline) {
        fail("runs not measured in 90 s: " + fetch("GET", "/runs").body() + "\n"
            + fetch("GET", "/runs/" + enc(STOP) + "/history?steps=100").body() + "\nsignals: " + api("/signals"));
      }
      Thread.sleep(500);
    }
    System.out.println("four runs measured in " + Services.since(t0));
    Files.createDirectories(SHOTS);
  }

  /** A run's telemetry, with a policy in RunStarted if given and without RunEnded unless {@code ended}. */
  private static List<TelemetryFixtures.Message> run(String id, int index, EarlyStopPolicy policy, boolean ended) {
    List<TelemetryRecord> records = new ArrayList<>(TelemetryFixtures.run(id, 1000L + index,
        LAYERS, STEPS, 2, 1, 4));
    RunStarted.Builder started = records.get(0).getRunStarted().toBuilder();
    if (policy != null) {
      started.setEarlyStopPolicy(policy);
    }
    records.set(0, TelemetryRecord.newBuilder().setRunStarted(started).build());
    if (!ended) {
      records.remove(records.size() - 1);
    }
    return TelemetryFixtures.messages(records);
  }

  private static boolean allMeasured() throws Exception {
    for (String run : List.of(PLAIN, STOP, WARN, ENDED)) {
      int finals = 0;
      HttpResponse<String> history = fetch("GET", "/runs/" + enc(run) + "/history?steps=100");
      if (history.statusCode() == 404) { // not seen yet
        return false;
      }
      for (JsonNode r : JSON.readTree(history.body()).path("results")) {
        finals += r.path("final").asBoolean() ? 1 : 0;
      }
      if (finals < STEPS * 2 * 2) { // steps × layers × splits
        return false;
      }
    }
    for (JsonNode r : JSON.readTree(api("/runs")).path("runs")) {
      if (field(r, "run_id").asText().equals(ENDED)) {
        return field(r, "ended").asBoolean() || field(r, "state").asText().equalsIgnoreCase("ended");
      }
    }
    return false;
  }

  @AfterAll
  static void stop() {
    if (service != null) {
      service.close();
    }
  }

  @Test
  @Order(1)
  void servesOnlyItsFilesWithTheirTypes() throws Exception {
    assertEquals("text/html; charset=utf-8", fetch("GET", "/").headers().firstValue("Content-Type").orElse(""));
    HttpResponse<String> js = fetch("GET", "/webjars/uplot/uPlot.iife.min.js");
    assertEquals(200, js.statusCode());
    assertTrue(js.headers().firstValue("Content-Type").orElse("").startsWith("text/javascript"));
    assertTrue(js.body().contains("uPlot"), "uPlot comes from its webjar");
    assertEquals(200, fetch("HEAD", "/app.js").statusCode());
    assertEquals(404, fetch("GET", "/nothing.html").statusCode());
    assertEquals(404, fetch("GET", "/webjars/uplot/../../app.js").statusCode());
    assertEquals(405, fetch("POST", "/").statusCode());
  }

  @Test
  @Order(2)
  void fleetViewShowsEveryRunWithTheQueryApisValues() throws Exception {
    long t0 = System.nanoTime();
    Path png = SHOTS.resolve("fleet.png").toAbsolutePath();
    String dom = render("/", png, 1400, 420);
    System.out.println("fleet view rendered in " + Services.since(t0));
    Map<String, Map<String, String>> rows = fleetRows(dom);
    assertEquals(List.of(ENDED, PLAIN, STOP, WARN).stream().sorted().toList(),
        rows.keySet().stream().sorted().toList(), "one row per run; DOM:\n" + dom);
    for (String run : rows.keySet()) {
      Map<String, String> cells = rows.get(run);
      String latest = api("/runs/" + enc(run) + "/latest");
      String layer = LAYERS.get(0).name();
      assertEquals(layer, cells.get("layer"));
      assertEquals(mean(latest, layer, "TRAIN", "relative_flatness"), Double.parseDouble(cells.get("kappa")), run);
      assertEquals(mean(latest, layer, "TRAIN", "relative_flatness_normalized"),
          Double.parseDouble(cells.get("kappaNorm")), run);
      assertEquals(mean(latest, layer, "TRAIN", "hessian_trace"), Double.parseDouble(cells.get("traceH")), run);
      assertEquals(mean(latest, layer, "EVAL", "loss"), Double.parseDouble(cells.get("lossEval")), run);
      assertEquals(mean(latest, layer, "TRAIN", "accuracy"), Double.parseDouble(cells.get("accTrain")), run);
      assertEquals(100.0 * STEPS, Double.parseDouble(cells.get("step")), run);
      assertTrue(Double.isFinite(Double.parseDouble(cells.get("lossEval"))), run + " has an eval loss");
    }
    assertTrue(rows.get(STOP).get("class").contains("STOP"), "the STOP run stands out: " + rows.get(STOP));
    assertTrue(rows.get(STOP).get("signal").startsWith("STOP PATIENCE_EXHAUSTED"), rows.get(STOP).toString());
    assertTrue(rows.get(WARN).get("class").contains("WARN"), "the WARN run stands out: " + rows.get(WARN));
    assertTrue(rows.get(ENDED).get("class").contains("ended"), rows.get(ENDED).toString());
    assertEquals("live", rows.get(PLAIN).get("state"));
    assertEquals(4, count(dom, "<polyline"), "a κ sparkline per run");

    BufferedImage image = ImageIO.read(png.toFile());
    assertTrue(countColor(image, 0xc62828) > 50, "the STOP badge is drawn");
  }

  @Test
  @Order(3)
  void runViewDrawsCurvesAndTheStopMarker() throws Exception {
    String path = "/#/run/" + enc(STOP);
    long t0 = System.nanoTime();
    Path png = SHOTS.resolve("run.png").toAbsolutePath();
    String dom = render(path, png, 1400, 1000);
    System.out.println("run view rendered in " + Services.since(t0));
    assertTrue(dom.contains("class=\"run-id\">" + htmlEscape(STOP) + "<"), "the run view of " + STOP);
    Matcher stop = Pattern.compile("<li class=\"STOP\" data-step=\"(\\d+)\" data-action=\"STOP\" "
        + "data-reason=\"PATIENCE_EXHAUSTED\">").matcher(dom);
    assertTrue(stop.find(), "a STOP signal with its reason:\n" + dom);
    JsonNode first = null;
    for (JsonNode s : JSON.readTree(api("/signals/" + enc(STOP)))) {
      if (first == null && s.path("action").asText().equals("STOP")) {
        first = s;
      }
    }
    assertNotNull(first);
    assertEquals(first.path("step").asText(), stop.group(1), "the marker's step is the first STOP's");
    assertEquals(STOP, first.path("run_id").asText());
    for (var layer : LAYERS) {
      for (String chart : List.of("kappa", "kappaNorm", "traceH", "loss", "accuracy")) {
        Matcher box = Pattern.compile("<div class=\"chart\" data-chart=\"" + chart + "\" data-layer=\""
            + Pattern.quote(layer.name()) + "\">.*?</div></div>(?=<div class=\"chart\"|</div></section>)",
            Pattern.DOTALL).matcher(dom);
        assertTrue(box.find(), chart + " of " + layer.name());
        assertTrue(box.group().contains("<canvas"), chart + " of " + layer.name() + " has a canvas");
      }
    }
    String latest = api("/runs/" + enc(STOP) + "/latest");
    String layer = LAYERS.get(0).name();
    Matcher shown = Pattern.compile("data-key=\"TRAIN.relative_flatness\" data-value=\"([^\"]+)\"").matcher(dom);
    assertTrue(shown.find());
    assertEquals(mean(latest, layer, "TRAIN", "relative_flatness"), Double.parseDouble(shown.group(1)));

    BufferedImage image = ImageIO.read(png.toFile());
    // The curves: pixels in the exact train and eval stroke colours (nothing else on the page uses them).
    int train = countColor(image, 0x1f5fbf);
    int eval = countColor(image, 0xe8590c);
    assertTrue(train > 200 && eval > 200, "drawn curves: " + train + " train, " + eval + " eval pixels");
    // The STOP marker: a vertical line in the STOP colour, taller than any text or badge.
    assertTrue(longestVerticalRun(image, 0xc62828) > 100, "a STOP marker line across a chart");
  }

  /**
   * A second instance of the same application joins; the browser talks to it only. The fleet view
   * lists every run (its /runs aggregates both instances), and the run view of each run — those the
   * first instance owns reach the browser forwarded — shows that run with the owner's values.
   */
  @Test
  @Order(4)
  void secondInstanceShowsEveryRunIncludingThoseItForwards() throws Exception {
    int first = port;
    try (FlatmonService second = Services.start(Services.config(service.bootstrapServers(), dir.resolve("data-b"),
        applicationId, 2, Services.fastFailover()))) {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
      while (!(active(service) == 1 && active(second) == 1
          && second.streams().state() == KafkaStreams.State.RUNNING)) {
        assertTrue(System.nanoTime() < deadline, "the two instances did not share the 2 tasks");
        Thread.sleep(200);
      }
      Map<String, Integer> owners = new LinkedHashMap<>();
      for (String run : List.of(PLAIN, STOP, WARN, ENDED)) {
        owners.put(run, second.streams().queryMetadataForKey(FlatmonTopology.RUN_STORE, run,
            Serdes.String().serializer()).activeHost().port());
      }
      System.out.println("second instance on port " + second.httpPort() + "; owners " + owners);
      assertTrue(owners.containsValue(first), "some runs are owned by the first instance: " + owners);
      port = second.httpPort();
      Map<String, Map<String, String>> rows = Map.of();
      while (rows.size() < 4) { // the second instance restores its task's stores before it answers for it
        assertTrue(System.nanoTime() < deadline, "the second instance's fleet view: " + rows.keySet());
        rows = fleetRows(render("/", SHOTS.resolve("fleet-second.png").toAbsolutePath(), 1400, 420));
      }
      for (String run : List.of(PLAIN, STOP, WARN, ENDED)) {
        String dom = render("/#/run/" + enc(run), SHOTS.resolve("run-second.png").toAbsolutePath(), 1400, 1000);
        assertTrue(dom.contains("class=\"run-id\">" + htmlEscape(run) + "<"), "the run view of " + run);
        Matcher shown = Pattern.compile("data-key=\"TRAIN.relative_flatness\" data-value=\"([^\"]+)\"")
            .matcher(dom);
        assertTrue(shown.find(), run + " (owned by port " + owners.get(run) + "):\n" + dom);
        // The owner's own answer, asked directly: what the forwarded page shows must be the same.
        String latest = Services.get(owners.get(run), "/runs/" + enc(run) + "/latest");
        assertEquals(mean(latest, LAYERS.get(0).name(), "TRAIN", "relative_flatness"),
            Double.parseDouble(shown.group(1)), run);
        assertEquals(mean(latest, LAYERS.get(0).name(), "TRAIN", "relative_flatness"),
            Double.parseDouble(rows.get(run).get("kappa")), run);
      }
      assertTrue(rows.get(STOP).get("signal").startsWith("STOP PATIENCE_EXHAUSTED"), rows.get(STOP).toString());
    } finally {
      port = first;
    }
  }

  private static int active(FlatmonService s) {
    return s.streams().metadataForLocalThreads().stream().mapToInt(t -> t.activeTasks().size()).sum();
  }

  // ---------- browser ----------

  private static String chromium(String path, String... args) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
        "--hide-scrollbars", "--force-device-scale-factor=1", "--virtual-time-budget=8000",
        "--user-data-dir=" + dir.resolve("chromium-profile")));
    cmd.addAll(List.of(args));
    cmd.add("http://127.0.0.1:" + port + path);
    Path err = dir.resolve("chromium.log");
    Process p = new ProcessBuilder(cmd).redirectError(err.toFile()).start();
    byte[] out = p.getInputStream().readAllBytes();
    assertTrue(p.waitFor(60, TimeUnit.SECONDS), "chromium did not finish in 60 s");
    assertEquals(0, p.exitValue(), "chromium failed: " + Files.readString(err));
    return new String(out, StandardCharsets.UTF_8);
  }

  /** The DOM after the page's scripts ran (8 s of virtual time), and a screenshot of the window in {@code png}. */
  private static String render(String path, Path png, int width, int height) throws Exception {
    Files.deleteIfExists(png);
    String dom = chromium(path, "--dump-dom", "--screenshot=" + png, "--window-size=" + width + "," + height);
    assertTrue(Files.size(png) > 10_000, "a screenshot at " + png);
    return dom;
  }

  private static int countColor(BufferedImage image, int rgb) {
    int n = 0;
    for (int y = 0; y < image.getHeight(); y++) {
      for (int x = 0; x < image.getWidth(); x++) {
        if ((image.getRGB(x, y) & 0xffffff) == rgb) {
          n++;
        }
      }
    }
    return n;
  }

  private static int longestVerticalRun(BufferedImage image, int rgb) {
    int best = 0;
    for (int x = 0; x < image.getWidth(); x++) {
      int run = 0;
      for (int y = 0; y < image.getHeight(); y++) {
        run = (image.getRGB(x, y) & 0xffffff) == rgb ? run + 1 : 0;
        best = Math.max(best, run);
      }
    }
    return best;
  }

  // ---------- DOM and JSON ----------

  /** Per run (data-run): its data-value cells (text cells by their text), plus "class". */
  private static Map<String, Map<String, String>> fleetRows(String dom) {
    Map<String, Map<String, String>> rows = new LinkedHashMap<>();
    Matcher tr = Pattern.compile("<tr class=\"([^\"]*)\" data-run=\"([^\"]*)\">(.*?)</tr>", Pattern.DOTALL)
        .matcher(dom);
    while (tr.find()) {
      Map<String, String> cells = new HashMap<>();
      cells.put("class", tr.group(1));
      Matcher td = Pattern.compile("<td(?: class=\"text\")? data-key=\"(\\w+)\"(?: data-value=\"([^\"]*)\")?>(.*?)</td>",
          Pattern.DOTALL).matcher(tr.group(3));
      while (td.find()) {
        cells.put(td.group(1), td.group(2) != null ? td.group(2) : td.group(3).replaceAll("<[^>]+>", ""));
      }
      rows.put(htmlUnescape(tr.group(2)), cells);
    }
    return rows;
  }

  /** The mean of an Estimate in the query API's JSON of /latest, for one (layer, split). */
  private static double mean(String latestJson, String layer, String split, String name) throws IOException {
    for (JsonNode r : JSON.readTree(latestJson).path("results")) {
      if (field(r, "layer").asText().equals(layer) && field(r, "split").asText().equals(split)) {
        JsonNode estimate = field(r, name);
        assertTrue(estimate.isObject(), name + " in " + r);
        JsonNode mean = estimate.path("mean");
        return mean.isMissingNode() ? 0.0 : Double.parseDouble(mean.asText());
      }
    }
    throw new AssertionError("no " + layer + " " + split + " result in " + latestJson);
  }

  /** A field by its proto name or its lowerCamelCase JSON name. */
  private static JsonNode field(JsonNode node, String protoName) {
    JsonNode v = node.path(protoName);
    if (!v.isMissingNode()) {
      return v;
    }
    StringBuilder camel = new StringBuilder();
    boolean up = false;
    for (char c : protoName.toCharArray()) {
      if (c == '_') {
        up = true;
      } else {
        camel.append(up ? Character.toUpperCase(c) : c);
        up = false;
      }
    }
    return node.path(camel.toString());
  }

  private static String api(String path) throws Exception {
    return Services.get(port, path);
  }

  private static HttpResponse<String> fetch(String method, String path) throws IOException, InterruptedException {
    return HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
        .method(method, HttpRequest.BodyPublishers.noBody()).timeout(Duration.ofSeconds(10)).build(),
        HttpResponse.BodyHandlers.ofString());
  }

  private static String enc(String s) {
    return URLEncoder.encode(s, StandardCharsets.UTF_8).replace("+", "%20");
  }

  private static int count(String s, String what) {
    int n = 0;
    for (int i = s.indexOf(what); i >= 0; i = s.indexOf(what, i + 1)) {
      n++;
    }
    return n;
  }

  private static String htmlEscape(String s) {
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;");
  }

  private static String htmlUnescape(String s) {
    return s.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
  }
}
