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
import io.flatmon.wire.Topics;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Synthetic training runs for a local flatmon, so the dashboards have something to show (deploy/local/feed.sh
 * runs it). Every period each run publishes, per layer, a snapshot of the next step, train and eval
 * batches of it and MeasurementDone; the classifier gain grows with the step, so κ rises over time like
 * a run that sharpens. Ctrl-C (or the last step) ends the runs with RunEnded.
 *
 * <p>Arguments: [bootstrap servers (127.0.0.1:9092)] [runs (3)] [steps, 0 = until Ctrl-C (0)] [period seconds (5)]
 */
public final class DemoFeed {
  private static final List<String> LAYERS = List.of("layer3.conv2", "layer4.conv2");
  private static final ConvGeometry GEOMETRY = new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1);

  public static void main(String[] args) throws Exception {
    String bootstrap = args.length > 0 ? args[0] : "127.0.0.1:9092";
    int runs = args.length > 1 ? Integer.parseInt(args[1]) : 3;
    int steps = args.length > 2 ? Integer.parseInt(args[2]) : 0;
    long periodMs = (long) (1000 * (args.length > 3 ? Double.parseDouble(args[3]) : 5));

    Map<String, Object> config = new HashMap<>(Topics.largeMessageProducerConfig());
    config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    config.put(ProducerConfig.ACKS_CONFIG, "all");
    config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
    KafkaProducer<String, byte[]> producer =
        new KafkaProducer<>(config, new StringSerializer(), new ByteArraySerializer());

    String prefix = "demo-" + LocalDateTime.now().format(DateTimeFormatter.ofPattern("MMdd-HHmmss")) + "-";
    List<String> ids = new ArrayList<>();
    List<SyntheticHeads> generators = new ArrayList<>();
    for (int i = 0; i < runs; i++) {
      String id = prefix + i;
      ids.add(id);
      generators.add(new SyntheticHeads(1000 + i));
      send(producer, id, TelemetryRecord.newBuilder().setRunStarted(RunStarted.newBuilder().setRunId(id)
          .setDisplayName("demo run " + i).setFramework("flatmon DemoFeed")).build());
    }
    AtomicBoolean ended = new AtomicBoolean();
    Runnable end = () -> {
      if (ended.compareAndSet(false, true)) {
        for (String id : ids) {
          send(producer, id, TelemetryRecord.newBuilder().setRunEnded(RunEnded.newBuilder().setRunId(id)
              .setReason("completed").setPublishTimeMicros(micros())).build());
        }
        producer.close();
        System.out.println("DemoFeed: ended " + ids);
      }
    };
    Runtime.getRuntime().addShutdownHook(new Thread(end, "demo-feed-end"));
    System.out.println("DemoFeed: publishing runs " + ids + " to " + bootstrap + " every " + periodMs
        + " ms; Ctrl-C ends them");

    for (long step = 1; steps == 0 || step <= steps; step++) {
      long t0 = System.currentTimeMillis();
      for (int i = 0; i < runs; i++) {
        String id = ids.get(i);
        SyntheticHeads gen = generators.get(i);
        double gain = 1.0 + 0.05 * step * (i + 1);
        for (String layer : LAYERS) {
          HeadSnapshot head = gen.head(16, 8, GEOMETRY, 10, Activation.of(Activation.Kind.RELU), true, true, gain);
          send(producer, id, RecordEncoder.snapshot(id, layer, step * 100, head, micros()));
          for (int b = 0; b < 4; b++) {
            Split split = b < 3 ? Split.TRAIN : Split.EVAL;
            ActivationBatch batch = gen.batch(head, 16, 8, 8, true);
            send(producer, id, RecordEncoder.batch(id, layer, step * 100, split, b < 3 ? b : 0, head, batch,
                micros()));
          }
        }
        send(producer, id, TelemetryRecord.newBuilder().setMeasurementDone(MeasurementDone.newBuilder()
            .setRunId(id).setStep(step * 100).setPublishTimeMicros(micros())).build());
      }
      producer.flush();
      System.out.println("DemoFeed: step " + step * 100 + " published");
      Thread.sleep(Math.max(0, periodMs - (System.currentTimeMillis() - t0)));
    }
    end.run();
  }

  private static void send(KafkaProducer<String, byte[]> producer, String runId, TelemetryRecord record) {
    producer.send(new ProducerRecord<>(Topics.TELEMETRY, runId, record.toByteArray()));
  }

  private static long micros() {
    return System.currentTimeMillis() * 1000L;
  }
}
