package io.flatmon.cli;

import io.flatmon.bench.SyntheticHeads;
import io.flatmon.engine.Activation;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.ConvGeometry;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.proto.v1.MeasurementDone;
import io.flatmon.proto.v1.RunStarted;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.proto.v1.TrainerSignal;
import io.flatmon.schema.RecordEncoder;
import io.flatmon.service.FlatmonService;
import io.flatmon.service.ScratchDirectory;
import io.flatmon.stream.TopologySettings;
import io.flatmon.wire.Topics;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * How soon a trainer sees the signal of a measurement: R synthetic runs each publish a measurement
 * (snapshot, train batches, MeasurementDone) every interval, a flatmon instance in this JVM answers
 * with a TrainerSignal, and two signal readers time MeasurementDone's publish → signal received: one
 * read_committed (signals visible when flatmon's exactly-once transaction commits, every commit
 * interval) and one read_uncommitted (visible when written; a transaction that aborts is replayed
 * and repeats the same signal, which the reader drops as a duplicate of its (run, step)).
 */
public final class SignalBenchmark {

  /** What to run. */
  public record Options(int runs, Duration interval, Duration duration, Duration warmup, int channels,
      int batchSize, int batchesPerMeasurement, Map<String, Object> streamsConfig, Path dataDir, int streamThreads,
      int engineThreads) {
  }

  /** Delays in seconds of one reader, and the duplicates it dropped. */
  public record Delays(String isolation, double[] seconds, long duplicates, long missing) {
    public double percentile(double p) {
      if (seconds.length == 0) {
        return Double.NaN;
      }
      double[] s = seconds.clone();
      Arrays.sort(s);
      return s[Math.min(s.length - 1, (int) Math.ceil(p * s.length) - 1)];
    }

    String line() {
      return String.format(Locale.ROOT, "%-16s %6d signals  delay p50 %6.3f s  p99 %6.3f s  max %6.3f s  "
          + "duplicates dropped %d  measurements without a signal %d", isolation, seconds.length, percentile(0.5),
          percentile(0.99), percentile(1.0), duplicates, missing);
    }
  }

  private final Options options;
  private final PrintWriter out;
  /** MeasurementDone publish time (µs) by "run/step", for measurements published while measuring. */
  private final Map<String, Long> published = new ConcurrentHashMap<>();

  public SignalBenchmark(Options options, PrintWriter out) {
    this.options = options;
    this.out = out;
  }

  public List<Delays> run() throws Exception {
    try (ScratchDirectory scratch = new ScratchDirectory(options.dataDir(), "flatmon-bench-signals-")) {
      return run(scratch.path());
    }
  }

  private List<Delays> run(Path dir) throws Exception {
    FlatmonService.Config config = new FlatmonService.Config(null, dir, 0, options.streamsConfig(),
        "flatmon-bench-signals", Math.max(2, Math.min(options.runs(), 12)), (short) 1, Duration.ofHours(1).toMillis(),
        options.streamThreads(), "127.0.0.1", 0, TopologySettings.defaults())
        .withThreads(options.streamThreads(), options.engineThreads());
    try (FlatmonService service = new FlatmonService(config).start(Duration.ofSeconds(120));
        KafkaProducer<String, byte[]> producer = producer(service.bootstrapServers())) {
      out.printf(Locale.ROOT, "signals: %d runs, a measurement every %.1f s each (snapshot C=C_in=%d 3x3 on 4x4, "
              + "%d train batches of %d, MeasurementDone), streams config %s, %d stream threads, %d engine threads%n",
          options.runs(), options.interval().toMillis() / 1e3, options.channels(), options.batchesPerMeasurement(),
          options.batchSize(), options.streamsConfig(), options.streamThreads(), options.engineThreads());
      out.flush();
      AtomicBoolean stop = new AtomicBoolean();
      List<Delays> result = new ArrayList<>();
      List<Thread> readers = new ArrayList<>();
      for (String isolation : List.of("read_committed", "read_uncommitted")) {
        Thread t = new Thread(() -> {
          Delays d = read(service.bootstrapServers(), isolation, stop);
          synchronized (result) {
            result.add(d);
          }
        }, "bench-signals-" + isolation);
        t.start();
        readers.add(t);
      }
      produce(producer);
      Thread.sleep(5000);
      stop.set(true);
      for (Thread t : readers) {
        t.join(20_000);
      }
      result.sort((a, b) -> a.isolation().compareTo(b.isolation()));
      for (Delays d : result) {
        out.println(d.line());
      }
      out.flush();
      return result;
    }
  }

  private void produce(KafkaProducer<String, byte[]> producer) throws InterruptedException {
    SyntheticHeads random = new SyntheticHeads(42);
    ConvGeometry g = new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1);
    int runs = options.runs();
    HeadSnapshot[] heads = new HeadSnapshot[runs];
    TelemetryRecord[] batches = new TelemetryRecord[runs];
    for (int r = 0; r < runs; r++) {
      heads[r] = random.head(options.channels(), options.channels(), g, 10, Activation.of(Activation.Kind.RELU),
          false, true, 3.0);
      ActivationBatch b = random.batch(heads[r], options.batchSize(), 4, 4, true);
      batches[r] = RecordEncoder.batch(run(r), "layer4", 0, Split.TRAIN, 0, heads[r], b, 0);
      producer.send(new ProducerRecord<>(Topics.TELEMETRY, run(r), TelemetryRecord.newBuilder()
          .setRunStarted(RunStarted.newBuilder().setRunId(run(r))).build().toByteArray()));
    }
    long intervalNanos = options.interval().toNanos();
    long start = System.nanoTime();
    long measureFrom = start + options.warmup().toNanos();
    long end = measureFrom + options.duration().toNanos();
    long[] next = new long[runs];
    long[] step = new long[runs];
    for (int r = 0; r < runs; r++) {
      next[r] = start + intervalNanos * r / runs;     // spread the runs' measurements over the interval
    }
    while (System.nanoTime() < end) {
      boolean any = false;
      for (int r = 0; r < runs; r++) {
        long now = System.nanoTime();
        if (now < next[r]) {
          continue;
        }
        any = true;
        next[r] += intervalNanos;
        long s = ++step[r];
        producer.send(new ProducerRecord<>(Topics.TELEMETRY, run(r),
            RecordEncoder.snapshot(run(r), "layer4", s, heads[r], micros()).toByteArray()));
        for (int b = 0; b < options.batchesPerMeasurement(); b++) {
          producer.send(new ProducerRecord<>(Topics.TELEMETRY, run(r), TelemetryRecord.newBuilder().setActivationBatch(
              batches[r].getActivationBatch().toBuilder().setStep(s).setBatchIndex(b).setPublishTimeMicros(micros()))
              .build().toByteArray()));
        }
        long done = micros();
        if (now >= measureFrom) {
          published.put(run(r) + "/" + s, done);
        }
        producer.send(new ProducerRecord<>(Topics.TELEMETRY, run(r), TelemetryRecord.newBuilder().setMeasurementDone(
            MeasurementDone.newBuilder().setRunId(run(r)).setStep(s).setLayer("layer4").setPublishTimeMicros(done))
            .build().toByteArray()));
        producer.flush();
      }
      if (!any) {
        Thread.sleep(1);
      }
    }
  }

  private Delays read(String bootstrap, String isolation, AtomicBoolean stop) {
    Map<String, Object> cfg = new HashMap<>();
    cfg.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    cfg.put(ConsumerConfig.GROUP_ID_CONFIG, "flatmon-bench-signals-" + isolation + System.nanoTime());
    cfg.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    cfg.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
    cfg.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 20);
    List<Double> delays = new ArrayList<>();
    Set<String> seen = new HashSet<>();
    long duplicates = 0;
    try (KafkaConsumer<String, byte[]> c = new KafkaConsumer<>(cfg, new StringDeserializer(),
        new ByteArrayDeserializer())) {
      c.subscribe(List.of(Topics.SIGNALS));
      while (!stop.get()) {
        for (ConsumerRecord<String, byte[]> rec : c.poll(Duration.ofMillis(50))) {
          long received = micros();
          try {
            TrainerSignal s = TrainerSignal.parseFrom(rec.value());
            String key = s.getRunId() + "/" + s.getStep();
            if (!seen.add(key + "/" + s.getReason())) {
              duplicates++;
              continue;
            }
            Long sent = published.get(key);
            if (sent != null) {
              delays.add((received - sent) / 1e6);
            }
          } catch (Exception e) {
            // not a signal: ignore
          }
        }
      }
    }
    long missing = published.keySet().stream().filter(k -> seen.stream().noneMatch(s -> s.startsWith(k + "/")))
        .count();
    return new Delays(isolation, delays.stream().mapToDouble(Double::doubleValue).toArray(), duplicates, missing);
  }

  private static KafkaProducer<String, byte[]> producer(String bootstrap) {
    Map<String, Object> cfg = new HashMap<>(Topics.largeMessageProducerConfig());
    cfg.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    cfg.put(ProducerConfig.LINGER_MS_CONFIG, 0);
    cfg.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
    return new KafkaProducer<>(cfg, new StringSerializer(), new ByteArraySerializer());
  }

  private static String run(int r) {
    return "bench-" + r;
  }

  private static long micros() {
    return System.currentTimeMillis() * 1000L;
  }
}
