package io.flatmon.stream.it;

import io.flatmon.service.FlatmonService;
import io.flatmon.stream.TopologySettings;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;

/** Small helpers to run flatmon instances in tests. */
public final class Services {
  private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();

  private Services() {
  }

  /** An application id no other test (or earlier run on the same broker) uses. */
  public static String applicationId(String test) {
    return "flatmon-it-" + test + "-" + UUID.randomUUID().toString().substring(0, 8);
  }

  /**
   * Consumer group settings that make a dead or departed instance's partitions move within seconds:
   * Kafka Streams' consumers do not leave the group on close, so without this a survivor waits for
   * the 45 s default session timeout.
   */
  public static Map<String, Object> fastFailover() {
    Map<String, Object> m = new HashMap<>();
    m.put("session.timeout.ms", 6000);
    m.put("heartbeat.interval.ms", 1000);
    return m;
  }

  /**
   * An instance on an existing cluster ({@code bootstrap} non-null) or with its own embedded broker
   * (null), query API on a free port.
   */
  public static FlatmonService.Config config(String bootstrap, Path dataDir, String applicationId, int partitions,
      Map<String, Object> clientConfig) {
    return new FlatmonService.Config(bootstrap, dataDir, 0, clientConfig, applicationId, partitions, (short) 1,
        Duration.ofDays(1).toMillis(), 1, "127.0.0.1", 0, TopologySettings.defaults());
  }

  public static FlatmonService start(FlatmonService.Config config) throws Exception {
    FlatmonService service = new FlatmonService(config);
    try {
      return service.start(Duration.ofSeconds(90));
    } catch (Exception | Error e) {
      service.close();
      throw e;
    }
  }

  public static Properties bootstrap(String servers) {
    Properties p = new Properties();
    p.put("bootstrap.servers", servers);
    return p;
  }

  /** GET http://127.0.0.1:port/path; fails unless 200. */
  public static String get(int port, String path) throws IOException, InterruptedException {
    HttpRequest request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path))
        .timeout(Duration.ofSeconds(10)).GET().build();
    HttpResponse<String> r = HTTP.send(request, HttpResponse.BodyHandlers.ofString());
    if (r.statusCode() != 200) {
      throw new AssertionError("GET " + path + " answered " + r.statusCode() + ": " + r.body());
    }
    return r.body();
  }

  /** Wall-clock seconds since {@code t0} (System.nanoTime()), for the test logs. */
  public static String since(long t0) {
    return String.format(java.util.Locale.ROOT, "%.1f s", (System.nanoTime() - t0) / 1e9);
  }
}
