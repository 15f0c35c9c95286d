package io.flatmon.service.http;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpHandler;
import com.sun.net.httpserver.HttpServer;
import io.flatmon.schema.UntrustedText;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * flatmon's HTTP port: the JDK's HTTP server, hardened, with one routing table.
 *
 * <p>Hardening. The JDK server reads a request's headers on a worker thread, blocking; a client that
 * never finishes its headers holds that worker. So: (1) at most {@value #MAX_CONNECTIONS} connections
 * (further ones are closed at once), and one worker thread per possible connection, so a slow
 * connection never keeps another connection's request waiting for a worker; (2) a request must be
 * read and its response begun within {@value #MAX_REQUEST_SECONDS} s, a response sent within
 * {@value #MAX_RESPONSE_SECONDS} s, or the connection is closed, which frees its worker; (3) idle
 * keep-alive connections (which wait in the server's selector, not on a worker) are closed after
 * {@value #IDLE_SECONDS} s; (4) request headers are limited to {@value #MAX_HEADER_BYTES} bytes.
 * The JDK reads these limits once per JVM from system properties, when the first server is created:
 * they are set here, before that, unless given on the command line ({@code -Dsun.net.httpserver.*},
 * {@code -Djdk.httpserver.maxConnections}).
 *
 * <p>Routing. Routes are path templates matched exactly against the whole path, segment by segment;
 * a {@code {name}} segment matches one non-empty segment, which the handler reads, percent-decoded
 * exactly once as UTF-8 ({@code +} stays {@code +}, {@code %2F} is a {@code /} inside the segment),
 * with {@link #pathParameter}. Any other path answers 404; a method other than GET and HEAD on a known
 * path answers 405 with {@code Allow: GET, HEAD}. HEAD is GET without the body.
 */
public final class HttpEndpoint implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(HttpEndpoint.class);
  static final int MAX_CONNECTIONS = 64;
  static final int MAX_REQUEST_SECONDS = 15;
  static final int MAX_RESPONSE_SECONDS = 60;
  static final int IDLE_SECONDS = 30;
  static final int MAX_HEADER_BYTES = 16 * 1024;
  private static final String PATH_PARAMETERS = "flatmon.path.parameters";
  public static final String JSON = "application/json; charset=utf-8";

  static {
    setDefault("jdk.httpserver.maxConnections", MAX_CONNECTIONS);
    setDefault("sun.net.httpserver.maxReqTime", MAX_REQUEST_SECONDS);
    setDefault("sun.net.httpserver.maxRspTime", MAX_RESPONSE_SECONDS);
    setDefault("sun.net.httpserver.idleInterval", IDLE_SECONDS);
    setDefault("sun.net.httpserver.maxIdleConnections", MAX_CONNECTIONS / 2);
    setDefault("sun.net.httpserver.maxReqHeaderSize", MAX_HEADER_BYTES);
    setDefault("sun.net.httpserver.maxReqHeaders", 100);
  }

  private static void setDefault(String property, int value) {
    System.getProperties().putIfAbsent(property, Integer.toString(value));
  }

  private record Entry(String template, String[] segments, HttpHandler handler) {
  }

  private final HttpServer server;
  private final ThreadPoolExecutor workers;
  private final List<Entry> routes = new java.util.concurrent.CopyOnWriteArrayList<>();

  /** Binds the address (port 0: any free one); routes are added with {@link #route} before {@link #start}. */
  public HttpEndpoint(InetSocketAddress bindAddress) throws IOException {
    int cap = Integer.getInteger("jdk.httpserver.maxConnections", MAX_CONNECTIONS);
    int connections = cap > 0 ? cap : MAX_CONNECTIONS; // 0 would be "unlimited": threads for the default then
    this.server = HttpServer.create(bindAddress, connections);
    this.workers = new ThreadPoolExecutor(connections + 2, connections + 2, 30, TimeUnit.SECONDS,
        new LinkedBlockingQueue<>(), r -> {
          Thread t = new Thread(r, "flatmon-http");
          t.setDaemon(true);
          return t;
        });
    workers.allowCoreThreadTimeOut(true);
    server.setExecutor(workers);
    server.createContext("/", this::dispatch);
  }

  /**
   * Adds a route: {@code "/runs"} matches that path only; {@code "/runs/{run}/latest"} matches any
   * one segment in place of {@code {run}}. The handler sees GET and HEAD requests only.
   */
  public HttpEndpoint route(String template, HttpHandler handler) {
    if (!template.startsWith("/")) {
      throw new IllegalArgumentException("a route template starts with /: " + template);
    }
    routes.add(new Entry(template, template.split("/", -1), handler));
    return this;
  }

  public void start() {
    server.start();
  }

  public int port() {
    return server.getAddress().getPort();
  }

  /** The value of a {@code {name}} segment of the matched route, percent-decoded once. */
  public static String pathParameter(HttpExchange exchange, String name) {
    @SuppressWarnings("unchecked")
    Map<String, String> p = (Map<String, String>) exchange.getAttribute(PATH_PARAMETERS);
    return p == null ? null : p.get(name);
  }

  /** Query parameters (form-decoded; the first of repeated names wins). */
  public static Map<String, String> queryParameters(HttpExchange exchange) {
    Map<String, String> out = new HashMap<>();
    String raw = exchange.getRequestURI().getRawQuery();
    if (raw == null || raw.isEmpty()) {
      return out;
    }
    for (String pair : raw.split("&")) {
      int eq = pair.indexOf('=');
      try {
        String name = URLDecoder.decode(eq < 0 ? pair : pair.substring(0, eq), StandardCharsets.UTF_8);
        String value = eq < 0 ? "" : URLDecoder.decode(pair.substring(eq + 1), StandardCharsets.UTF_8);
        out.putIfAbsent(name, value);
      } catch (IllegalArgumentException e) {
        // a malformed pair is ignored like an unknown one
      }
    }
    return out;
  }

  /** Sends {@code body} with the status (for HEAD: the headers only). */
  public static void respond(HttpExchange exchange, int status, String contentType, byte[] body) throws IOException {
    exchange.getResponseHeaders().set("Content-Type", contentType);
    exchange.getResponseHeaders().set("Cache-Control", "no-store");
    boolean head = "HEAD".equals(exchange.getRequestMethod());
    exchange.sendResponseHeaders(status, head ? -1 : body.length);
    try (OutputStream out = exchange.getResponseBody()) {
      if (!head) {
        out.write(body);
      }
    }
  }

  private void dispatch(HttpExchange exchange) throws IOException {
    try {
      String rawPath = exchange.getRequestURI().getRawPath();
      String[] segments = rawPath == null ? new String[0] : rawPath.split("/", -1);
      Entry match = null;
      Map<String, String> parameters = new HashMap<>();
      for (Entry e : routes) {
        parameters.clear();
        if (matches(e.segments(), segments, parameters)) {
          match = e;
          break;
        }
      }
      if (match == null) {
        error(exchange, 404, "no such path " + UntrustedText.quote(rawPath) + "; see docs/ARCHITECTURE.md, Query API");
        return;
      }
      String method = exchange.getRequestMethod();
      if (!method.equals("GET") && !method.equals("HEAD")) {
        exchange.getResponseHeaders().set("Allow", "GET, HEAD");
        error(exchange, 405, "method " + UntrustedText.quote(method) + " is not allowed; use GET or HEAD");
        return;
      }
      exchange.setAttribute(PATH_PARAMETERS, parameters);
      match.handler().handle(exchange);
    } catch (MalformedPathException e) {
      error(exchange, 400, e.getMessage());
    } catch (IOException e) {
      throw e;
    } catch (RuntimeException e) {
      LOG.warn("HTTP {} {} failed", UntrustedText.quote(exchange.getRequestMethod()),
          UntrustedText.quote(exchange.getRequestURI().getRawPath()), e);
      if (exchange.getResponseCode() == -1) {
        error(exchange, 500, "internal error: " + e);
      }
    } finally {
      exchange.close();
    }
  }

  private static boolean matches(String[] template, String[] path, Map<String, String> parameters)
      throws MalformedPathException {
    if (template.length != path.length) {
      return false;
    }
    for (int i = 0; i < template.length; i++) {
      String t = template[i];
      if (t.startsWith("{") && t.endsWith("}")) {
        if (path[i].isEmpty()) {
          return false;
        }
        parameters.put(t.substring(1, t.length() - 1), decodeSegment(path[i]));
      } else if (!t.equals(path[i])) {
        return false;
      }
    }
    return true;
  }

  /**
   * Percent-decodes one raw path segment as UTF-8, once. The JDK hands the request line over as
   * ISO-8859-1 characters, so a char up to U+00FF is the byte it was sent as (a client that sent UTF-8
   * unencoded gets the right text too).
   */
  static String decodeSegment(String raw) throws MalformedPathException {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream(raw.length());
    for (int i = 0; i < raw.length(); i++) {
      char c = raw.charAt(i);
      if (c == '%') {
        if (i + 2 >= raw.length() || Character.digit(raw.charAt(i + 1), 16) < 0
            || Character.digit(raw.charAt(i + 2), 16) < 0) {
          throw new MalformedPathException("malformed percent-encoding in path segment " + UntrustedText.quote(raw));
        }
        bytes.write(Character.digit(raw.charAt(i + 1), 16) * 16 + Character.digit(raw.charAt(i + 2), 16));
        i += 2;
      } else if (c <= 0xff) {
        bytes.write(c);
      } else {
        throw new MalformedPathException("path segment " + UntrustedText.quote(raw) + " is not percent-encoded");
      }
    }
    try {
      return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes.toByteArray())).toString();
    } catch (CharacterCodingException e) {
      throw new MalformedPathException("path segment " + UntrustedText.quote(raw) + " is not UTF-8");
    }
  }

  static final class MalformedPathException extends Exception {
    private static final long serialVersionUID = 1L;

    MalformedPathException(String message) {
      super(message);
    }
  }

  private static void error(HttpExchange exchange, int status, String message) throws IOException {
    respond(exchange, status, JSON, Json.print(io.flatmon.proto.v1.QueryError.newBuilder().setStatus(status)
        .setError(message).build()));
  }

  /** Stops accepting, closes open connections, ends the workers. */
  @Override
  public void close() {
    server.stop(0);
    workers.shutdownNow();
  }
}
