package io.flatmon.schema;

import io.flatmon.proto.v1.RejectReason;

/** A telemetry record that cannot be measured, with a machine-readable reason and a detail for people. */
public final class RejectedRecordException extends Exception {
  private static final long serialVersionUID = 1L;
  private final RejectReason reason;

  public RejectedRecordException(RejectReason reason, String detail) {
    super(detail);
    this.reason = reason;
  }

  public RejectReason reason() {
    return reason;
  }

  /** "REASON: detail". */
  @Override
  public String toString() {
    return reason + ": " + getMessage();
  }
}
