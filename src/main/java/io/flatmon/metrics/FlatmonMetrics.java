package io.flatmon.metrics;

import com.sun.net.httpserver.HttpHandler;
import io.flatmon.engine.EngineInfo;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.TrainerSignal;
import io.flatmon.stream.TopologyListener;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.binder.jvm.ClassLoaderMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.kafka.KafkaStreamsMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.core.instrument.binder.system.UptimeMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.prometheus.metrics.core.metrics.Info;
import io.prometheus.metrics.exporter.httpserver.MetricsHandler;
import java.time.Duration;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.streams.KafkaStreams;

/**
 * flatmon's Prometheus metrics: per (run, layer, split) gauges of the latest result, counters of
 * samples, signals and rejections, latency histograms, the engine's backend, plus Kafka Streams and
 * JVM metrics through Micrometer's maintained binders. Series of a run disappear when this instance
 * releases the run (ended, expired, or its partition moved to another instance).
 */
public final class FlatmonMetrics implements TopologyListener, AutoCloseable {
  private static final String OPENMETRICS = "application/openmetrics-text";
  /** Longest label value of a run's series (UTF-16 chars). */
  static final int MAX_LABEL_CHARS = 256;

  private final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
  private final Map<String, Map<String, RunSeries>> runs = new ConcurrentHashMap<>();
  /** Per run: the last signal sent (0 none, 1 continue, 2 warn, 3 stop) and its gauge. */
  private final Map<String, java.util.concurrent.atomic.AtomicInteger> lastSignal = new ConcurrentHashMap<>();
  private final Map<String, io.micrometer.core.instrument.Gauge> lastSignalGauges = new ConcurrentHashMap<>();
  private final Info runInfo;
  private final Map<String, String[]> runInfoLabels = new ConcurrentHashMap<>();
  private final Timer batchCompute;
  private final Timer publishToResult;
  private KafkaStreamsMetrics streamsMetrics;
  private JvmGcMetrics gcMetrics;

  public FlatmonMetrics() {
    registry.config().meterFilter(new ExpositionNaming());
    new JvmMemoryMetrics().bindTo(registry);
    gcMetrics = new JvmGcMetrics();
    gcMetrics.bindTo(registry);
    new JvmThreadMetrics().bindTo(registry);
    new ClassLoaderMetrics().bindTo(registry);
    new ProcessorMetrics().bindTo(registry);
    new UptimeMetrics().bindTo(registry);
    batchCompute = Timer.builder("flatmon.batch.compute").description("Engine time per activation batch")
        .publishPercentileHistogram().minimumExpectedValue(Duration.ofMillis(1))
        .maximumExpectedValue(Duration.ofSeconds(60)).register(registry);
    publishToResult = Timer.builder("flatmon.publish.to.result")
        .description("Trainer publish time to result emission, per batch")
        .publishPercentileHistogram().minimumExpectedValue(Duration.ofMillis(1))
        .maximumExpectedValue(Duration.ofSeconds(120)).register(registry);
    EngineInfo engine = EngineInfo.current();
    Info.builder().name("flatmon_engine_info").help("Backend and device of the curvature engine")
        .labelNames("backend", "device").register(registry.getPrometheusRegistry())
        .setLabelValues(engine.backend(), engine.device());
    runInfo = Info.builder().name("flatmon_run_info").help("Runs this instance holds, with their display name and framework")
        .labelNames("run", "display_name", "framework").register(registry.getPrometheusRegistry());
    for (String action : new String[] {"continue", "warn", "stop"}) {
      signals(action);
    }
    for (RejectReason reason : RejectReason.values()) {
      if (reason != RejectReason.REJECT_REASON_UNSPECIFIED && reason != RejectReason.UNRECOGNIZED) {
        rejected(reason);
      }
    }
  }

  /** Binds Kafka Streams' own metrics (lag, process rate, commit latency, state stores, ...). */
  public void bind(KafkaStreams streams) {
    streamsMetrics = new KafkaStreamsMetrics(streams);
    streamsMetrics.bindTo(registry);
  }

  @Override
  public void onResult(FlatnessResult r, double computeSeconds, int batchSamples) {
    String split = r.getSplit().name().toLowerCase(Locale.ROOT);
    String key = r.getLayer() + '\u001f' + split;
    Map<String, RunSeries> series = runs.computeIfAbsent(r.getRunId(), run -> {
      java.util.concurrent.atomic.AtomicInteger signal = new java.util.concurrent.atomic.AtomicInteger();
      lastSignal.put(run, signal);
      lastSignalGauges.put(run, io.micrometer.core.instrument.Gauge.builder("flatmon.run.last.signal", signal,
              java.util.concurrent.atomic.AtomicInteger::get)
          .description("Last signal sent to the run's trainer: 0 none, 1 continue, 2 warn, 3 stop")
          .tag("run", run).strongReference(true).register(registry));
      return new ConcurrentHashMap<>();
    });
    RunSeries s = series.get(key);
    if (s == null) {
      series.put(key, new RunSeries(registry, label(r.getRunId()), label(r.getLayer()), split, r));
      s = series.get(key);
    }
    s.update(r, batchSamples);
    if (!Double.isNaN(computeSeconds)) {
      batchCompute.record((long) (computeSeconds * 1e9), TimeUnit.NANOSECONDS);
      if (r.getPublishTimeMicros() > 0) {
        long micros = System.currentTimeMillis() * 1000L - r.getPublishTimeMicros();
        publishToResult.record(Math.max(0, micros), TimeUnit.MICROSECONDS);
      }
    }
  }

  @Override
  public void onRunSeen(String runId, String displayName, String framework) {
    String[] labels = {label(runId), label(displayName.isEmpty() ? runId : displayName), label(framework)};
    runInfoLabels.compute(runId, (run, old) -> {
      if (old != null) {
        runInfo.remove(old);
      }
      runInfo.addLabelValues(labels);
      return labels;
    });
  }

  /**
   * A label value cut to {@value #MAX_LABEL_CHARS} characters (the last one an ellipsis when cut):
   * label values come from trainers, and every scrape and every Prometheus series carries them.
   */
  static String label(String value) {
    if (value.length() <= MAX_LABEL_CHARS) {
      return value;
    }
    int end = MAX_LABEL_CHARS - 1;
    if (Character.isHighSurrogate(value.charAt(end - 1))) {
      end--;
    }
    return value.substring(0, end) + "…";
  }

  @Override
  public void onRejected(RejectReason reason) {
    rejected(reason).increment();
  }

  private Counter rejected(RejectReason reason) {
    return Counter.builder("flatmon.rejected.records").description("Telemetry records sent to the dead-letter topic")
        .tag("reason", reason.name().toLowerCase(Locale.ROOT)).register(registry);
  }

  @Override
  public void onSignal(String runId, TrainerSignal signal) {
    onSignal(runId, signal.getAction().name());
  }

  /** Counts a signal sent to a trainer and records it as the run's last signal. */
  public void onSignal(String runId, String action) {
    String a = action.toLowerCase(Locale.ROOT);
    signals(a).increment();
    java.util.concurrent.atomic.AtomicInteger last = lastSignal.get(runId);
    if (last != null) {
      last.set(switch (a) {
        case "continue" -> 1;
        case "warn" -> 2;
        case "stop" -> 3;
        default -> 0;
      });
    }
  }

  private Counter signals(String action) {
    return Counter.builder("flatmon.signals").description("Signals sent to trainers")
        .tag("action", action).register(registry);
  }

  @Override
  public void onRunReleased(String runId) {
    Map<String, RunSeries> series = runs.remove(runId);
    if (series != null) {
      series.values().forEach(RunSeries::remove);
    }
    lastSignal.remove(runId);
    runInfoLabels.computeIfPresent(runId, (run, info) -> {
      runInfo.remove(info);
      return null;
    });
    io.micrometer.core.instrument.Gauge g = lastSignalGauges.remove(runId);
    if (g != null) {
      registry.remove(g);
    }
  }

  /** The exposition, Prometheus text or OpenMetrics by content negotiation. */
  public String scrape(String accept) {
    return registry.scrape(accept != null && accept.contains(OPENMETRICS) ? OPENMETRICS + "; version=1.0.0; charset=utf-8"
        : "text/plain; version=0.0.4; charset=utf-8");
  }

  /**
   * GET /metrics: the Prometheus library's handler (text or OpenMetrics by the Accept header, gzip by
   * Accept-Encoding, {@code name[]=} filters).
   */
  public HttpHandler httpHandler() {
    return new MetricsHandler(registry.getPrometheusRegistry());
  }

  public PrometheusMeterRegistry registry() {
    return registry;
  }

  @Override
  public void close() {
    if (streamsMetrics != null) {
      streamsMetrics.close();
    }
    gcMetrics.close();
    registry.close();
  }
}
