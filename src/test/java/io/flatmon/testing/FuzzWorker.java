package io.flatmon.testing;

import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.CurvatureComputer;
import io.flatmon.engine.EngineCapacityException;
import io.flatmon.engine.EnginePool;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.engine.WorkLimits;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.schema.RecordDecoder;
import io.flatmon.schema.RejectedRecordException;
import java.io.BufferedInputStream;
import java.io.PrintStream;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A child-JVM worker for the fuzz tests: reads length-delimited TelemetryRecords on stdin and runs
 * each through the decoder (with its cost checks) and, for a batch, the engine pool, like
 * {@code flatmon compute}; answers one line per record on stdout:
 * {@code <index> MEASURED|ACCEPTED|REJECTED <reason>|INTERNAL <exception> rss=<bytes>}.
 * Arguments: engine threads, decoded-bytes, working-bytes and work-per-sample limits, and
 * {@code gc} to run a thread that forces collections all the time (the engine's native arrays must
 * stay reachable through every native call).
 */
public final class FuzzWorker {
  private FuzzWorker() {
  }

  private record Head(long step, HeadSnapshot head) {
  }

  public static void main(String[] args) throws Exception {
    int threads = Integer.parseInt(args[0]);
    WorkLimits limits = new WorkLimits(Long.parseLong(args[1]), Long.parseLong(args[2]), Long.parseLong(args[3]));
    boolean gc = args.length > 4 && args[4].equals("gc");
    RecordDecoder decoder = new RecordDecoder(RecordDecoder.DEFAULT_MAX_ELEMENTS, limits);
    AtomicBoolean done = new AtomicBoolean();
    AtomicLong collections = new AtomicLong();
    if (gc) {
      Thread t = new Thread(() -> {
        while (!done.get()) {
          System.gc();
          collections.incrementAndGet();
        }
      }, "gc-stress");
      t.setDaemon(true);
      t.start();
    }
    PrintStream out = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, "UTF-8");
    Map<String, Head> heads = new HashMap<>();
    try (EnginePool engine = new EnginePool(threads); BufferedInputStream in = new BufferedInputStream(System.in)) {
      out.println("READY");
      long index = 0;
      TelemetryRecord r;
      while ((r = TelemetryRecord.parseDelimitedFrom(in)) != null) {
        String outcome;
        try {
          outcome = apply(r, decoder, engine, heads);
        } catch (RejectedRecordException e) {
          outcome = "REJECTED " + e.reason() + " " + oneLine(e.getMessage());
        } catch (EngineCapacityException e) {
          outcome = "REJECTED TOO_LARGE " + oneLine(e.getMessage());
        } catch (RuntimeException | Error e) {
          e.printStackTrace();
          outcome = "INTERNAL " + oneLine(e.toString());
        }
        out.println(index++ + " " + outcome + " rss=" + ChildJvm.rss() + " gcs=" + collections.get());
      }
    } finally {
      done.set(true);
    }
  }

  private static String apply(TelemetryRecord r, RecordDecoder decoder, CurvatureComputer engine,
      Map<String, Head> heads) throws RejectedRecordException {
    switch (r.getRecordCase()) {
      case LAYER_SNAPSHOT -> {
        var s = r.getLayerSnapshot();
        heads.put(s.getRunId() + "/" + s.getLayer(), new Head(s.getStep(), decoder.snapshot(s)));
        return "ACCEPTED";
      }
      case ACTIVATION_BATCH -> {
        var a = r.getActivationBatch();
        Head h = heads.get(a.getRunId() + "/" + a.getLayer());
        if (h == null || h.step != a.getStep()) {
          return "REJECTED MISSING_SNAPSHOT";
        }
        ActivationBatch batch = decoder.batch(a, h.head);
        try {
          engine.compute(h.head, batch, batch.inputChannelRms());
        } catch (IllegalArgumentException e) {
          return "REJECTED INVALID_VALUE " + oneLine(e.getMessage());
        }
        return "MEASURED";
      }
      default -> {
        return "ACCEPTED";
      }
    }
  }

  private static String oneLine(String s) {
    s = s == null ? "" : s.replace('\n', ' ');
    return s.length() > 300 ? s.substring(0, 300) : s;
  }
}
