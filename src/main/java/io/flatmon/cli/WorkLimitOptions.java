package io.flatmon.cli;

import io.flatmon.engine.WorkLimits;
import java.io.PrintWriter;
import picocli.CommandLine.Option;

/**
 * The per-record cost limits of {@code serve} and {@code compute} (a picocli mixin): a record is
 * rejected from its declared shapes before anything is decoded or allocated.
 */
final class WorkLimitOptions {
  @Option(names = "--max-decoded-bytes", paramLabel = "BYTES",
      defaultValue = "" + WorkLimits.DEFAULT_MAX_DECODED_BYTES,
      description = "Records whose tensors decode (to float32) to more bytes are rejected before decoding, "
          + "whatever their compressed size (default ${DEFAULT-VALUE}).")
  long maxDecodedBytes;

  @Option(names = "--max-working-bytes", paramLabel = "BYTES",
      defaultValue = "" + WorkLimits.DEFAULT_MAX_WORKING_BYTES,
      description = "Batches whose engine arrays (patches, Z, Grams, Γ blocks; native and heap) would need "
          + "more bytes are rejected before decoding; each engine thread may hold one such batch "
          + "(default ${DEFAULT-VALUE}).")
  long maxWorkingBytes;

  @Option(names = "--max-work-per-sample", paramLabel = "FLOP",
      defaultValue = "" + WorkLimits.DEFAULT_MAX_WORK_PER_SAMPLE,
      description = "Batches needing more floating-point operations per sample are rejected before decoding "
          + "(default ${DEFAULT-VALUE}).")
  long maxWorkPerSample;

  /** The limits, or null after printing why they are invalid. */
  WorkLimits limits(String command, PrintWriter err) {
    if (maxDecodedBytes < 1 || maxWorkingBytes < 1 || maxWorkPerSample < 1) {
      err.println("flatmon " + command
          + ": --max-decoded-bytes, --max-working-bytes and --max-work-per-sample must be positive");
      return null;
    }
    return new WorkLimits(maxDecodedBytes, maxWorkingBytes, maxWorkPerSample);
  }
}
