package io.flatmon.schema;

import com.google.protobuf.CodedInputStream;
import com.google.protobuf.InvalidProtocolBufferException;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.TelemetryRecord;
import java.io.IOException;
import java.io.InputStream;

/**
 * Reads a stream of length-delimited {@link TelemetryRecord}s (protobuf's writeDelimitedTo format:
 * a varint length, then the message). A record whose bytes do not parse is reported and skipped;
 * the length prefix keeps the reader in step, so the records after it are still read.
 */
public final class TelemetryReader {
  /** What the reader found at one position of the stream. */
  public record Item(long index, long offset, TelemetryRecord record, RejectedRecordException rejection) {
    public boolean isValid() {
      return record != null;
    }
  }

  private final InputStream in;
  private final int maxRecordBytes;
  private long index;
  private long offset;
  private boolean finished;
  private String stopReason;

  public TelemetryReader(InputStream in, int maxRecordBytes) {
    this.in = in;
    this.maxRecordBytes = maxRecordBytes;
  }

  /** Why reading stopped before the end of the stream (truncation, absurd length), or null. */
  public String stopReason() {
    return stopReason;
  }

  /** The next item, or null at the end of the stream (or when the stream cannot be followed further). */
  public Item next() throws IOException {
    if (finished) {
      return null;
    }
    int first = in.read();
    if (first < 0) {
      finished = true;
      return null;
    }
    long start = offset;
    int length;
    try {
      length = CodedInputStream.readRawVarint32(first, in);
    } catch (InvalidProtocolBufferException e) {
      return stop("the length prefix of record " + index + " at byte " + start + " is truncated or malformed");
    }
    offset += varintSize(length);
    if (length < 0 || length > maxRecordBytes) {
      return stop(String.format("record %d at byte %d claims %d bytes, over the %d-byte limit: "
          + "not a flatmon telemetry stream from here on", index, start, length & 0xffffffffL, maxRecordBytes));
    }
    // Read into one array of the record's size, and parse with aliasing so that tensor data stays a
    // view of it: readNBytes(n) and a copying parse each held the record once more (a 96 MiB
    // record cost three times that on the heap before the decoder could reject it).
    byte[] bytes = new byte[length];
    int read = readFully(bytes);
    offset += read;
    if (read < length) {
      return stop(String.format("record %d at byte %d is truncated: %d of %d bytes", index, start,
          read, length));
    }
    long i = index++;
    try {
      CodedInputStream coded = CodedInputStream.newInstance(bytes);
      coded.enableAliasing(true);
      TelemetryRecord record = TelemetryRecord.parseFrom(coded);
      if (record.getRecordCase() == TelemetryRecord.RecordCase.RECORD_NOT_SET) {
        return new Item(i, start, null, new RejectedRecordException(RejectReason.UNKNOWN_RECORD_TYPE,
            "the record sets no known variant (run_started, layer_snapshot, activation_batch, "
                + "measurement_done, run_ended)"));
      }
      return new Item(i, start, record, null);
    } catch (InvalidProtocolBufferException e) {
      return new Item(i, start, null, new RejectedRecordException(RejectReason.UNDECODABLE,
          "not a TelemetryRecord (" + e.getMessage() + ")"));
    }
  }

  /**
   * Fills bytes from the stream, or as much as it has; in 1 MiB reads, since a file channel reads a
   * large request through a temporary direct buffer of the request's size, kept per thread.
   */
  private int readFully(byte[] bytes) throws IOException {
    int done = 0;
    while (done < bytes.length) {
      int n = in.readNBytes(bytes, done, Math.min(1 << 20, bytes.length - done));
      if (n == 0) {
        break;
      }
      done += n;
    }
    return done;
  }

  private Item stop(String reason) {
    finished = true;
    stopReason = reason;
    long i = index++;
    return new Item(i, offset, null, new RejectedRecordException(RejectReason.UNDECODABLE, reason));
  }

  private static int varintSize(int value) {
    return com.google.protobuf.CodedOutputStream.computeUInt32SizeNoTag(value);
  }
}
