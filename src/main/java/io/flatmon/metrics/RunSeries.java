package io.flatmon.metrics;

import io.flatmon.proto.v1.FlatnessResult;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import java.util.ArrayList;
import java.util.List;
import java.util.function.ToDoubleFunction;

/**
 * The gauges and counter of one (run, layer, split): they read the latest result held here, and are
 * removed together when the run is released.
 */
final class RunSeries {
  private final List<Meter> meters = new ArrayList<>();
  private final Counter samples;
  private volatile FlatnessResult latest;
  private final MeterRegistry registry;
  private boolean eigenvalueRegistered;
  private final Tags tags;

  RunSeries(MeterRegistry registry, String run, String layer, String split, FlatnessResult first) {
    this.registry = registry;
    this.latest = first;
    this.tags = Tags.of("run", run, "layer", layer, "split", split);
    gauge("flatmon.hessian.trace", "Tr H of the mean loss w.r.t. the monitored conv kernel (data term)",
        r -> r.getHessianTrace().getMean());
    gauge("flatmon.hessian.trace.standard.error", "Standard error of flatmon_hessian_trace over samples",
        r -> r.getHessianTrace().getStandardError());
    gauge("flatmon.relative.flatness", "Relative flatness kappa of the monitored layer",
        r -> r.getRelativeFlatness().getMean());
    gauge("flatmon.relative.flatness.standard.error", "Standard error of flatmon_relative_flatness",
        r -> r.getRelativeFlatness().getStandardError());
    gauge("flatmon.relative.flatness.normalized", "kappa with input channels normalised to unit RMS",
        r -> r.getRelativeFlatnessNormalized().getMean());
    gauge("flatmon.relative.flatness.normalized.standard.error",
        "Standard error of flatmon_relative_flatness_normalized", r -> r.getRelativeFlatnessNormalized().getStandardError());
    gauge("flatmon.loss", "Mean cross-entropy of the labelled samples", r -> r.getLoss().getMean());
    gauge("flatmon.accuracy", "Accuracy of the labelled samples (ratio)", r -> r.getAccuracy().getMean());
    gauge("flatmon.measurement.step", "Training step of the latest measurement", r -> (double) r.getStep());
    samples = Counter.builder("flatmon.measured.samples").description("Samples measured")
        .tags(tags).register(registry);
    meters.add(samples);
    update(first, 0);
  }

  private void gauge(String name, String help, ToDoubleFunction<FlatnessResult> value) {
    meters.add(Gauge.builder(name, this, s -> value.applyAsDouble(s.latest)).description(help).tags(tags)
        .strongReference(true).register(registry));
  }

  synchronized void update(FlatnessResult result, int batchSamples) {
    latest = result;
    if (batchSamples > 0) {
      samples.increment(batchSamples);
    }
    if (result.hasHessianMaxEigenvalue() && !eigenvalueRegistered) {
      gauge("flatmon.hessian.max.eigenvalue", "Largest Hessian eigenvalue of the latest batch",
          r -> r.hasHessianMaxEigenvalue() ? r.getHessianMaxEigenvalue() : Double.NaN);
      eigenvalueRegistered = true;
    }
  }

  synchronized void remove() {
    meters.forEach(registry::remove);
    meters.clear();
  }
}
