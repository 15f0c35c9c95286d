package io.flatmon.service.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.metrics.FlatmonMetrics;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.GZIPInputStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The hardened HTTP port without Kafka: slow and idle connections do not block /healthz, only GET and
 * HEAD on exact paths, path segments decoded once, /metrics by the Prometheus library's handler.
 */
class HttpEndpointTest {
  private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
  private static HttpEndpoint endpoint;
  private static FlatmonMetrics metrics;
  private static int port;

  @BeforeAll
  static void start() throws IOException {
    metrics = new FlatmonMetrics();
    metrics.onRunSeen("run-1", "first", "pytorch");
    endpoint = new HttpEndpoint(new InetSocketAddress("127.0.0.1", 0));
    endpoint.route("/metrics", metrics.httpHandler())
        .route("/healthz", ex -> HttpEndpoint.respond(ex, 200, HttpEndpoint.JSON, "{\"state\":\"RUNNING\"}".getBytes()))
        .route("/runs", ex -> HttpEndpoint.respond(ex, 200, HttpEndpoint.JSON, "{\"runs\":[]}".getBytes()))
        .route("/runs/{run}/latest", ex -> HttpEndpoint.respond(ex, 200, "text/plain; charset=utf-8",
            HttpEndpoint.pathParameter(ex, "run").getBytes(StandardCharsets.UTF_8)));
    endpoint.start();
    port = endpoint.port();
  }

  @AfterAll
  static void stop() {
    endpoint.close();
    metrics.close();
  }

  private static HttpResponse<byte[]> send(String method, String rawPath, String... headers) throws Exception {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + rawPath))
        .timeout(Duration.ofSeconds(10)).method(method, HttpRequest.BodyPublishers.noBody());
    for (int i = 0; i < headers.length; i += 2) {
      b.header(headers[i], headers[i + 1]);
    }
    return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofByteArray());
  }

  private static String body(HttpResponse<byte[]> r) {
    return new String(r.body(), StandardCharsets.UTF_8);
  }

  @Test
  void slowAndIdleConnectionsLeaveHealthzAnsweringWithinOneSecond() throws Exception {
    assertEquals(200, send("GET", "/healthz").statusCode()); // the client's own start-up is not timed
    List<Socket> held = new ArrayList<>();
    try {
      for (int i = 0; i < 8; i++) { // headers begun, never finished
        Socket s = new Socket("127.0.0.1", port);
        s.getOutputStream().write("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ".getBytes(StandardCharsets.US_ASCII));
        s.getOutputStream().flush();
        held.add(s);
      }
      for (int i = 0; i < 4; i++) { // connected, nothing sent
        held.add(new Socket("127.0.0.1", port));
      }
      Thread.sleep(300);
      for (int i = 0; i < 5; i++) {
        long t0 = System.nanoTime();
        HttpResponse<byte[]> r = send("GET", "/healthz");
        double seconds = (System.nanoTime() - t0) / 1e9;
        assertEquals(200, r.statusCode());
        assertTrue(seconds < 1.0, "/healthz took " + seconds + " s with " + held.size() + " slow connections");
      }
      // The server closes a connection whose request is not read within its limit, freeing its worker.
      long deadline = System.nanoTime() + Duration.ofSeconds(HttpEndpoint.MAX_REQUEST_SECONDS + 10).toNanos();
      Socket slow = held.get(0);
      slow.setSoTimeout(1000);
      boolean closed = false;
      while (!closed && System.nanoTime() < deadline) {
        try {
          closed = slow.getInputStream().read() < 0;
        } catch (SocketTimeoutException e) {
          // still open
        } catch (IOException e) {
          closed = true;
        }
      }
      assertTrue(closed, "a connection with unfinished headers is closed after " + HttpEndpoint.MAX_REQUEST_SECONDS + " s");
    } finally {
      for (Socket s : held) {
        s.close();
      }
    }
  }

  @Test
  void onlyGetAndHeadOnExactPaths() throws Exception {
    for (String method : new String[] {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
      HttpResponse<byte[]> r = send(method, "/runs");
      assertEquals(405, r.statusCode(), method);
      assertEquals("GET, HEAD", r.headers().firstValue("Allow").orElse(""), method);
    }
    assertEquals(405, send("POST", "/metrics").statusCode());
    for (String path : new String[] {"/metricsfoo", "/runsx", "/runs/", "/healthz/x", "/", "/runs/a/latestx",
        "/runs//latest", "/runs/a/b/latest", "/METRICS"}) {
      HttpResponse<byte[]> r = send("GET", path);
      assertEquals(404, r.statusCode(), path);
      assertTrue(body(r).contains("\"status\":404"), body(r));
    }
    HttpResponse<byte[]> head = send("HEAD", "/healthz");
    assertEquals(200, head.statusCode());
    assertEquals(0, head.body().length);
    HttpResponse<byte[]> metricsHead = send("HEAD", "/metrics");
    assertEquals(200, metricsHead.statusCode());
    assertEquals(0, metricsHead.body().length);
  }

  @Test
  void aPathSegmentIsDecodedExactlyOnce() throws Exception {
    String[][] cases = {{"a+b", "a+b"}, {"a%2Bb", "a+b"}, {"resnet%2Flr=0.1", "resnet/lr=0.1"}, {"50%25", "50%"},
        {"100%2525", "100%25"}, {"run%207", "run 7"}, {"say%20%22hi%22", "say \"hi\""}, {"L%C3%A4ufe", "Läufe"},
        {"%E8%AE%AD%E7%BB%83", "训练"}, {"a%3Fb%23c", "a?b#c"}};
    for (String[] c : cases) {
      HttpResponse<byte[]> r = send("GET", "/runs/" + c[0] + "/latest");
      assertEquals(200, r.statusCode(), c[0]);
      assertEquals(c[1], body(r), c[0]);
    }
    for (String bad : new String[] {"%zz", "%C3", "a%2", "%FF%FE"}) {
      String status = rawStatusLine("GET /runs/" + bad + "/latest HTTP/1.1");
      assertTrue(status.startsWith("HTTP/1.1 400"), bad + ": " + status);
    }
  }

  /** The status line the server answers to a hand-written request line (no client-side URI checks). */
  private static String rawStatusLine(String requestLine) throws IOException {
    try (Socket s = new Socket("127.0.0.1", port)) {
      s.setSoTimeout(10_000);
      s.getOutputStream().write((requestLine + "\r\nHost: x\r\nConnection: close\r\n\r\n")
          .getBytes(StandardCharsets.ISO_8859_1));
      String response = new String(s.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      return response.lines().findFirst().orElse("");
    }
  }

  @Test
  void metricsNegotiateOpenMetricsAndGzip() throws Exception {
    HttpResponse<byte[]> text = send("GET", "/metrics");
    assertEquals(200, text.statusCode());
    assertTrue(text.headers().firstValue("Content-Type").orElse("").startsWith("text/plain; version=0.0.4"),
        text.headers().map().toString());
    assertTrue(body(text).contains("flatmon_run_info{display_name=\"first\",framework=\"pytorch\",run=\"run-1\"} 1"));

    HttpResponse<byte[]> open = send("GET", "/metrics", "Accept", "application/openmetrics-text; version=1.0.0");
    assertTrue(open.headers().firstValue("Content-Type").orElse("").startsWith("application/openmetrics-text"),
        open.headers().map().toString());
    assertTrue(body(open).strip().endsWith("# EOF"));

    HttpResponse<byte[]> gzip = send("GET", "/metrics", "Accept-Encoding", "gzip");
    assertEquals("gzip", gzip.headers().firstValue("Content-Encoding").orElse(""));
    try (InputStream in = new GZIPInputStream(new java.io.ByteArrayInputStream(gzip.body()))) {
      assertTrue(new String(in.readAllBytes(), StandardCharsets.UTF_8).contains("flatmon_run_info{"));
    }
  }
}
