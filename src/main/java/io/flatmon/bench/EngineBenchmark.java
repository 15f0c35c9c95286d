package io.flatmon.bench;

import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.BatchCurvature;
import io.flatmon.engine.CurvatureEngine;
import io.flatmon.engine.HeadSnapshot;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;

/**
 * JMH benchmark of {@link CurvatureEngine#compute} on a whole batch: Tr H, κ and the classifier-layer
 * terms (quantities = trace_kappa, ρ = null), or additionally κ_norm (quantities = with_kappa_norm, ρ
 * precomputed once per trial from the batch — its O(B·C_in·H·W) plain-Java cost is not timed).
 *
 * <p>The score is batches per second; samples/s = score × batch. One engine per trial (it keeps its
 * working arrays between calls), the same head every call (Ω = W_f W_fᵀ is formed once per weight
 * snapshot and is not part of the per-sample cost). Run it with {@code flatmon bench engine}, which also
 * measures the machine's sgemm peak and converts the scores to GFLOP/s; OMP_NUM_THREADS must be set
 * before the JVM starts.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
public class EngineBenchmark {

  /** Tr H + κ (+ classifier terms). */
  public static final String TRACE_KAPPA = "trace_kappa";
  /** Tr H + κ + κ_norm (+ classifier terms). */
  public static final String WITH_KAPPA_NORM = "with_kappa_norm";

  @Param({"cifar10", "cifar100", "imagenet", "resnet50"})
  public String shape;

  @Param({"32", "128"})
  public int batch;

  @Param({"true", "false"})
  public boolean sendZ;

  /** trace_kappa or with_kappa_norm; only the first by default to bound the run time. */
  @Param({TRACE_KAPPA})
  public String quantities;

  private CurvatureEngine engine;
  private HeadSnapshot head;
  private ActivationBatch activations;
  private double[] rho;

  @Setup(Level.Trial)
  public void setUp() {
    EngineShape s = EngineShape.parse(shape);
    head = s.head();
    activations = s.batch(head, batch, sendZ);
    rho = switch (quantities) {
      case TRACE_KAPPA -> null;
      case WITH_KAPPA_NORM -> activations.inputChannelRms();
      default -> throw new IllegalArgumentException("unknown quantities '" + quantities
          + "' (expected " + TRACE_KAPPA + " or " + WITH_KAPPA_NORM + ")");
    };
    engine = new CurvatureEngine();
  }

  @Benchmark
  public BatchCurvature compute() {
    return engine.compute(head, activations, rho);
  }
}
