package io.flatmon.engine;

import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A fixed number of {@link CurvatureEngine}s shared by any number of calling threads: each call runs
 * on one of {@code threads} workers (one engine each) and the caller waits for it. All engines share
 * one {@link PreparedHeads}, so Ω is formed once per snapshot whichever worker measures a batch.
 *
 * <p>Why a pool rather than one engine per Kafka Streams thread: a stream thread owns whole
 * partitions, and runs hash unevenly onto partitions (8 runs on 8 partitions land on 4 of them), so
 * engines tied to stream threads leave cores idle while one thread works through a backlog; and more
 * stream threads than cores each computing at once thrash the caches (8 engines on 2 cores measured
 * 15–25 % fewer samples/s than 2). With a pool, stream threads only decode and store, and compute
 * never runs on more threads than there are cores.
 *
 * <p>With {@code threads = 0} the caller computes on its own engine (one per calling thread), as
 * for a single-threaded test driver.
 */
public final class EnginePool implements CurvatureComputer, AutoCloseable {
  /** Names of the worker threads start with this (for CPU accounting by thread). */
  public static final String THREAD_PREFIX = "flatmon-engine-";
  private final PreparedHeads prepared = new PreparedHeads();
  private final ThreadLocal<CurvatureEngine> engine = ThreadLocal.withInitial(
      () -> new CurvatureEngine(CurvatureEngine.GramRoute.AUTO, org.nd4j.linalg.api.buffer.DataType.FLOAT, prepared));
  private final ExecutorService workers;
  private final int threads;

  /** @param threads engine threads; 0 computes on the calling thread */
  public EnginePool(int threads) {
    if (threads < 0) {
      throw new IllegalArgumentException("engine threads must be >= 0, not " + threads);
    }
    this.threads = threads;
    AtomicInteger n = new AtomicInteger();
    this.workers = threads == 0 ? null : Executors.newFixedThreadPool(threads, r -> {
      Thread t = new Thread(r, THREAD_PREFIX + n.incrementAndGet());
      t.setDaemon(true);
      return t;
    });
  }

  /** Engine threads (0: the calling thread). */
  public int threads() {
    return threads;
  }

  /**
   * Computes on a worker and waits (uninterruptibly: a computation takes milliseconds to seconds and
   * cannot be abandoned half-way; an interrupt is kept for the caller). Exceptions of the engine
   * reach the caller unchanged.
   */
  @Override
  public BatchCurvature compute(HeadSnapshot head, ActivationBatch batch, double[] inputChannelRms) {
    if (workers == null) {
      return engine.get().compute(head, batch, inputChannelRms);
    }
    Future<BatchCurvature> f = workers.submit(() -> engine.get().compute(head, batch, inputChannelRms));
    boolean interrupted = false;
    try {
      while (true) {
        try {
          return f.get();
        } catch (InterruptedException e) {
          interrupted = true;
        }
      }
    } catch (ExecutionException e) {
      Throwable cause = e.getCause();
      if (cause instanceof RuntimeException r) {
        throw r;
      }
      if (cause instanceof Error err) {
        throw err;
      }
      throw new IllegalStateException(cause);
    } finally {
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
    }
  }

  /** Snapshots prepared and cached (for tests and diagnostics). */
  int preparedHeads() {
    return prepared.size();
  }

  /** Lets running computations finish (up to 10 s), then stops the workers. */
  @Override
  public void close() {
    if (workers == null) {
      return;
    }
    workers.shutdown();
    try {
      if (!workers.awaitTermination(10, TimeUnit.SECONDS)) {
        workers.shutdownNow();
      }
    } catch (InterruptedException e) {
      workers.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }
}
