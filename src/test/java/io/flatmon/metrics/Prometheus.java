package io.flatmon.metrics;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ServerSocket;
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
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A real Prometheus server (the Debian package's /usr/bin/prometheus) started for a test, and the
 * promtool helpers. Missing binaries fail the test with the package to install: these tests are not
 * optional.
 */
final class Prometheus implements AutoCloseable {
  private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();

  private final Process process;
  private final int port;
  private final Path log;

  private Prometheus(Process process, int port, Path log) {
    this.process = process;
    this.port = port;
    this.log = log;
  }

  /** The output and exit status of a finished command. */
  record Result(int exitCode, String output) {
  }

  /** prometheus or promtool: on PATH or in /usr/bin; fails with the Debian package to install. */
  static Path binary(String name) {
    List<Path> candidates = new ArrayList<>();
    String path = System.getenv("PATH");
    if (path != null) {
      for (String dir : path.split(java.io.File.pathSeparator)) {
        candidates.add(Path.of(dir, name));
      }
    }
    candidates.add(Path.of("/usr/bin", name));
    for (Path p : candidates) {
      if (Files.isExecutable(p)) {
        return p;
      }
    }
    throw new AssertionError(name + " not found on PATH or in /usr/bin: install the Debian package 'prometheus'"
        + " (apt-get install prometheus), which also provides promtool");
  }

  /** Runs a command with the given stdin (via a temporary file); output is stdout and stderr together. */
  static Result run(List<String> command, byte[] stdin, Path workDir, Duration timeout) {
    Path input = null;
    try {
      ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true);
      if (workDir != null) {
        pb.directory(workDir.toFile());
      }
      if (stdin != null) {
        input = Files.createTempFile("flatmon-stdin", ".txt");
        Files.write(input, stdin);
        pb.redirectInput(input.toFile());
      } else {
        pb.redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
      }
      Process p = pb.start();
      byte[] out = p.getInputStream().readAllBytes();
      if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
        p.destroyForcibly();
        throw new AssertionError(String.join(" ", command) + " did not finish within " + timeout);
      }
      return new Result(p.exitValue(), new String(out, StandardCharsets.UTF_8));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AssertionError("interrupted", e);
    } finally {
      if (input != null) {
        try {
          Files.deleteIfExists(input);
        } catch (IOException ignored) {
          // a temp file
        }
      }
    }
  }

  /** `promtool check metrics` on a Prometheus text exposition (promtool lints only that format). */
  static Result checkMetrics(String exposition) {
    return run(List.of(binary("promtool").toString(), "check", "metrics"),
        exposition.getBytes(StandardCharsets.UTF_8), null, Duration.ofSeconds(60));
  }

  /**
   * Parses an OpenMetrics exposition with Prometheus' strict OpenMetrics parser: `promtool tsdb
   * create-blocks-from openmetrics` (the backfill tool), after stamping every sample with the same
   * timestamp, which backfilling requires. Fails on any syntax error, a missing {@code # EOF}, ...
   *
   * @return promtool's output; the number of series it wrote is checked by the caller
   */
  static Result parseOpenMetrics(String exposition, Path workDir) throws IOException {
    long seconds = System.currentTimeMillis() / 1000;
    StringBuilder stamped = new StringBuilder();
    for (String line : exposition.split("\n", -1)) {
      if (line.isEmpty()) {
        continue;
      }
      stamped.append(line);
      if (!line.startsWith("#")) {
        int exemplar = line.indexOf(" # {");
        if (exemplar >= 0) {
          stamped.setLength(stamped.length() - (line.length() - exemplar));
          stamped.append(' ').append(seconds).append(line.substring(exemplar));
        } else {
          stamped.append(' ').append(seconds);
        }
      }
      stamped.append('\n');
    }
    Files.createDirectories(workDir);
    Path file = workDir.resolve("exposition.om");
    Files.writeString(file, stamped);
    return run(List.of(binary("promtool").toString(), "tsdb", "create-blocks-from", "openmetrics", file.toString(),
        workDir.resolve("blocks").toString()), null, null, Duration.ofSeconds(60));
  }

  static int freePort() {
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * Starts Prometheus on 127.0.0.1:(free port) with data under {@code dir}, scraping the given
   * host:port targets (job "flatmon") and evaluating the rule files at the given interval; waits until
   * its API answers.
   */
  static Prometheus start(Path dir, List<String> targets, Duration scrapeInterval, List<Path> ruleFiles)
      throws IOException {
    Files.createDirectories(dir);
    String interval = scrapeInterval.toMillis() + "ms";
    StringBuilder yml = new StringBuilder()
        .append("global:\n")
        .append("  scrape_interval: ").append(interval).append('\n')
        .append("  scrape_timeout: ").append(interval).append('\n')
        .append("  evaluation_interval: ").append(interval).append('\n');
    if (!ruleFiles.isEmpty()) {
      yml.append("rule_files:\n");
      ruleFiles.forEach(f -> yml.append("  - \"").append(f.toAbsolutePath()).append("\"\n"));
    }
    yml.append("scrape_configs:\n")
        .append("  - job_name: flatmon\n")
        .append("    metrics_path: /metrics\n")
        .append("    static_configs:\n")
        .append("      - targets: [");
    for (int i = 0; i < targets.size(); i++) {
      yml.append(i == 0 ? "" : ", ").append('"').append(targets.get(i)).append('"');
    }
    yml.append("]\n");
    Path config = dir.resolve("prometheus.yml");
    Files.writeString(config, yml);
    Result check = run(List.of(binary("promtool").toString(), "check", "config", config.toString()), null, null,
        Duration.ofSeconds(30));
    if (check.exitCode() != 0) {
      throw new AssertionError("promtool rejects the test's own config:\n" + check.output());
    }
    Path log = dir.resolve("prometheus.log");
    IOException last = null;
    for (int attempt = 0; attempt < 3; attempt++) {
      int port = freePort();
      Process p = new ProcessBuilder(binary("prometheus").toString(),
          "--config.file=" + config,
          "--storage.tsdb.path=" + dir.resolve("data"),
          "--web.listen-address=127.0.0.1:" + port,
          "--storage.tsdb.retention.time=1h",
          "--log.level=warn")
          .redirectErrorStream(true).redirectOutput(log.toFile()).start();
      Prometheus server = new Prometheus(p, port, log);
      long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
      while (System.nanoTime() < deadline && p.isAlive()) {
        try {
          HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(server.uri("/-/ready"))
              .timeout(Duration.ofSeconds(2)).build(), HttpResponse.BodyHandlers.ofString());
          if (r.statusCode() == 200) {
            return server;
          }
        } catch (IOException e) {
          last = e;
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          server.close();
          throw new IOException("interrupted", e);
        }
        sleep(200);
      }
      server.close();
    }
    throw new IOException("prometheus did not become ready; log:\n" + Files.readString(log), last);
  }

  URI uri(String path) {
    return URI.create("http://127.0.0.1:" + port + path);
  }

  int port() {
    return port;
  }

  /** POST /api/v1/query; the whole response (status, data or error). */
  JsonObject query(String promql) {
    try {
      HttpRequest request = HttpRequest.newBuilder(uri("/api/v1/query"))
          .header("Content-Type", "application/x-www-form-urlencoded")
          .timeout(Duration.ofSeconds(20))
          .POST(HttpRequest.BodyPublishers.ofString("query=" + URLEncoder.encode(promql, StandardCharsets.UTF_8)))
          .build();
      HttpResponse<String> r = HTTP.send(request, HttpResponse.BodyHandlers.ofString());
      return JsonParser.parseString(r.body()).getAsJsonObject();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AssertionError("interrupted", e);
    }
  }

  /** The result vector of a successful instant query (empty when it failed or returned nothing). */
  JsonArray vector(String promql) {
    JsonObject r = query(promql);
    if (!"success".equals(Dashboards.string(r, "status"))) {
      return new JsonArray();
    }
    JsonObject data = r.getAsJsonObject("data");
    if (!"vector".equals(Dashboards.string(data, "resultType"))) {
      throw new AssertionError("not an instant vector: " + promql + " -> " + r);
    }
    return data.getAsJsonArray("result");
  }

  /** Waits until the instant query returns at least one series. */
  void awaitSeries(String promql, Duration timeout) {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (vector(promql).isEmpty()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("no series for " + promql + " within " + timeout + " (targets: "
            + targets() + ")");
      }
      sleep(500);
    }
  }

  /** Waits until the instant query returns no series (e.g. a released run's series went stale). */
  void awaitNoSeries(String promql, Duration timeout) {
    long deadline = System.nanoTime() + timeout.toNanos();
    JsonArray v;
    while (!(v = vector(promql)).isEmpty()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("still " + v.size() + " series for " + promql + " after " + timeout + ": " + v);
      }
      sleep(250);
    }
  }

  /** /api/v1/targets, for failure messages. */
  String targets() {
    return get("/api/v1/targets");
  }

  /** GET an API path; the body, or a note when unavailable. */
  String get(String path) {
    try {
      return HTTP.send(HttpRequest.newBuilder(uri(path)).timeout(Duration.ofSeconds(5)).build(),
          HttpResponse.BodyHandlers.ofString()).body();
    } catch (IOException | InterruptedException e) {
      return "(unavailable: " + e + ")";
    }
  }

  String log() {
    try {
      return Files.readString(log);
    } catch (IOException e) {
      return "(no log: " + e + ")";
    }
  }

  static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AssertionError("interrupted", e);
    }
  }

  @Override
  public void close() {
    process.destroy();
    try {
      if (!process.waitFor(10, TimeUnit.SECONDS)) {
        process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      process.destroyForcibly();
      Thread.currentThread().interrupt();
    }
  }
}
