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

  /** (run, layer, step, split): the measurement store. Steps are zero-padded so keys sort by step. */
  static String measurement(String run, String layer, long step, Split split) {
    return run + SEP + layer + SEP + String.format("%019d", step) + SEP + split.name();
  }
}
