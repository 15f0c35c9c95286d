package io.flatmon.engine;

import java.util.Locale;

/**
 * The most one record may cost, checked from declared shapes before anything is decoded or
 * allocated: a record over a limit is rejected (TOO_LARGE), so that no trainer's record can exhaust
 * the heap, the native memory or the engine's time of an instance that serves every run.
 *
 * @param maxDecodedBytes the tensors of one record, decoded to float32 (a zero-filled batch
 *     compresses to almost nothing on the wire: this, not the record's size, bounds its memory)
 * @param maxWorkingBytes the engine's device and host arrays for one batch ({@link BatchCost})
 * @param maxWorkPerSample floating-point operations per sample ({@link BatchCost#workPerSample()})
 */
public record WorkLimits(long maxDecodedBytes, long maxWorkingBytes, long maxWorkPerSample) {
  /** 64 MiB: the topics' record size limit, so uncompressed float32 telemetry that fits the topic fits. */
  public static final long DEFAULT_MAX_DECODED_BYTES = 64L << 20;
  /**
   * 2 GiB per batch: ResNet-50's last conv (C = 2048, C_in = 512, 3×3, 7×7, K = 1000) needs 1.6 GiB at
   * B = 256 with κ_norm ({@code BatchCostTest}); each engine thread may hold one batch's arrays.
   */
  public static final long DEFAULT_MAX_WORKING_BYTES = 2L << 30;
  /** 2·10¹⁰ flop per sample: that ResNet-50 head needs 1.4·10¹⁰. */
  public static final long DEFAULT_MAX_WORK_PER_SAMPLE = 20_000_000_000L;

  public static final WorkLimits DEFAULT = new WorkLimits(DEFAULT_MAX_DECODED_BYTES, DEFAULT_MAX_WORKING_BYTES,
      DEFAULT_MAX_WORK_PER_SAMPLE);

  public WorkLimits {
    if (maxDecodedBytes < 1 || maxWorkingBytes < 1 || maxWorkPerSample < 1) {
      throw new IllegalArgumentException("limits must be positive: " + maxDecodedBytes + ", " + maxWorkingBytes
          + ", " + maxWorkPerSample);
    }
  }

  /**
   * Why a batch of this cost is over a limit (working memory, array size or work per sample), with
   * the figures; null when it is within them.
   */
  public String excess(BatchCost cost, long samples) {
    if (cost.largestArrayElements() > BatchCost.MAX_ARRAY_ELEMENTS) {
      return String.format(Locale.ROOT, "an array of %d elements would exceed the %d an int index reaches; %s",
          cost.largestArrayElements(), BatchCost.MAX_ARRAY_ELEMENTS, cost.describe(samples));
    }
    if (cost.workingBytes() > maxWorkingBytes) {
      return String.format(Locale.ROOT, "working memory %s is over the limit of %s; %s",
          BatchCost.bytes(cost.workingBytes()), BatchCost.bytes(maxWorkingBytes), cost.describe(samples));
    }
    if (cost.workPerSample() > maxWorkPerSample) {
      return String.format(Locale.ROOT, "%.3g flop per sample is over the limit of %.3g; %s",
          (double) cost.workPerSample(), (double) maxWorkPerSample, cost.describe(samples));
    }
    return null;
  }
}
