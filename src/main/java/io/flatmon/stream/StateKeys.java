package io.flatmon.stream;

import io.flatmon.proto.v1.Split;

/**
 * Keys of the state stores. Every key of a run starts with {@link #runPrefix}: the run id's length in
 * UTF-16 chars, a colon, the run id and the unit separator. The length makes the prefixes of two
 * different runs never prefixes of each other's keys (whatever characters the ids contain), so a
 * prefix scan or prefix delete of one run never touches another. Within a run, the unit separator
 * joins layer, zero-padded step and split.
 */
final class StateKeys {
  private static final char SEP = '\u001f';

  private StateKeys() {
  }

  /** (run, layer): the snapshot store. */
  static String head(String run, String layer) {
    return runPrefix(run) + layer;
  }

  /** Prefix of every key of one run in the snapshot, latest, history and measurement stores. */
  static String runPrefix(String run) {
    return run.length() + ":" + run + SEP;
  }

  /** (run, layer, split): the latest store. */
  static String latest(String run, String layer, Split split) {
    return runPrefix(run) + layer + SEP + split.name();
  }

  /** (run, layer, step, split): the measurement and history stores. Steps are zero-padded so keys sort by step. */
  static String measurement(String run, String layer, long step, Split split) {
    return runPrefix(run) + layer + SEP + String.format("%019d", step) + SEP + split.name();
  }
}
