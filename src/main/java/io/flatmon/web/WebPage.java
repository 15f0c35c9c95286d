package io.flatmon.web;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpHandler;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * The live page on the query API's port: the static files (HTML, JS, CSS from {@code io/flatmon/web/},
 * uPlot from its webjar) and {@code /signals}, {@code /signals/{run}} from the {@link SignalLog}.
 * Everything else is 404; only GET and HEAD are served. The page itself reads the query API
 * (/runs, /runs/{run}/latest, /runs/{run}/history), which forwards to the instance owning a run.
 */
public final class WebPage implements HttpHandler {
  /** uPlot's version: the webjar's resources live under a versioned folder. */
  static final String UPLOT_VERSION = "1.6.30";
  private static final String UPLOT_DIST = "META-INF/resources/webjars/uplot/" + UPLOT_VERSION + "/dist/";

  private record Resource(String classpathName, String contentType) {
  }

  private static final Map<String, Resource> FILES = Map.of(
      "/", new Resource("io/flatmon/web/index.html", "text/html; charset=utf-8"),
      "/index.html", new Resource("io/flatmon/web/index.html", "text/html; charset=utf-8"),
      "/app.js", new Resource("io/flatmon/web/app.js", "text/javascript; charset=utf-8"),
      "/app.css", new Resource("io/flatmon/web/app.css", "text/css; charset=utf-8"),
      "/webjars/uplot/uPlot.iife.min.js", new Resource(UPLOT_DIST + "uPlot.iife.min.js",
          "text/javascript; charset=utf-8"),
      "/webjars/uplot/uPlot.min.css", new Resource(UPLOT_DIST + "uPlot.min.css", "text/css; charset=utf-8"));

  /** The route templates this handler answers: its files, /signals and /signals/{run}. */
  public static final List<String> ROUTES = Stream.concat(FILES.keySet().stream().sorted(),
      Stream.of("/signals", "/signals/{run}")).toList();

  private final SignalLog signals;

  /** @param signals where /signals reads from; null answers empty lists */
  public WebPage(SignalLog signals) {
    this.signals = signals;
  }

  /** The encoded run id of /signals/{run}, or null. */
  private static String runOfSignalsPath(String rawPath) {
    String prefix = "/signals/";
    if (!rawPath.startsWith(prefix) || rawPath.length() == prefix.length()
        || rawPath.indexOf('/', prefix.length()) >= 0) {
      return null;
    }
    return rawPath.substring(prefix.length());
  }

  @Override
  public void handle(HttpExchange ex) throws IOException {
    try (ex) {
      String method = ex.getRequestMethod();
      if (!method.equals("GET") && !method.equals("HEAD")) {
        ex.getResponseHeaders().set("Allow", "GET, HEAD");
        send(ex, 405, "text/plain; charset=utf-8", "only GET and HEAD\n".getBytes(StandardCharsets.UTF_8));
        return;
      }
      String path = ex.getRequestURI().getRawPath();
      Resource file = FILES.get(path);
      if (file != null) {
        try (InputStream in = WebPage.class.getClassLoader().getResourceAsStream(file.classpathName())) {
          if (in == null) {
            send(ex, 500, "text/plain; charset=utf-8",
                ("missing resource " + file.classpathName() + "\n").getBytes(StandardCharsets.UTF_8));
            return;
          }
          send(ex, 200, file.contentType(), in.readAllBytes());
        }
        return;
      }
      if (path.equals("/signals")) {
        json(ex, signals == null ? "[]" : signals.lastSignalsJson());
        return;
      }
      String encodedRun = runOfSignalsPath(path);
      if (encodedRun != null) {
        json(ex, signals == null ? "[]" : signals.runSignalsJson(decode(encodedRun)));
        return;
      }
      send(ex, 404, "text/plain; charset=utf-8", ("not found: " + path + "\n").getBytes(StandardCharsets.UTF_8));
    }
  }

  /** Percent-decoding of one path segment ('+' stays a plus: it means a space only in forms). */
  static String decode(String segment) {
    return URLDecoder.decode(segment.replace("+", "%2B"), StandardCharsets.UTF_8);
  }

  private static void json(HttpExchange ex, String body) throws IOException {
    send(ex, 200, "application/json; charset=utf-8", body.getBytes(StandardCharsets.UTF_8));
  }

  private static void send(HttpExchange ex, int status, String contentType, byte[] body) throws IOException {
    ex.getResponseHeaders().set("Content-Type", contentType);
    ex.getResponseHeaders().set("Cache-Control", "no-cache");
    ex.getResponseHeaders().set("X-Content-Type-Options", "nosniff");
    boolean head = ex.getRequestMethod().equals("HEAD");
    ex.sendResponseHeaders(status, head ? -1 : body.length);
    if (!head) {
      try (OutputStream out = ex.getResponseBody()) {
        out.write(body);
      }
    }
  }
}
