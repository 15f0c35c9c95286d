package io.flatmon.engine;

import org.nd4j.linalg.factory.Nd4j;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Which ND4J backend and device the engine runs on; logged once when the first engine is built and
 * exported later as the flatmon_engine_info metric.
 */
public record EngineInfo(String backend, String device, String blas) {
  private static final Logger LOG = LoggerFactory.getLogger(EngineInfo.class);
  private static volatile EngineInfo current;

  /** The loaded backend, detected (and logged) on first call. */
  public static EngineInfo current() {
    EngineInfo info = current;
    if (info == null) {
      synchronized (EngineInfo.class) {
        if (current == null) {
          current = detect();
          LOG.info("curvature engine: ND4J backend {} on {} (BLAS {})", current.backend, current.device,
              current.blas);
        }
        info = current;
      }
    }
    return info;
  }

  private static EngineInfo detect() {
    String backend = Nd4j.getBackend().getClass().getSimpleName();
    boolean cpu = Nd4j.getEnvironment().isCPU();
    String device = cpu
        ? "cpu (" + Runtime.getRuntime().availableProcessors() + " cores, OMP_NUM_THREADS="
            + System.getenv().getOrDefault("OMP_NUM_THREADS", "unset") + ")"
        : "cuda:" + Nd4j.getAffinityManager().getDeviceForCurrentThread();
    String blas;
    try {
      blas = String.valueOf(Nd4j.factory().blas().getBlasVendor());
    } catch (RuntimeException e) {
      blas = "unknown";
    }
    return new EngineInfo(backend, device, blas);
  }
}
