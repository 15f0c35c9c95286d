package io.flatmon.engine;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.nd4j.linalg.api.buffer.DataType;

/**
 * A fixed number of {@link CurvatureEngine}s shared by any number of calling threads. A call waits
 * while one of {@code threads} workers (one engine each) measures its batch; the batch's chunks of
 * samples (the per-sample C×C work, docs/math.md §6) are shared with the workers that have nothing
 * else to do, so a single batch uses every core when it is alone. All engines share one
 * {@link PreparedHeads}, so Ω is formed once per snapshot whichever worker measures a batch.
 *
 * <p>Why a pool rather than one engine per Kafka Streams thread: a stream thread owns whole
 * partitions, and runs hash unevenly onto partitions (8 runs on 8 partitions land on 4 of them), so
 * engines tied to stream threads leave cores idle while one thread works through a backlog; and more
 * stream threads than cores each computing at once thrash the caches (8 engines on 2 cores measured
 * 15–25 % fewer samples/s than 2). With a pool, stream threads only decode and store, compute never
 * runs on more threads than there are cores, and sharing chunks keeps every engine busy even when
 * all the work comes from one stream thread.
 *
 * <p>Workers take chunks of batches already started before they start a new batch, so a batch's
 * latency is not traded for throughput. A worker waiting for the chunks of its batch that others
 * took only waits for chunks that are running, so no circle of waits can form.
 *
 * <p>With {@code threads = 0} the caller computes on its own engine (one per calling thread), as
 * for a single-threaded test driver.
 */
public final class EnginePool implements CurvatureComputer, AutoCloseable {
  /** Names of the worker threads start with this (for CPU accounting by thread). */
  public static final String THREAD_PREFIX = "flatmon-engine-";

  private final PreparedHeads prepared = new PreparedHeads();
  private final ThreadLocal<CurvatureEngine> callerEngine = ThreadLocal.withInitial(this::newEngine);
  private final int threads;
  private final List<Thread> workers = new ArrayList<>();
  /** Guards the two queues and {@code closed}; workers wait on it. */
  private final Object lock = new Object();
  private final ArrayDeque<Job> jobs = new ArrayDeque<>();
  private final ArrayDeque<Chunks> started = new ArrayDeque<>();
  private boolean closed;
  /** Chunks run by a worker other than the one measuring their batch (for tests and diagnostics). */
  private long sharedChunks;

  /** @param threads engine threads; 0 computes on the calling thread */
  public EnginePool(int threads) {
    if (threads < 0) {
      throw new IllegalArgumentException("engine threads must be >= 0, not " + threads);
    }
    this.threads = threads;
    for (int i = 1; i <= threads; i++) {
      Thread t = new Thread(new Worker(newEngine()), THREAD_PREFIX + i);
      t.setDaemon(true);
      workers.add(t);
      t.start();
    }
  }

  private CurvatureEngine newEngine() {
    return new CurvatureEngine(CurvatureEngine.GramRoute.AUTO, DataType.FLOAT, prepared);
  }

  /** Engine threads (0: the calling thread). */
  public int threads() {
    return threads;
  }

  /**
   * Computes on the workers and waits (uninterruptibly: a computation takes milliseconds to seconds
   * and cannot be abandoned half-way; an interrupt is kept for the caller). Exceptions of the engine
   * reach the caller unchanged.
   */
  @Override
  public BatchCurvature compute(HeadSnapshot head, ActivationBatch batch, double[] inputChannelRms) {
    if (threads == 0) {
      return callerEngine.get().compute(head, batch, inputChannelRms);
    }
    Job job = new Job(head, batch, inputChannelRms);
    synchronized (lock) {
      if (closed) {
        throw new IllegalStateException("the engine pool is closed");
      }
      jobs.addLast(job);
      lock.notifyAll();
    }
    return job.await();
  }

  /** Chunks so far run by a worker other than their batch's. */
  long sharedChunks() {
    synchronized (lock) {
      return sharedChunks;
    }
  }

  /** Snapshots prepared and cached (for tests and diagnostics). */
  int preparedHeads() {
    return prepared.size();
  }

  /** Lets queued and running computations finish (up to 10 s), then stops the workers. */
  @Override
  public void close() {
    synchronized (lock) {
      closed = true;
      lock.notifyAll();
    }
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    for (Thread t : workers) {
      try {
        t.join(Math.max(1, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime())));
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return;
      }
    }
  }

  /** One worker: its engine for whole batches, and that engine's chunk workspace for anyone's chunks. */
  private final class Worker implements Runnable {
    private final CurvatureEngine engine;
    private final CurvatureEngine.ChunkRunner share = this::share;

    Worker(CurvatureEngine engine) {
      this.engine = engine;
    }

    @Override
    public void run() {
      while (true) {
        Chunks chunks;
        Job job;
        synchronized (lock) {
          while (started.isEmpty() && jobs.isEmpty() && !closed) {
            try {
              lock.wait();
            } catch (InterruptedException e) {
              // only close() stops a worker
            }
          }
          chunks = started.peekFirst();
          job = chunks == null ? jobs.pollFirst() : null;
          if (chunks == null && job == null) {
            return; // closed and drained
          }
        }
        if (chunks != null) {
          int ran = runClaimed(chunks);
          synchronized (lock) {
            sharedChunks += ran;
          }
        } else {
          job.run(engine, share);
        }
      }
    }

    /** Offers a batch's chunks to the idle workers, computes what nobody else took, waits for the rest. */
    private void share(int count, CurvatureEngine.ChunkTask task) {
      Chunks chunks = new Chunks(count, task);
      if (count > 1) {
        synchronized (lock) {
          started.addLast(chunks);
          lock.notifyAll();
        }
      }
      runClaimed(chunks);
      chunks.awaitDone();
    }

    /** Runs chunks of the batch until none is left to claim; returns how many it ran. */
    private int runClaimed(Chunks chunks) {
      int i;
      int ran = 0;
      while ((i = chunks.claim()) >= 0) {
        chunks.run(i, engine.chunkWorkspace());
        ran++;
      }
      return ran;
    }
  }

  /** A batch's chunks: claimed one at a time by whichever worker asks, done when all have run. */
  private final class Chunks {
    private final int count;
    private final CurvatureEngine.ChunkTask task;
    private int next;
    private int running;
    private int finished;
    private Throwable failure;

    Chunks(int count, CurvatureEngine.ChunkTask task) {
      this.count = count;
      this.task = task;
    }

    /** The next unclaimed chunk, or −1 (then it is no longer offered). */
    int claim() {
      synchronized (lock) {
        if (next == count) {
          started.remove(this);
          return -1;
        }
        running++;
        return next++;
      }
    }

    void run(int index, Workspace work) {
      Throwable failed = null;
      try {
        task.run(index, work);
      } catch (Throwable t) {
        failed = t;
      }
      synchronized (lock) {
        if (failed != null && failure == null) {
          failure = failed;
        }
        running--;
        finished++;
        lock.notifyAll();
      }
    }

    /** Waits until every chunk has run (the caller has claimed all it could); rethrows a chunk's failure. */
    void awaitDone() {
      synchronized (lock) {
        while (finished < count) {
          try {
            lock.wait();
          } catch (InterruptedException e) {
            // chunks cannot be abandoned: keep waiting
          }
        }
        rethrowIfFailed(failure);
      }
    }
  }

  /** A caller's batch, its result or failure, and the caller waiting for it. */
  private static final class Job {
    private final HeadSnapshot head;
    private final ActivationBatch batch;
    private final double[] inputChannelRms;
    private BatchCurvature result;
    private Throwable failure;
    private boolean done;

    Job(HeadSnapshot head, ActivationBatch batch, double[] inputChannelRms) {
      this.head = head;
      this.batch = batch;
      this.inputChannelRms = inputChannelRms;
    }

    void run(CurvatureEngine engine, CurvatureEngine.ChunkRunner chunks) {
      BatchCurvature r = null;
      Throwable f = null;
      try {
        r = engine.compute(head, batch, inputChannelRms, chunks);
      } catch (Throwable t) {
        f = t;
      }
      synchronized (this) {
        result = r;
        failure = f;
        done = true;
        notifyAll();
      }
    }

    synchronized BatchCurvature await() {
      boolean interrupted = false;
      while (!done) {
        try {
          wait();
        } catch (InterruptedException e) {
          interrupted = true;
        }
      }
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
      rethrowIfFailed(failure);
      return result;
    }
  }

  /** Rethrows a computation's failure unchanged (wrapped only if checked); nothing when null. */
  private static void rethrowIfFailed(Throwable failure) {
    if (failure instanceof RuntimeException r) {
      throw r;
    }
    if (failure instanceof Error e) {
      throw e;
    }
    if (failure != null) {
      throw new IllegalStateException(failure);
    }
  }
}
