import io.flatmon.client.SignalSubscriber;
import io.flatmon.client.TelemetryPublisher;
import io.flatmon.proto.v1.Activation;
import io.flatmon.proto.v1.ActivationKind;
import io.flatmon.proto.v1.EarlyStopPolicy;
import io.flatmon.proto.v1.LayerSnapshot;
import io.flatmon.proto.v1.MonitoredQuantity;
import io.flatmon.proto.v1.PolicyMode;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TrainerSignal;
import io.flatmon.wire.Tensors;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * A JVM trainer that knows only the flatmon client, the wire schema and kafka-clients: it is compiled
 * and run by PlainClientClasspathTest with exactly that class path. Publishes one measured step of a
 * ReLU head from plain arrays with a policy that stops at the first measurement, then waits for the
 * STOP signal. Exit 0: signal received; 2: a forbidden class was loadable; 3: no signal in time.
 */
public final class PlainTrainer {
  public static void main(String[] args) throws Exception {
    for (String forbidden : new String[] {"org.nd4j.linalg.factory.Nd4j", "org.bytedeco.javacpp.Loader",
        "org.bytedeco.openblas.global.openblas", "io.flatmon.engine.HeadSnapshot", "io.flatmon.schema.RecordEncoder"}) {
      try {
        Class.forName(forbidden, false, PlainTrainer.class.getClassLoader());
        System.out.println("loadable: " + forbidden);
        System.exit(2);
      } catch (ClassNotFoundException expected) {
        System.out.println("not on the class path: " + forbidden);
      }
    }
    String bootstrap = args[0];
    String run = args[1];
    int c = 4, cIn = 2, k = 3, b = 4, h = 5, w = 5;
    Random random = new Random(11);
    float[] kernel = gaussian(random, c * cIn * 3 * 3, 0.5f);
    float[] classifier = gaussian(random, k * c, 1f);
    float[] input = gaussian(random, b * cIn * h * w, 1f);
    int[] labels = {0, 1, 2, 1};
    EarlyStopPolicy policy = EarlyStopPolicy.newBuilder().setMonitor(MonitoredQuantity.HESSIAN_TRACE)
        .setMode(PolicyMode.MAX).setStoppingThreshold(0.0).setPatience(3).build();
    CompletableFuture<TrainerSignal> stop = new CompletableFuture<>();
    try (SignalSubscriber signals = new SignalSubscriber(bootstrap, run, Map.of(), s -> stop.complete(s));
        TelemetryPublisher publisher = new TelemetryPublisher(bootstrap, run, Map.of())) {
      TelemetryPublisher.await(publisher.runStarted(policy));
      publisher.snapshot("head", 1, LayerSnapshot.newBuilder()
          .setKernel(Tensors.float32(kernel, c, cIn, 3, 3))
          .addStride(1).addStride(1).addPadding(1).addPadding(1)
          .setActivation(Activation.newBuilder().setKind(ActivationKind.RELU))
          .setClassifierWeight(Tensors.float32(classifier, k, c)));
      publisher.batch("head", 1, Split.TRAIN, input, new long[] {b, cIn, h, w}, labels);
      TelemetryPublisher.await(publisher.measurementDone(1));
      System.out.println("published");
      TrainerSignal s;
      try {
        s = stop.get(90, TimeUnit.SECONDS);
      } catch (java.util.concurrent.TimeoutException e) {
        System.out.println("no signal");
        System.exit(3);
        return;
      }
      System.out.println("signal " + s.getAction() + " step=" + s.getStep() + " value=" + s.getValue());
      publisher.runEnded("completed", 1);
      publisher.flush();
    }
    System.exit(0);
  }

  private static float[] gaussian(Random random, int n, float scale) {
    float[] a = new float[n];
    for (int i = 0; i < n; i++) {
      a[i] = (float) random.nextGaussian() * scale;
    }
    return a;
  }
}
