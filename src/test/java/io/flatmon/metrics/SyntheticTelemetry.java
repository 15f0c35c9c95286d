package io.flatmon.metrics;

import io.flatmon.bench.SyntheticHeads;
import io.flatmon.engine.Activation;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.ConvGeometry;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.proto.v1.MeasurementDone;
import io.flatmon.proto.v1.RunEnded;
import io.flatmon.proto.v1.RunStarted;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.schema.RecordEncoder;
import io.flatmon.service.FlatmonService;
import io.flatmon.stream.TopologySettings;
import io.flatmon.wire.Topics;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * A synthetic training run's telemetry, encoded with {@link RecordEncoder} from {@link SyntheticHeads}
 * (small 3×3 conv heads with labels, so loss and accuracy are measured), plus a real Kafka producer
 * and helpers to read which runs an instance exports.
 */
final class SyntheticTelemetry {
  static final List<String> LAYERS = List.of("layer3.conv2", "layer4.conv2");
  private static final ConvGeometry GEOMETRY = new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1);
  private static final Pattern RUN_LABEL = Pattern.compile("[{,]run=\"([^\"]*)\"");

  private final String runId;
  private final SyntheticHeads gen;
  private final Map<String, HeadSnapshot> heads = new HashMap<>();

  SyntheticTelemetry(String runId, long seed) {
    this.runId = runId;
    this.gen = new SyntheticHeads(seed);
  }

  String runId() {
    return runId;
  }

  TelemetryRecord started() {
    return TelemetryRecord.newBuilder().setRunStarted(RunStarted.newBuilder().setRunId(runId)
        .setDisplayName("synthetic " + runId).setFramework("flatmon-test")).build();
  }

  /** Per layer: a snapshot of {@code step} and train + eval batches of it; then MeasurementDone if asked. */
  List<TelemetryRecord> step(long step, int trainBatches, int evalBatches, boolean done) {
    List<TelemetryRecord> out = new ArrayList<>();
    long now = System.currentTimeMillis() * 1000L;
    for (String layer : LAYERS) {
      HeadSnapshot head = gen.head(8, 4, GEOMETRY, 10, Activation.of(Activation.Kind.RELU), true, true, 2.0);
      heads.put(layer, head);
      out.add(RecordEncoder.snapshot(runId, layer, step, head, now));
      for (int b = 0; b < trainBatches + evalBatches; b++) {
        boolean train = b < trainBatches;
        ActivationBatch batch = gen.batch(head, 8, 6, 6, true);
        out.add(RecordEncoder.batch(runId, layer, step, train ? Split.TRAIN : Split.EVAL,
            train ? b : b - trainBatches, head, batch, now));
      }
    }
    if (done) {
      out.add(TelemetryRecord.newBuilder().setMeasurementDone(MeasurementDone.newBuilder().setRunId(runId)
          .setStep(step).setPublishTimeMicros(now)).build());
    }
    return out;
  }

  TelemetryRecord ended(long finalStep) {
    return TelemetryRecord.newBuilder().setRunEnded(RunEnded.newBuilder().setRunId(runId).setReason("completed")
        .setFinalStep(finalStep).setPublishTimeMicros(System.currentTimeMillis() * 1000L)).build();
  }

  /** An idempotent producer with flatmon's large-message settings. */
  static KafkaProducer<String, byte[]> producer(String bootstrapServers) {
    Map<String, Object> config = new HashMap<>(Topics.largeMessageProducerConfig());
    config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
    config.put(ProducerConfig.ACKS_CONFIG, "all");
    config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
    config.put(ProducerConfig.LINGER_MS_CONFIG, 5);
    return new KafkaProducer<>(config, new StringSerializer(), new ByteArraySerializer());
  }

  /** Sends the records keyed by run id and waits for every acknowledgement. */
  static void send(KafkaProducer<String, byte[]> producer, String key, List<byte[]> values) {
    List<Future<RecordMetadata>> acks = new ArrayList<>();
    for (byte[] v : values) {
      acks.add(producer.send(new ProducerRecord<>(Topics.TELEMETRY, key, v)));
    }
    producer.flush();
    for (Future<RecordMetadata> f : acks) {
      try {
        f.get();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new AssertionError("interrupted", e);
      } catch (ExecutionException e) {
        throw new AssertionError("produce failed", e.getCause());
      }
    }
  }

  void send(KafkaProducer<String, byte[]> producer, List<TelemetryRecord> records) {
    send(producer, runId, records.stream().map(TelemetryRecord::toByteArray).toList());
  }

  /** The runs that have a series of {@code metric} in an exposition. */
  static Set<String> runsIn(String exposition, String metric) {
    Set<String> runs = new TreeSet<>();
    for (String line : exposition.split("\n")) {
      if (line.startsWith(metric + "{")) {
        Matcher m = RUN_LABEL.matcher(line);
        if (m.find()) {
          runs.add(m.group(1));
        }
      }
    }
    return runs;
  }

  /**
   * A test instance: free HTTP port, given broker (null = embedded), short retention for ended runs
   * (5 s) and a 1 s cleanup sweep, fast group failover.
   */
  static FlatmonService.Config config(String bootstrap, Path dataDir, String applicationId, int partitions) {
    Map<String, Object> client = new HashMap<>();
    client.put("session.timeout.ms", 6000);
    client.put("heartbeat.interval.ms", 1000);
    TopologySettings topology = TopologySettings.defaults()
        .withRetention(Duration.ofSeconds(5), Duration.ofMinutes(30))
        .withCleanupInterval(Duration.ofSeconds(1));
    return new FlatmonService.Config(bootstrap, dataDir, 0, client, applicationId, partitions, (short) 1,
        Duration.ofDays(1).toMillis(), 1, "127.0.0.1", 0, topology);
  }

  static FlatmonService start(FlatmonService.Config config) throws Exception {
    FlatmonService service = new FlatmonService(config);
    try {
      return service.start(Duration.ofSeconds(90));
    } catch (Exception | Error e) {
      service.close();
      throw e;
    }
  }

  static String since(long t0) {
    return String.format(java.util.Locale.ROOT, "%.1f s", (System.nanoTime() - t0) / 1e9);
  }
}
