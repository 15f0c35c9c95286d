package io.flatmon.stream.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.util.JsonFormat;
import io.flatmon.bench.SyntheticHeads;
import io.flatmon.cli.FlatmonCommand;
import io.flatmon.engine.Activation;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.ConvGeometry;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.proto.v1.ActivationKind;
import io.flatmon.proto.v1.Estimate;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.LayerSnapshot;
import io.flatmon.proto.v1.MeasurementDone;
import io.flatmon.proto.v1.RunEnded;
import io.flatmon.proto.v1.RunStarted;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.schema.TensorCodec;
import io.flatmon.wire.Topics;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Synthetic training runs for the integration tests: telemetry records built from {@link SyntheticHeads},
 * round-robin interleaving, an idempotent producer keyed by run id, the length-delimited file that
 * {@code flatmon compute} reads, and the comparison of stream results with the offline ones.
 */
public final class TelemetryFixtures {
  private TelemetryFixtures() {
  }

  /** One monitored conv head of a run. */
  public record LayerSpec(String name, int channels, int inputChannels, int classes, int kernel, int padding,
      int size, ActivationKind activation, boolean labels, Double weightDecay) {
  }

  /** A message as it goes on the telemetry topic: a key and raw bytes (possibly garbage, or null). */
  public record Message(String key, byte[] value) {
    public static Message of(TelemetryRecord r) {
      return new Message(runOf(r), r.toByteArray());
    }
  }

  /** The two small layers of the concurrent-runs scenario; weight decay on the first layer of even runs. */
  public static List<LayerSpec> smallLayers(int runIndex) {
    return List.of(
        new LayerSpec("layer4.relu", 8, 4, 10, 3, 1, 4, ActivationKind.RELU, false,
            runIndex % 2 == 0 ? 5e-4 : null),
        new LayerSpec("layer4.gelu", 8, 4, 10, 3, 1, 4, ActivationKind.GELU, true,
            runIndex % 3 == 0 ? 1e-3 : null));
  }

  /**
   * A complete run: RunStarted, then per step a snapshot and {@code train} + {@code eval} batches of
   * {@code batchSize} samples for each layer, MeasurementDone per step, RunEnded.
   */
  public static List<TelemetryRecord> run(String runId, long seed, List<LayerSpec> layers, int steps, int train,
      int eval, int batchSize) {
    SyntheticHeads gen = new SyntheticHeads(seed);
    List<TelemetryRecord> out = new ArrayList<>();
    out.add(TelemetryRecord.newBuilder().setRunStarted(RunStarted.newBuilder().setRunId(runId)
        .setDisplayName("synthetic " + runId).setFramework("flatmon-it")).build());
    for (int s = 1; s <= steps; s++) {
      long step = 100L * s;
      for (LayerSpec layer : layers) {
        HeadSnapshot head = head(gen, layer);
        out.add(TelemetryRecord.newBuilder().setLayerSnapshot(snapshot(runId, layer, step, head)).build());
        for (int b = 0; b < train + eval; b++) {
          Split split = b < train ? Split.TRAIN : Split.EVAL;
          ActivationBatch batch = gen.batch(head, batchSize, layer.size(), layer.size(), layer.labels());
          out.add(TelemetryRecord.newBuilder()
              .setActivationBatch(batch(runId, layer.name(), step, split, b < train ? b : b - train, batch)).build());
        }
      }
      out.add(TelemetryRecord.newBuilder().setMeasurementDone(MeasurementDone.newBuilder().setRunId(runId)
          .setStep(step)).build());
    }
    out.add(TelemetryRecord.newBuilder().setRunEnded(RunEnded.newBuilder().setRunId(runId)
        .setReason("completed").setFinalStep(100L * steps)).build());
    return out;
  }

  /** The standard small run: 2 steps, 2 layers, 2 train + 1 eval batches of 4 samples each. */
  public static List<TelemetryRecord> smallRun(String runId, int runIndex) {
    return run(runId, 1000L + runIndex, smallLayers(runIndex), 2, 2, 1, 4);
  }

  public static HeadSnapshot head(SyntheticHeads gen, LayerSpec layer) {
    ConvGeometry g = new ConvGeometry(layer.kernel(), layer.kernel(), 1, 1, layer.padding(), layer.padding(), 1, 1);
    Activation a = Activation.of(switch (layer.activation()) {
      case RELU -> Activation.Kind.RELU;
      case GELU -> Activation.Kind.GELU;
      case TANH -> Activation.Kind.TANH;
      case IDENTITY -> Activation.Kind.IDENTITY;
      default -> throw new IllegalArgumentException("unsupported in fixtures: " + layer.activation());
    });
    HeadSnapshot h = gen.head(layer.channels(), layer.inputChannels(), g, layer.classes(), a, true, true, 2.0);
    return h;
  }

  public static LayerSnapshot snapshot(String runId, LayerSpec layer, long step, HeadSnapshot h) {
    int c = h.channels();
    int cin = h.inputChannels();
    int k = layer.kernel();
    LayerSnapshot.Builder b = LayerSnapshot.newBuilder().setRunId(runId).setLayer(layer.name()).setStep(step)
        .setKernel(TensorCodec.encode(h.kernel(), c, cin, k, k))
        .addPadding(layer.padding())
        .setActivation(io.flatmon.proto.v1.Activation.newBuilder().setKind(layer.activation()))
        .setClassifierWeight(TensorCodec.encode(h.classifierWeight(), h.classes(), c))
        .setPublishTimeMicros(System.currentTimeMillis() * 1000L);
    if (h.bias() != null) {
      b.setBias(TensorCodec.encode(h.bias(), c));
    }
    if (h.scale() != null) {
      b.setScale(TensorCodec.encode(h.scale(), c));
    }
    if (h.classifierBias() != null) {
      b.setClassifierBias(TensorCodec.encode(h.classifierBias(), h.classes()));
    }
    if (layer.weightDecay() != null) {
      b.setWeightDecay(layer.weightDecay());
    }
    return b.build();
  }

  public static io.flatmon.proto.v1.ActivationBatch batch(String runId, String layer, long step, Split split,
      int index, ActivationBatch batch) {
    io.flatmon.proto.v1.ActivationBatch.Builder b = io.flatmon.proto.v1.ActivationBatch.newBuilder()
        .setRunId(runId).setLayer(layer).setStep(step).setSplit(split).setBatchIndex(index)
        .setInput(TensorCodec.encode(batch.input(), batch.samples(), batch.inputChannels(), batch.height(),
            batch.width()))
        .setPublishTimeMicros(System.currentTimeMillis() * 1000L);
    if (batch.labels() != null) {
      for (int y : batch.labels()) {
        b.addLabels(y);
      }
    }
    return b.build();
  }

  public static String runOf(TelemetryRecord r) {
    return switch (r.getRecordCase()) {
      case RUN_STARTED -> r.getRunStarted().getRunId();
      case LAYER_SNAPSHOT -> r.getLayerSnapshot().getRunId();
      case ACTIVATION_BATCH -> r.getActivationBatch().getRunId();
      case MEASUREMENT_DONE -> r.getMeasurementDone().getRunId();
      case RUN_ENDED -> r.getRunEnded().getRunId();
      default -> throw new IllegalArgumentException("no variant set");
    };
  }

  /** Round-robin: the first record of every run, then the second of every run, and so on. */
  public static <T> List<T> interleave(List<List<T>> runs) {
    List<T> out = new ArrayList<>();
    List<Iterator<T>> its = new ArrayList<>();
    runs.forEach(r -> its.add(r.iterator()));
    boolean any = true;
    while (any) {
      any = false;
      for (Iterator<T> it : its) {
        if (it.hasNext()) {
          out.add(it.next());
          any = true;
        }
      }
    }
    return out;
  }

  /** Number of final results the records must produce: one per (run, layer, step, split) measured. */
  public static int expectedFinals(List<TelemetryRecord> records) {
    return (int) records.stream().filter(TelemetryRecord::hasActivationBatch)
        .map(r -> r.getActivationBatch().getRunId() + "/" + r.getActivationBatch().getLayer() + "/"
            + r.getActivationBatch().getStep() + "/" + r.getActivationBatch().getSplit())
        .distinct().count();
  }

  /** Writes the records in protobuf's length-delimited format (what `flatmon compute` reads). */
  public static Path writeDelimited(Path file, List<TelemetryRecord> records) throws IOException {
    try (OutputStream out = new java.io.BufferedOutputStream(Files.newOutputStream(file))) {
      for (TelemetryRecord r : records) {
        r.writeDelimitedTo(out);
      }
    }
    return file;
  }

  /** An idempotent producer (acks=all) with the large-message limits, keyed by run id. */
  public static KafkaProducer<String, byte[]> producer(Properties client) {
    Properties p = new Properties();
    p.putAll(client);
    p.putAll(Topics.largeMessageProducerConfig());
    p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
    return new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
  }

  /** Sends the messages in order to the telemetry topic and waits for every acknowledgement. */
  public static List<RecordMetadata> produce(KafkaProducer<String, byte[]> producer, List<Message> messages)
      throws Exception {
    List<Future<RecordMetadata>> acks = new ArrayList<>();
    for (Message m : messages) {
      acks.add(producer.send(new ProducerRecord<>(Topics.TELEMETRY, m.key(), m.value())));
    }
    producer.flush();
    List<RecordMetadata> out = new ArrayList<>();
    for (Future<RecordMetadata> f : acks) {
      out.add(f.get());
    }
    return out;
  }

  public static List<Message> messages(List<TelemetryRecord> records) {
    return records.stream().map(Message::of).toList();
  }

  /** (run, layer, step, split). */
  public static String key(FlatnessResult r) {
    return r.getRunId() + "/" + r.getLayer() + "/" + r.getStep() + "/" + r.getSplit();
  }

  /** `flatmon compute --json FILE` run in this JVM; results by {@link #key}. */
  public static Map<String, FlatnessResult> offline(Path file) throws Exception {
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    var cli = FlatmonCommand.commandLine();
    cli.setOut(new PrintWriter(out, true));
    cli.setErr(new PrintWriter(err, true));
    assertEquals(0, cli.execute("compute", "--json", file.toString()), () -> "flatmon compute failed: " + err);
    Map<String, FlatnessResult> byKey = new HashMap<>();
    for (String line : out.toString().split("\n")) {
      if (!line.isBlank()) {
        FlatnessResult.Builder b = FlatnessResult.newBuilder();
        JsonFormat.parser().merge(line, b);
        byKey.put(key(b.build()), b.build());
      }
    }
    return byKey;
  }

  /**
   * {@link #offline} of the records (written to {@code file}) on another thread, so that it overlaps
   * with the stream processing the test waits for.
   */
  public static java.util.concurrent.CompletableFuture<Map<String, FlatnessResult>> offlineAsync(Path file,
      List<TelemetryRecord> records) {
    return java.util.concurrent.CompletableFuture.supplyAsync(() -> {
      try {
        return offline(writeDelimited(file, records));
      } catch (Exception e) {
        throw new IllegalStateException("offline compute failed", e);
      }
    });
  }

  /**
   * Every stream final equals the offline result of its key, and every offline result has exactly one
   * final.
   */
  public static void assertFinalsEqualOffline(Map<String, FlatnessResult> offline, List<FlatnessResult> finals) {
    Map<String, FlatnessResult> byKey = uniqueByKey(finals);
    assertEquals(new java.util.TreeSet<>(offline.keySet()), new java.util.TreeSet<>(byKey.keySet()),
        "the stream's finals and the offline results cover the same (run, layer, step, split)");
    for (FlatnessResult r : finals) {
      assertSameValues(offline.get(key(r)), r);
    }
  }

  /** Finals by key, failing on a duplicate. */
  public static Map<String, FlatnessResult> uniqueByKey(List<FlatnessResult> finals) {
    Map<String, FlatnessResult> byKey = new HashMap<>();
    List<String> duplicates = new ArrayList<>();
    for (FlatnessResult r : finals) {
      if (byKey.put(key(r), r) != null) {
        duplicates.add(key(r));
      }
    }
    assertTrue(duplicates.isEmpty(), () -> duplicates.size() + " duplicate final result(s), e.g. "
        + duplicates.subList(0, Math.min(5, duplicates.size())));
    return byKey;
  }

  /** Same values at 1e-6 relative (NaN matches NaN: e.g. the loss of an unlabelled head). */
  public static void assertSameValues(FlatnessResult expected, FlatnessResult actual) {
    String k = key(expected);
    assertEquals(expected.getSamples(), actual.getSamples(), k + " samples");
    assertEquals(expected.getLabelledSamples(), actual.getLabelledSamples(), k + " labelled samples");
    assertEquals(expected.getBatches(), actual.getBatches(), k + " batches");
    assertEquals(expected.getNonFinite(), actual.getNonFinite(), k + " non_finite");
    close(k + " Tr H", expected.getHessianTrace(), actual.getHessianTrace());
    close(k + " κ", expected.getRelativeFlatness(), actual.getRelativeFlatness());
    close(k + " κ_norm", expected.getRelativeFlatnessNormalized(), actual.getRelativeFlatnessNormalized());
    close(k + " loss", expected.getLoss(), actual.getLoss());
    close(k + " accuracy", expected.getAccuracy(), actual.getAccuracy());
    close(k + " Tr H_V", expected.getClassifierHessianTrace(), actual.getClassifierHessianTrace());
    close(k + " κ_V", expected.getClassifierRelativeFlatness(), actual.getClassifierRelativeFlatness());
    close(k + " weight decay Tr H", expected.getWeightDecayTrace(), actual.getWeightDecayTrace());
    close(k + " weight decay κ", expected.getWeightDecayRelativeFlatness(), actual.getWeightDecayRelativeFlatness());
    assertEquals(expected.getInputChannelRmsList(), actual.getInputChannelRmsList(), k + " ρ");
    assertEquals(expected.getInputChannelRmsSource(), actual.getInputChannelRmsSource(), k + " ρ source");
  }

  static void close(String what, Estimate e, Estimate a) {
    close(what, e.getMean(), a.getMean());
    close(what + " se", e.getStandardError(), a.getStandardError());
  }

  static void close(String what, double e, double a) {
    if (Double.isNaN(e) || Double.isNaN(a)) {
      assertTrue(Double.isNaN(e) && Double.isNaN(a), what + ": offline " + e + " stream " + a);
      return;
    }
    assertTrue(e == a || Math.abs(e - a) <= 1e-6 * Math.abs(e), what + ": offline " + e + " stream " + a);
  }
}
