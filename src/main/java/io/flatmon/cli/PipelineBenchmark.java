package io.flatmon.cli;

import io.flatmon.bench.SyntheticHeads;
import io.flatmon.engine.Activation;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.ConvGeometry;
import io.flatmon.engine.EnginePool;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.MeasurementDone;
import io.flatmon.proto.v1.RunStarted;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.schema.RecordEncoder;
import io.flatmon.service.FlatmonService;
import io.flatmon.service.ScratchDirectory;
import io.flatmon.stream.TopologySettings;
import io.flatmon.wire.Topics;
import java.io.PrintWriter;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
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
 * End-to-end throughput and latency of the real pipeline: R synthetic runs publish snapshots and
 * batches to an embedded broker, a flatmon instance measures them, and a results consumer times
 * publish → result. Everything runs in this JVM, so CPU and heap are those of the whole pipeline.
 */
public final class PipelineBenchmark {

  /** What to run. */
  public record Options(int runs, double samplesPerSecond, Duration duration, Duration warmup, int batchSize,
      boolean sendZ, int channels, int classes, int batchesPerStep, int idleRuns, Path dataDir, int streamThreads,
      int engineThreads, int inFlight, Map<String, Object> streamsConfig) {
  }

  /** Figures of one measuring window or of the whole run. */
  public record Window(double seconds, long records, long samples, long bytes, double[] latencySeconds,
      double cpuCores, double engineCores, long heapBytes) {

    /** CPU time of the whole process per measured sample, in milliseconds. */
    public double cpuMillisPerSample() {
      return samples == 0 ? Double.NaN : cpuCores * seconds * 1e3 / samples;
    }

    double percentile(double p) {
      if (latencySeconds.length == 0) {
        return Double.NaN;
      }
      double[] s = latencySeconds.clone();
      Arrays.sort(s);
      return s[Math.min(s.length - 1, (int) Math.ceil(p * s.length) - 1)];
    }

    String line(String label) {
      return String.format(Locale.ROOT,
          "%-8s %7.1f s  %8.1f records/s  %8.1f samples/s  %7.1f MB/s  latency p50 %6.3f s  p99 %6.3f s  "
              + "CPU %4.2f cores (engines %4.2f)  %5.2f CPU-ms/sample  heap %5.0f MiB", label, seconds,
          records / seconds, samples / seconds, bytes / seconds / 1e6, percentile(0.5), percentile(0.99), cpuCores,
          engineCores, cpuMillisPerSample(), heapBytes / 1048576.0);
    }
  }

  private final Options options;
  private final PrintWriter out;
  private final AtomicLong producedRecords = new AtomicLong();
  private final AtomicLong producedBytes = new AtomicLong();
  private final AtomicLong measuredSamples = new AtomicLong();
  private final AtomicLong measuredBatches = new AtomicLong();
  private final Latencies latencies = new Latencies();

  /**
   * Publish→result latencies, kept twice: per 5 s window (drained by each window line) and for the
   * whole measuring period (from the end of the warm-up), so that the total's percentiles cover every
   * window and not only the last one.
   */
  static final class Latencies {
    private final List<Double> window = new ArrayList<>();
    private final List<Double> measured = new ArrayList<>();
    private boolean measuring;

    synchronized void add(double seconds) {
      window.add(seconds);
      if (measuring) {
        measured.add(seconds);
      }
    }

    /** From now on, every latency also counts for the total. */
    synchronized void startMeasuring() {
      measuring = true;
      measured.clear();
    }

    /** The latencies since the previous window, which start the next one empty. */
    synchronized double[] drainWindow() {
      double[] out = window.stream().mapToDouble(Double::doubleValue).toArray();
      window.clear();
      return out;
    }

    /** Every latency since {@link #startMeasuring()}. */
    synchronized double[] measured() {
      return measured.stream().mapToDouble(Double::doubleValue).toArray();
    }
  }

  public PipelineBenchmark(Options options, PrintWriter out) {
    this.options = options;
    this.out = out;
  }

  public Window run() throws Exception {
    try (ScratchDirectory scratch = new ScratchDirectory(options.dataDir(), "flatmon-bench-")) {
      return run(scratch.path());
    }
  }

  private Window run(Path dir) throws Exception {
    FlatmonService.Config config = new FlatmonService.Config(null, dir, 0, options.streamsConfig(), "flatmon-bench",
        Math.max(2, Math.min(options.runs(), 12)), (short) 1, Duration.ofHours(1).toMillis(),
        options.streamThreads(), "127.0.0.1", 0,
        TopologySettings.defaults()).withThreads(options.streamThreads(), options.engineThreads());
    try (FlatmonService service = new FlatmonService(config).start(Duration.ofSeconds(120));
        KafkaProducer<String, byte[]> producer = producer(service.bootstrapServers())) {
      out.printf("pipeline: %d runs, C=C_in=%d, 3x3 conv on 4x4, K=%d, batch %d, Z %s, target %s samples/s, "
              + "%d stream threads, %d engine threads%n",
          options.runs(), options.channels(), options.classes(), options.batchSize(),
          options.sendZ() ? "sent" : "not sent",
          options.samplesPerSecond() > 0 ? String.format("%.0f", options.samplesPerSecond())
              : "max (" + options.inFlight() + " batches in flight)", options.streamThreads(),
          options.engineThreads());
      out.flush();
      long heapBefore = heapAfterGc();
      if (options.idleRuns() > 0) {
        publishIdleRuns(producer, service);
        long heapIdle = heapAfterGc();
        out.printf(Locale.ROOT, "heap after GC: %.0f MiB before, %.0f MiB with %d idle runs (%.1f KiB per run)%n",
            heapBefore / 1048576.0, heapIdle / 1048576.0, options.idleRuns(),
            (heapIdle - heapBefore) / 1024.0 / options.idleRuns());
      }
      AtomicBoolean stop = new AtomicBoolean();
      Thread consumer = new Thread(() -> consume(service.bootstrapServers(), stop), "bench-results");
      consumer.start();
      Window total = produce(producer, stop);
      stop.set(true);
      consumer.join(10_000);
      out.println(total.line("total"));
      out.flush();
      return total;
    }
  }

  private Window produce(KafkaProducer<String, byte[]> producer, AtomicBoolean stop) throws Exception {
    SyntheticHeads random = new SyntheticHeads(42);
    ConvGeometry g = new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1);
    int runs = options.runs();
    HeadSnapshot[] heads = new HeadSnapshot[runs];
    TelemetryRecord[] batches = new TelemetryRecord[runs];
    for (int r = 0; r < runs; r++) {
      heads[r] = random.head(options.channels(), options.channels(), g, options.classes(),
          Activation.of(Activation.Kind.RELU), false, true, 3.0);
      ActivationBatch b = random.batch(heads[r], options.batchSize(), 4, 4, true);
      if (options.sendZ()) {
        b = random.withPreActivation(heads[r], b, 0.3);
      }
      batches[r] = RecordEncoder.batch(run(r), "layer4", 0, Split.TRAIN, 0, heads[r], b, 0);
      send(producer, run(r), TelemetryRecord.newBuilder().setRunStarted(RunStarted.newBuilder().setRunId(run(r))).build());
    }
    long[] steps = new long[runs];
    int[] batchInStep = new int[runs];
    for (int r = 0; r < runs; r++) {
      send(producer, run(r), RecordEncoder.snapshot(run(r), "layer4", 0, heads[r], micros()));
    }
    double batchesPerSecond = options.samplesPerSecond() / options.batchSize();
    long start = System.nanoTime();
    long measureFrom = start + options.warmup().toNanos();
    long end = measureFrom + options.duration().toNanos();
    long windowStart = start;
    long[] windowBase = snapshotCounters();
    Cpu cpuWindowStart = Cpu.now();
    Window total = null;
    long[] totalBase = null;
    Cpu cpuTotalStart = null;
    long sent = 0;
    int r = 0;
    while (System.nanoTime() < end) {
      long now = System.nanoTime();
      boolean due = batchesPerSecond <= 0 ? sent - measuredBatches.get() < options.inFlight()
          : sent < (now - start) / 1e9 * batchesPerSecond;
      if (due) {
        if (batchInStep[r] == options.batchesPerStep()) {
          send(producer, run(r), TelemetryRecord.newBuilder().setMeasurementDone(
              MeasurementDone.newBuilder().setRunId(run(r)).setStep(steps[r]).setPublishTimeMicros(micros())).build());
          steps[r]++;
          batchInStep[r] = 0;
          send(producer, run(r), RecordEncoder.snapshot(run(r), "layer4", steps[r], heads[r], micros()));
        }
        var a = batches[r].getActivationBatch().toBuilder().setStep(steps[r]).setBatchIndex(batchInStep[r])
            .setPublishTimeMicros(micros());
        send(producer, run(r), TelemetryRecord.newBuilder().setActivationBatch(a).build());
        batchInStep[r]++;
        sent++;
        r = (r + 1) % runs;
      } else {
        Thread.sleep(1);
      }
      if (totalBase == null && now >= measureFrom) {
        totalBase = snapshotCounters();
        cpuTotalStart = Cpu.now();
        latencies.startMeasuring();
      }
      if (now - windowStart >= 5_000_000_000L) {
        long[] c = snapshotCounters();
        Cpu cpu = Cpu.now();
        Window w = window((now - windowStart) / 1e9, windowBase, c, cpu.since(cpuWindowStart), false);
        out.println(w.line(now < measureFrom ? "warmup" : "window"));
        out.flush();
        windowStart = now;
        windowBase = c;
        cpuWindowStart = cpu;
      }
    }
    producer.flush();
    Thread.sleep(2000);
    long[] c = snapshotCounters();
    total = window((System.nanoTime() - measureFrom) / 1e9, totalBase == null ? windowBase : totalBase, c,
        Cpu.now().since(cpuTotalStart == null ? cpuWindowStart : cpuTotalStart), true);
    return total;
  }

  private Window window(double seconds, long[] base, long[] now, Cpu cpu, boolean all) {
    double[] lat = all ? latencies.measured() : latencies.drainWindow();
    return new Window(seconds, now[0] - base[0], now[2] - base[2], now[1] - base[1], lat,
        cpu.process() / seconds, cpu.engines() / seconds, ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed());
  }

  private long[] snapshotCounters() {
    return new long[] {producedRecords.get(), producedBytes.get(), measuredSamples.get()};
  }

  private void consume(String bootstrap, AtomicBoolean stop) {
    Map<String, Object> cfg = new HashMap<>(Topics.largeMessageConsumerConfig());
    cfg.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    cfg.put(ConsumerConfig.GROUP_ID_CONFIG, "flatmon-bench-" + System.nanoTime());
    cfg.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    cfg.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    try (KafkaConsumer<String, byte[]> c = new KafkaConsumer<>(cfg, new StringDeserializer(),
        new ByteArrayDeserializer())) {
      c.subscribe(List.of(Topics.RESULTS));
      while (!stop.get()) {
        for (ConsumerRecord<String, byte[]> rec : c.poll(Duration.ofMillis(200))) {
          try {
            FlatnessResult r = FlatnessResult.parseFrom(rec.value());
            if (!r.getFinal() && r.getRunId().startsWith("bench-")) {
              measuredBatches.incrementAndGet();
              measuredSamples.addAndGet(options.batchSize());
              double latency = (micros() - r.getPublishTimeMicros()) / 1e6;
              latencies.add(latency);
            }
          } catch (Exception e) {
            // not a result: ignore
          }
        }
      }
    }
  }

  private void publishIdleRuns(KafkaProducer<String, byte[]> producer, FlatmonService service)
      throws InterruptedException {
    SyntheticHeads random = new SyntheticHeads(7);
    HeadSnapshot small = random.head(64, 64, new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1), 10,
        Activation.of(Activation.Kind.RELU), true, false, 1.0);
    for (int i = 0; i < options.idleRuns(); i++) {
      String id = "idle-" + i;
      send(producer, id, TelemetryRecord.newBuilder().setRunStarted(RunStarted.newBuilder().setRunId(id)).build());
      send(producer, id, RecordEncoder.snapshot(id, "layer4", 0, small, micros()));
    }
    producer.flush();
    // let the instance process them
    Thread.sleep(5000);
  }

  private void send(KafkaProducer<String, byte[]> producer, String key, TelemetryRecord record) {
    byte[] bytes = record.toByteArray();
    producer.send(new ProducerRecord<>(Topics.TELEMETRY, key, bytes));
    producedRecords.incrementAndGet();
    producedBytes.addAndGet(bytes.length);
  }

  private static KafkaProducer<String, byte[]> producer(String bootstrap) {
    Map<String, Object> cfg = new HashMap<>(Topics.largeMessageProducerConfig());
    cfg.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    cfg.put(ProducerConfig.LINGER_MS_CONFIG, 2);
    cfg.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
    return new KafkaProducer<>(cfg, new StringSerializer(), new ByteArraySerializer());
  }

  private static String run(int r) {
    return "bench-" + r;
  }

  private static long micros() {
    return System.currentTimeMillis() * 1000L;
  }

  /** CPU seconds used so far by the process and by its engine threads (EnginePool's workers). */
  private record Cpu(double process, double engines) {
    static Cpu now() {
      double process = Double.NaN;
      if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean sun) {
        process = sun.getProcessCpuTime() / 1e9;
      }
      var threads = ManagementFactory.getThreadMXBean();
      double engines = 0;
      for (var info : threads.getThreadInfo(threads.getAllThreadIds())) {
        if (info != null && info.getThreadName().startsWith(EnginePool.THREAD_PREFIX)) {
          engines += Math.max(0, threads.getThreadCpuTime(info.getThreadId())) / 1e9;
        }
      }
      return new Cpu(process, engines);
    }

    Cpu since(Cpu earlier) {
      return new Cpu(process - earlier.process, engines - earlier.engines);
    }
  }

  private static long heapAfterGc() {
    System.gc();
    return ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
  }
}
