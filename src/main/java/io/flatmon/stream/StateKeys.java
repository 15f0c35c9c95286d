package io.flatmon.stream;

import io.flatmon.proto.v1.Split;

/** Keys of the state stores; the unit separator cannot occur in a sensible run or layer name. */
final class StateKeys {
  private static final char SEP = '\u001f';

  private StateKeys() {
  }

  /** (run, layer): the snapshot store. */
  static String head(String run, String layer) {
    return run + SEP + layer;
  }

  /** Prefix of every key of one run in the latest and history stores. */
  static String runPrefix(String run) {
    return run + SEP;
  }

  /** (run, layer, split): the latest store. */
  static String latest(String run, String layer, Split split) {
    return run + SEP + layer + SEP + split.name();
  }

  /** (run, layer, step, split): the measurement store. Steps are zero-padded so keys sort by step. */
  static String measurement(String run, String layer, long step, Split split) {
    return run + SEP + layer + SEP + String.format("%019d", step) + SEP + split.name();
  }
}
