package io.flatmon.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import io.flatmon.proto.v1.ActivationBatch;
import io.flatmon.proto.v1.LayerSnapshot;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.proto.v1.Tensor;
import io.flatmon.stream.it.TelemetryFixtures;
import io.flatmon.testing.ChildJvm;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.UnaryOperator;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * `flatmon compute` in a child JVM (small heap, small off-heap cap) on snapshots whose geometry makes
 * the engine's working memory explode or overflows int arithmetic, each followed by an ordinary batch,
 * beside a valid run: the child must survive, reject each with its reason and measure the valid run.
 */
class ComputeCostLimitTest {
  private static final List<String> SMALL_JVM = List.of("-Xmx512m", "-Dorg.bytedeco.javacpp.maxbytes=2G");

  @TempDir
  Path dir;

  /** A poison run: the valid run's first snapshot and batch of one layer, under another run id, the snapshot edited. */
  private static List<TelemetryRecord> poison(List<TelemetryRecord> good, String runId,
      UnaryOperator<LayerSnapshot.Builder> edit) {
    LayerSnapshot s = good.stream().filter(TelemetryRecord::hasLayerSnapshot).findFirst().orElseThrow()
        .getLayerSnapshot();
    ActivationBatch b = good.stream().filter(TelemetryRecord::hasActivationBatch)
        .map(TelemetryRecord::getActivationBatch).filter(a -> a.getLayer().equals(s.getLayer())).findFirst()
        .orElseThrow();
    return List.of(
        TelemetryRecord.newBuilder().setLayerSnapshot(edit.apply(s.toBuilder().setRunId(runId))).build(),
        TelemetryRecord.newBuilder().setActivationBatch(b.toBuilder().setRunId(runId)).build());
  }

  @Test
  void explodingAndOverflowingGeometryIsRejectedAndTheValidRunMeasured() throws Exception {
    List<TelemetryRecord> good = TelemetryFixtures.smallRun("valid", 1);
    List<TelemetryRecord> records = new ArrayList<>();
    records.addAll(poison(good, "pad30000", s -> s.clearPadding().addPadding(30000)));
    records.addAll(poison(good, "pad3000", s -> s.clearPadding().addPadding(3000)));
    records.addAll(poison(good, "dilationmax", s -> s.clearDilation().addDilation(Integer.MAX_VALUE)));
    records.addAll(poison(good, "paddingmax", s -> s.clearPadding().addPadding(Integer.MAX_VALUE)));
    records.addAll(good);
    Path file = TelemetryFixtures.writeDelimited(dir.resolve("mixed.pb"), records);

    ChildJvm.Result r = ChildJvm.run(dir, SMALL_JVM, "io.flatmon.cli.FlatmonCommand",
        List.of("compute", "--json", file.toString()), 300);
    System.out.println("ComputeCostLimitTest child: " + r);
    assertFalse(r.crashed(), "the child JVM died: " + r);
    assertEquals(0, r.exit(), r.toString());
    // Records 0/2/4/6 are the snapshots, 1/3/5/7 their batches (rejected for want of a snapshot).
    assertRejected(r.err(), 0, "TOO_LARGE");
    assertRejected(r.err(), 2, "TOO_LARGE");
    assertRejected(r.err(), 4, "INVALID_GEOMETRY");
    assertRejected(r.err(), 6, "INVALID_GEOMETRY");
    for (int i = 1; i < 8; i += 2) {
      assertRejected(r.err(), i, "MISSING_SNAPSHOT");
    }
    assertTrue(r.err().contains("8 record(s) rejected"), r.err());
    long validLines = r.out().lines().filter(l -> l.contains("\"run_id\":\"valid\"")).count();
    assertEquals(TelemetryFixtures.expectedFinals(good), validLines, r.out());
  }

  /**
   * A 96 MiB zero-filled batch (zstd makes it a few KB on the wire) is rejected from its declared
   * shape: peak RSS grows by at most the record itself (read once, parsed as views of it) plus 64 MiB,
   * never by its decoded tensors or the engine memory they would need.
   */
  @Test
  void hugeZeroFilledBatchIsRejectedBeforeDecodingWithinTheMemoryBudget() throws Exception {
    List<TelemetryRecord> good = TelemetryFixtures.smallRun("valid", 2);
    Path baseline = TelemetryFixtures.writeDelimited(dir.resolve("valid.pb"), good);
    LayerSnapshot s = good.stream().filter(TelemetryRecord::hasLayerSnapshot).findFirst().orElseThrow()
        .getLayerSnapshot();
    ActivationBatch b = good.stream().filter(TelemetryRecord::hasActivationBatch)
        .map(TelemetryRecord::getActivationBatch).filter(a -> a.getLayer().equals(s.getLayer())).findFirst()
        .orElseThrow();
    int samples = 24;
    int side = 512;
    long bytes = 4L * samples * 4 * side * side;
    ActivationBatch huge = b.toBuilder().clearLabels()
        .setInput(Tensor.newBuilder().addShape(samples).addShape(4).addShape(side).addShape(side)
            .setData(ByteString.copyFrom(new byte[(int) bytes])))
        .build();
    List<TelemetryRecord> withHuge = new ArrayList<>(good);
    withHuge.add(2, TelemetryRecord.newBuilder().setActivationBatch(huge).build());
    Path file = TelemetryFixtures.writeDelimited(dir.resolve("huge.pb"), withHuge);
    huge = null;
    withHuge = null;

    List<String> args = List.of("compute", "--json", "--max-record-bytes", Integer.toString(128 << 20));
    ChildJvm.Result base = ChildJvm.run(dir, SMALL_JVM, "io.flatmon.testing.RssReportingMain",
        concat(args, baseline.toString()), 300);
    assertEquals(0, base.exit(), base.toString());
    ChildJvm.Result r = ChildJvm.run(dir, SMALL_JVM, "io.flatmon.testing.RssReportingMain",
        concat(args, file.toString()), 300);
    System.out.println("huge zero-filled batch child: " + r);
    assertFalse(r.crashed(), "the child JVM died: " + r);
    assertEquals(0, r.exit(), r.toString());
    assertRejected(r.err(), 2, "TOO_LARGE");
    long basePeak = peak(base.err());
    long peak = peak(r.err());
    System.out.printf("peak RSS: %.0f MiB valid run alone, %.0f MiB with the %.0f MiB batch%n",
        basePeak / 1048576.0, peak / 1048576.0, bytes / 1048576.0);
    assertTrue(peak - basePeak <= bytes + (64L << 20), String.format(
        "peak RSS grew by %.0f MiB for a rejected %.0f MiB record", (peak - basePeak) / 1048576.0, bytes / 1048576.0));
  }

  private static List<String> concat(List<String> a, String b) {
    List<String> out = new ArrayList<>(a);
    out.add(b);
    return out;
  }

  private static long peak(String err) {
    Matcher m = Pattern.compile("peak_rss_bytes=(\\d+)").matcher(err);
    assertTrue(m.find(), "no peak RSS reported: " + err);
    return Long.parseLong(m.group(1));
  }

  private static void assertRejected(String err, int index, String reason) {
    assertTrue(err.contains("record " + index + ": " + reason + ":"),
        "record " + index + " should be rejected as " + reason + "; stderr:\n" + err);
  }
}
