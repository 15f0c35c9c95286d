package io.flatmon.service.http;

import com.google.protobuf.Message;
import com.google.protobuf.util.Timestamps;
import com.sun.net.httpserver.HttpExchange;
import io.flatmon.proto.v1.Health;
import io.flatmon.proto.v1.QueryError;
import io.flatmon.proto.v1.ResultList;
import io.flatmon.proto.v1.RunList;
import io.flatmon.proto.v1.RunPhase;
import io.flatmon.proto.v1.RunState;
import io.flatmon.proto.v1.RunSummary;
import io.flatmon.schema.RunIds;
import io.flatmon.schema.UntrustedText;
import io.flatmon.stream.RunStores;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.errors.InvalidStateStoreException;
import org.apache.kafka.streams.state.HostInfo;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The JSON query API (paths, status codes and bodies in docs/ARCHITECTURE.md, "Query API"; bodies
 * are the messages of query.proto). A run's state lives on the instance that owns its partition:
 * Kafka Streams' metadata names it, and a run's request is forwarded there, one hop, marked
 * {@code local=1} so that it is never forwarded again. {@code /runs} asks every instance at once.
 */
public final class QueryApi {
  private static final Logger LOG = LoggerFactory.getLogger(QueryApi.class);
  /** Query parameter of a forwarded request: answer from this instance's stores only. */
  static final String LOCAL = "local";
  static final int DEFAULT_STEPS = 20;
  static final int MAX_STEPS = 10_000;
  private static final Duration FORWARD_TIMEOUT = Duration.ofSeconds(5);

  private final RunStores stores;
  private final HostInfo self;
  private final HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();

  /**
   * @param self the host:port advertised as application.server (where other instances reach this one)
   */
  public QueryApi(KafkaStreams streams, HostInfo self) {
    this.stores = new RunStores(streams);
    this.self = self;
  }

  /** GET /healthz: 200 while Kafka Streams runs or rebalances, 503 otherwise. */
  public void health(HttpExchange ex) throws IOException {
    KafkaStreams.State state = stores.state();
    boolean ready = state == KafkaStreams.State.RUNNING || state == KafkaStreams.State.REBALANCING;
    json(ex, ready ? 200 : 503, Health.newBuilder().setState(state.name()).build());
  }

  /** GET /runs: every run of every instance, live and ended. */
  public void runs(HttpExchange ex) throws IOException {
    try {
      json(ex, 200, runList(isLocal(ex)));
    } catch (InvalidStateStoreException e) {
      error(ex, 503, "the run store is not queryable now (" + e.getMessage() + "); retry shortly");
    }
  }

  private RunList runList(boolean local) {
    RunList.Builder out = RunList.newBuilder();
    if (local) {
      localRuns(out);
    } else {
      Map<HostInfo, CompletableFuture<HttpResponse<String>>> asked = new LinkedHashMap<>();
      boolean selfListed = false;
      for (HostInfo host : stores.instances()) {
        if (host.equals(self)) {
          selfListed = true;
        } else {
          asked.put(host, forward(host, "/runs?" + LOCAL + "=1"));
        }
      }
      if (selfListed || asked.isEmpty()) {
        localRuns(out);
      }
      long deadline = System.nanoTime() + FORWARD_TIMEOUT.toNanos();
      for (Map.Entry<HostInfo, CompletableFuture<HttpResponse<String>>> e : asked.entrySet()) {
        String instance = e.getKey().host() + ":" + e.getKey().port();
        try {
          HttpResponse<String> r = e.getValue().get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
          if (r.statusCode() != 200) {
            throw new IOException("answered " + r.statusCode());
          }
          out.addAllRuns(Json.parse(r.body(), RunList.newBuilder()).getRunsList());
        } catch (IOException | ExecutionException | TimeoutException e2) {
          LOG.warn("instance {} did not list its runs: {}", instance, e2.toString());
          out.addUnreachableInstances(instance);
        } catch (InterruptedException e2) {
          Thread.currentThread().interrupt();
          out.addUnreachableInstances(instance);
        }
      }
    }
    List<RunSummary> sorted = new ArrayList<>(out.getRunsList());
    sorted.sort(Comparator.comparing(RunSummary::getRunId));
    return out.clearRuns().addAllRuns(sorted).build();
  }

  /** GET /runs/{run}/latest: the latest result per (layer, split). */
  public void latest(HttpExchange ex) throws IOException {
    String run = runId(ex);
    if (run != null && ownedHere(ex, run)) {
      json(ex, 200, ResultList.newBuilder().setRunId(run).addAllResults(stores.latest(run)).build());
    }
  }

  /** GET /runs/{run}/history?steps=N: the final results of the last N steps (default 20), newest first. */
  public void history(HttpExchange ex) throws IOException {
    String stepsParam = HttpEndpoint.queryParameters(ex).getOrDefault("steps", Integer.toString(DEFAULT_STEPS));
    int steps;
    try {
      steps = Integer.parseInt(stepsParam);
    } catch (NumberFormatException e) {
      steps = -1;
    }
    if (steps < 1 || steps > MAX_STEPS) {
      error(ex, 400, "steps must be an integer from 1 to " + MAX_STEPS + ", not " + UntrustedText.quote(stepsParam));
      return;
    }
    String run = runId(ex);
    if (run != null && ownedHere(ex, run)) {
      json(ex, 200, ResultList.newBuilder().setRunId(run).addAllResults(stores.history(run, steps)).build());
    }
  }

  /** The run id of the path, or null after answering 400 for one outside the grammar. */
  private static String runId(HttpExchange ex) throws IOException {
    String run = HttpEndpoint.pathParameter(ex, "run");
    String problem = RunIds.problem(run);
    if (problem != null) {
      error(ex, 400, "run id " + UntrustedText.quote(run) + " " + problem);
      return null;
    }
    return run;
  }

  /**
   * Whether this instance answers for the run: true when it holds it; otherwise the request is
   * answered here (forwarded to the owner, 404 for an unknown run, 503 while rebalancing).
   */
  private boolean ownedHere(HttpExchange ex, String run) throws IOException {
    try {
      if (!isLocal(ex)) {
        Optional<HostInfo> owner = stores.owner(run);
        if (owner.isEmpty()) {
          error(ex, 503, "the application is rebalancing; retry shortly");
          return false;
        }
        if (!owner.get().equals(self)) {
          relay(ex, owner.get());
          return false;
        }
      }
      if (stores.run(run).isEmpty()) {
        error(ex, 404, "no run " + UntrustedText.quote(run) + " (never seen, or released after its retention)");
        return false;
      }
      return true;
    } catch (InvalidStateStoreException e) {
      error(ex, 503, "the run's store is not queryable now (" + e.getMessage() + "); retry shortly");
      return false;
    }
  }

  /** Answers with the owner's answer to the same path (raw, so the run id is decoded once, there). */
  private void relay(HttpExchange ex, HostInfo owner) throws IOException {
    String query = ex.getRequestURI().getRawQuery();
    String pathAndQuery = ex.getRequestURI().getRawPath() + "?" + LOCAL + "=1" + (query == null ? "" : "&" + query);
    String instance = owner.host() + ":" + owner.port();
    try {
      HttpResponse<String> r = forward(owner, pathAndQuery).get(FORWARD_TIMEOUT.toMillis() + 1000, TimeUnit.MILLISECONDS);
      HttpEndpoint.respond(ex, r.statusCode(), HttpEndpoint.JSON, r.body().getBytes(StandardCharsets.UTF_8));
    } catch (ExecutionException | TimeoutException e) {
      error(ex, 502, "the run's instance " + instance + " did not answer: " + e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      error(ex, 503, "interrupted");
    }
  }

  private CompletableFuture<HttpResponse<String>> forward(HostInfo host, String pathAndQuery) {
    HttpRequest request = HttpRequest.newBuilder(URI.create("http://" + host.host() + ":" + host.port() + pathAndQuery))
        .timeout(FORWARD_TIMEOUT).GET().build();
    return client.sendAsync(request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
  }

  private void localRuns(RunList.Builder out) {
    String instance = self.host() + ":" + self.port();
    for (RunState r : stores.runs()) {
      RunSummary.Builder s = RunSummary.newBuilder().setRunId(r.getRunId())
          .setDisplayName(r.getDisplayName().isEmpty() ? r.getRunId() : r.getDisplayName())
          .setFramework(r.getFramework()).setState(r.getEnded() ? RunPhase.ENDED : RunPhase.LIVE)
          .addAllLayers(r.getLayersList()).setOpenMeasurements(r.getOpenMeasurementsCount()).setInstance(instance);
      if (r.getFirstSeenMs() > 0) {
        s.setFirstSeen(Timestamps.fromMillis(r.getFirstSeenMs()));
      }
      if (r.getLastSeenMs() > 0) {
        s.setLastSeen(Timestamps.fromMillis(r.getLastSeenMs()));
      }
      if (r.getEnded() && r.getEndedWallMs() > 0) {
        s.setEnded(Timestamps.fromMillis(r.getEndedWallMs()));
      }
      out.addRuns(s);
    }
  }

  private static boolean isLocal(HttpExchange ex) {
    return "1".equals(HttpEndpoint.queryParameters(ex).get(LOCAL));
  }

  private static void json(HttpExchange ex, int status, Message body) throws IOException {
    HttpEndpoint.respond(ex, status, HttpEndpoint.JSON, Json.print(body));
  }

  private static void error(HttpExchange ex, int status, String message) throws IOException {
    json(ex, status, QueryError.newBuilder().setStatus(status).setError(message).build());
  }
}
