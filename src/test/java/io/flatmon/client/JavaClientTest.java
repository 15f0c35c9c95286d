package io.flatmon.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.bench.SyntheticHeads;
import io.flatmon.engine.Activation;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.ConvGeometry;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.proto.v1.EarlyStopPolicy;
import io.flatmon.proto.v1.MonitoredQuantity;
import io.flatmon.proto.v1.PolicyMode;
import io.flatmon.proto.v1.SignalAction;
import io.flatmon.proto.v1.SignalReason;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TrainerSignal;
import io.flatmon.service.FlatmonService;
import io.flatmon.stream.TopologySettings;
import io.flatmon.trainer.EngineTelemetry;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.factory.Nd4j;

/** The Java trainer client against a real flatmon (embedded broker): publish, then receive signals. */
class JavaClientTest {

  @Test
  void publishesARunAndReceivesItsSignals(@TempDir Path dir) throws Exception {
    FlatmonService.Config config = new FlatmonService.Config(null, dir, 0, Map.of(), "flatmon-client-test", 2,
        (short) 1, Duration.ofHours(1).toMillis(), 1, "127.0.0.1", 0, TopologySettings.defaults());
    try (FlatmonService service = new FlatmonService(config).start(Duration.ofSeconds(120))) {
      SyntheticHeads random = new SyntheticHeads(9);
      HeadSnapshot head = random.head(6, 3, new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1), 5,
          Activation.of(Activation.Kind.RELU), true, false, 2.0);
      // Tr H is positive for ReLU heads, so "max mode, stop past 0" stops at the first measurement.
      EarlyStopPolicy policy = EarlyStopPolicy.newBuilder().setMonitor(MonitoredQuantity.HESSIAN_TRACE)
          .setMode(PolicyMode.MAX).setStoppingThreshold(0.0).setPatience(3).build();
      List<TrainerSignal> received = new CopyOnWriteArrayList<>();
      try (SignalSubscriber signals = new SignalSubscriber(service.bootstrapServers(), "java-run", Map.of(),
              received::add);
          TelemetryPublisher publisher = new TelemetryPublisher(service.bootstrapServers(), "java-run", Map.of())) {
        assertFalse(signals.shouldStop());
        EngineTelemetry engineTypes = new EngineTelemetry(publisher);
        TelemetryPublisher.await(publisher.runStarted(policy));
        for (long step = 1; step <= 2; step++) {
          engineTypes.snapshot("head", step, head);
          ActivationBatch b = random.batch(head, 4, 5, 5, true);
          engineTypes.batch("head", step, Split.TRAIN, head, b);
          // the same samples again, from ND4J arrays
          engineTypes.batch("head", step, Split.TRAIN, head,
              Nd4j.create(b.input(), new long[] {4, 3, 5, 5}, 'c'), null, b.labels());
          // and from plain arrays, straight through the client
          publisher.batch("head", step, Split.TRAIN, b.input(), new long[] {4, 3, 5, 5}, b.labels());
          TelemetryPublisher.await(publisher.measurementDone(step));
        }
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (received.size() < 2 && System.nanoTime() < deadline) {
          Thread.sleep(100);
        }
        publisher.runEnded("completed", 2);
        publisher.flush();
        assertEquals(2, received.size(), "one signal per final train measurement: " + received);
        TrainerSignal first = received.get(0);
        assertEquals(SignalAction.STOP, first.getAction());
        assertEquals(SignalReason.THRESHOLD_REACHED, first.getReason());
        assertEquals(1, first.getStep());
        assertEquals(1, first.getBestStep());
        assertTrue(first.getValue() > 0);
        assertEquals(SignalAction.STOP, received.get(1).getAction(), "a STOP is repeated");
        assertTrue(signals.shouldStop());
      }
    }
  }
}
