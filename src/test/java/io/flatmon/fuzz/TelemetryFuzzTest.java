package io.flatmon.fuzz;

import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.TelemetryRecord;
import java.util.concurrent.atomic.AtomicLong;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.ShrinkingMode;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.statistics.Statistics;

/**
 * Property: every record — random and adversarial snapshots and batches ({@link FuzzRecords}) —
 * sent through the decoder, its cost checks and the engine in a child JVM with a 256 MiB heap and a
 * 768 MiB off-heap cap is measured or rejected with a reason; the child never dies, never reports
 * an internal error, and stays under {@link FuzzChild#RSS_LIMIT}. About a minute here.
 */
class TelemetryFuzzTest {
  private static FuzzChild child;
  private static final AtomicLong RUNS = new AtomicLong();

  private static FuzzChild child() throws Exception {
    if (child == null || !child.isAlive()) {
      child = new FuzzChild(1, false);
    }
    return child;
  }

  @AfterContainer
  static void stopChild() throws InterruptedException {
    if (child != null) {
      child.close();
    }
  }

  @Provide
  Arbitrary<FuzzRecords.HeadSpec> heads() {
    return FuzzRecords.heads();
  }

  @Provide
  Arbitrary<FuzzRecords.BatchSpec> batches() {
    return FuzzRecords.batches();
  }

  @Property(tries = 400, shrinking = ShrinkingMode.BOUNDED, afterFailure = net.jqwik.api.AfterFailureMode.SAMPLE_FIRST)
  void everyRecordIsMeasuredOrRejectedWithAReason(@ForAll("heads") FuzzRecords.HeadSpec head,
      @ForAll("batches") FuzzRecords.BatchSpec batch) throws Exception {
    String run = "fuzz-" + RUNS.incrementAndGet();
    check(FuzzRecords.snapshot(run, head), "snapshot " + head);
    check(FuzzRecords.batch(run, head, batch), "batch " + batch + " on " + head);
  }

  /** Sends one record and checks the child's answer; returns the outcome word. */
  static String check(TelemetryRecord r, String what) throws Exception {
    return checkWith(child(), r, what);
  }

  /** The same with a given child. */
  static String checkWith(FuzzChild c, TelemetryRecord r, String what) throws Exception {
    String line = c.send(r, 120);
    if (line == null || !c.isAlive()) {
      throw new AssertionError("the child JVM " + (c.isAlive() ? "did not answer within 120 s" : "died") + " on "
          + what + "\n" + c.logTail());
    }
    String[] parts = line.split(" ");
    String outcome = parts[1];
    long rss = Long.parseLong(line.substring(line.indexOf(" rss=") + 5).split(" ")[0]);
    if (rss > FuzzChild.RSS_LIMIT) {
      throw new AssertionError(String.format("child RSS %.0f MiB over %.0f MiB after %s", rss / 1048576.0,
          FuzzChild.RSS_LIMIT / 1048576.0, what));
    }
    if (outcome.equals("INTERNAL")) {
      throw new AssertionError("internal error on " + what + ": " + line + "\n" + c.logTail());
    }
    if (outcome.equals("REJECTED")) {
      RejectReason reason = RejectReason.valueOf(parts[2]);
      if (reason == RejectReason.REJECT_REASON_UNSPECIFIED || reason == RejectReason.INTERNAL_ERROR) {
        throw new AssertionError("no reason for " + what + ": " + line);
      }
      collect(outcome + " " + reason);
      return outcome + " " + reason;
    } else if (!outcome.equals("MEASURED") && !outcome.equals("ACCEPTED")) {
      throw new AssertionError("unexpected answer for " + what + ": " + line);
    } else {
      collect(outcome);
    }
    return outcome;
  }

  /** jqwik's statistics, inside a property only. */
  private static void collect(String outcome) {
    try {
      Statistics.label("outcome").collect(outcome);
    } catch (RuntimeException e) {
      // outside a property (the soak mode counts its own)
    }
  }
}
