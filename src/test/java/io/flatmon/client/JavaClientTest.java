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
import java.util.ArrayList;
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
        assertEquals(2, received.size(), "one signal per final train measurement: " + received);
        publisher.runEnded("completed", 2);
        publisher.flush();
        // and no more: nothing else may arrive within a grace period (a duplicate, or a signal for the
        // run's end). The subscriber polls continuously, so 5 s is many poll cycles.
        long graceEnd = System.nanoTime() + Duration.ofSeconds(5).toNanos();
        while (received.size() == 2 && System.nanoTime() < graceEnd) {
          Thread.sleep(100);
        }
        assertEquals(2, received.size(), "no extra signal within the grace period: " + received);
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

  /**
   * The server default on a real broker: a run that sends no policy gets CONTINUE / HEALTHY while its
   * values are finite, STOP / NON_FINITE at the first measurement whose weights are NaN; a run with an
   * invalid policy gets WARN / INVALID_POLICY and then runs under the default.
   */
  @Test
  void defaultPolicyStopsOnlyANonFiniteRunAndInvalidPoliciesAreNamed(@TempDir Path dir) throws Exception {
    FlatmonService.Config config = new FlatmonService.Config(null, dir, 0, Map.of(), "flatmon-client-default", 2,
        (short) 1, Duration.ofHours(1).toMillis(), 1, "127.0.0.1", 0, TopologySettings.defaults());
    try (FlatmonService service = new FlatmonService(config).start(Duration.ofSeconds(120))) {
      SyntheticHeads random = new SyntheticHeads(11);
      ConvGeometry g = new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1);
      HeadSnapshot head = random.head(6, 3, g, 5, Activation.of(Activation.Kind.RELU), true, false, 2.0);
      float[] nanKernel = head.kernel().clone();
      nanKernel[0] = Float.NaN;
      HeadSnapshot diverged = HeadSnapshot.builder(6, 3, g, 5).kernel(nanKernel).bias(head.bias())
          .activation(head.activation()).classifier(head.classifierWeight(), head.classifierBias()).build();
      EarlyStopPolicy invalid = EarlyStopPolicy.newBuilder().setMonitor(MonitoredQuantity.EVAL_LOSS)
          .setMode(PolicyMode.MIN).setPatience(-1).build();
      Map<String, List<TrainerSignal>> received = new java.util.concurrent.ConcurrentHashMap<>();
      List<AutoCloseable> open = new ArrayList<>();
      try {
        for (String run : List.of("healthy", "nan", "invalid")) {
          received.put(run, new CopyOnWriteArrayList<>());
          open.add(new SignalSubscriber(service.bootstrapServers(), run, Map.of(), received.get(run)::add));
          TelemetryPublisher publisher = new TelemetryPublisher(service.bootstrapServers(), run, Map.of());
          open.add(publisher);
          EngineTelemetry engineTypes = new EngineTelemetry(publisher);
          TelemetryPublisher.await(publisher.runStarted(run.equals("invalid") ? invalid : null));
          for (long step = 1; step <= 3; step++) {
            HeadSnapshot h = run.equals("nan") && step >= 2 ? diverged : head;
            engineTypes.snapshot("head", step, h);
            engineTypes.batch("head", step, Split.TRAIN, h, random.batch(h, 4, 5, 5, true));
            TelemetryPublisher.await(publisher.measurementDone(step));
          }
        }
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while ((received.get("healthy").size() < 3 || received.get("nan").size() < 3
            || received.get("invalid").size() < 4) && System.nanoTime() < deadline) {
          Thread.sleep(100);
        }
      } finally {
        for (AutoCloseable c : open) {
          c.close();
        }
      }
      assertEquals(List.of("CONTINUE/HEALTHY", "CONTINUE/HEALTHY", "CONTINUE/HEALTHY"), names(received.get("healthy")));
      assertEquals(List.of("CONTINUE/HEALTHY", "STOP/NON_FINITE", "STOP/NON_FINITE"), names(received.get("nan")));
      TrainerSignal stop = received.get("nan").get(1);
      assertEquals(2, stop.getStep());
      assertTrue(stop.getDetail().matches("(train loss|Tr H|relative flatness|normalized relative flatness) is NaN"),
          stop.getDetail());
      List<TrainerSignal> inv = received.get("invalid");
      assertEquals(List.of("WARN/INVALID_POLICY", "CONTINUE/HEALTHY", "CONTINUE/HEALTHY", "CONTINUE/HEALTHY"),
          names(inv));
      assertEquals("invalid early-stop policy: patience must be >= 0, got -1; the server default applies",
          inv.get(0).getDetail());
    }
  }

  private static List<String> names(List<TrainerSignal> signals) {
    return signals.stream().map(s -> s.getAction() + "/" + s.getReason()).toList();
  }
}
