package io.flatmon.schema;

import io.flatmon.proto.v1.RejectReason;

/**
 * The run-id grammar, enforced where a run id enters flatmon (telemetry records, the query API).
 *
 * <p>A run id is 1 to {@value #MAX_LENGTH} Unicode characters (code points). Each is a letter, mark,
 * number, punctuation or symbol (Unicode general categories L, M, N, P, S) or the space U+0020; the
 * id neither starts nor ends with a space. So {@code resnet18/lr=0.1+wd}, {@code "run 7"},
 * {@code 50%} and {@code Läufe-ü} are run ids. Rejected: control characters (among them the
 * store-key separator U+001F, tab and newline), format characters (zero-width and bidirectional
 * controls, which make two ids that look alike differ), line and paragraph separators, every other
 * space, unassigned and private-use code points, and unpaired surrogates.
 *
 * <p>Why this grammar: trainers name runs after their configuration, so printable punctuation and
 * non-ASCII letters must work; what flatmon relies on is that an id is printable on one line (logs,
 * labels) and never contains the separator of its state-store keys.
 */
public final class RunIds {
  /** Longest run id, in code points. */
  public static final int MAX_LENGTH = 128;

  private RunIds() {
  }

  /** Whether {@code id} is a run id of the grammar above. */
  public static boolean isValid(String id) {
    return problem(id) == null;
  }

  /**
   * Checks a run id.
   *
   * @throws RejectedRecordException {@code INVALID_RUN_ID}, with what is wrong and the id quoted, or
   *     {@code MISSING_FIELD} for an empty id
   */
  public static String require(String id) throws RejectedRecordException {
    if (id == null || id.isEmpty()) {
      throw new RejectedRecordException(RejectReason.MISSING_FIELD, "run_id is required");
    }
    String problem = problem(id);
    if (problem != null) {
      throw new RejectedRecordException(RejectReason.INVALID_RUN_ID,
          "run_id " + UntrustedText.quote(id) + " " + problem);
    }
    return id;
  }

  /** What makes {@code id} invalid (a sentence fragment), or null when it is valid. */
  public static String problem(String id) {
    if (id == null || id.isEmpty()) {
      return "is empty";
    }
    int length = id.codePointCount(0, id.length());
    if (length > MAX_LENGTH) {
      return "has " + length + " characters; at most " + MAX_LENGTH + " are allowed";
    }
    if (id.charAt(0) == ' ' || id.charAt(id.length() - 1) == ' ') {
      return "starts or ends with a space";
    }
    for (int i = 0; i < id.length(); ) {
      int c = id.codePointAt(i);
      if (!allowed(c)) {
        return String.format("contains U+%04X at character %d; allowed are letters, marks, numbers, "
            + "punctuation, symbols and the space", c, id.codePointCount(0, i));
      }
      i += Character.charCount(c);
    }
    return null;
  }

  private static boolean allowed(int c) {
    if (c == ' ') {
      return true;
    }
    switch (Character.getType(c)) {
      case Character.UPPERCASE_LETTER, Character.LOWERCASE_LETTER, Character.TITLECASE_LETTER,
          Character.MODIFIER_LETTER, Character.OTHER_LETTER,
          Character.NON_SPACING_MARK, Character.ENCLOSING_MARK, Character.COMBINING_SPACING_MARK,
          Character.DECIMAL_DIGIT_NUMBER, Character.LETTER_NUMBER, Character.OTHER_NUMBER,
          Character.CONNECTOR_PUNCTUATION, Character.DASH_PUNCTUATION, Character.START_PUNCTUATION,
          Character.END_PUNCTUATION, Character.INITIAL_QUOTE_PUNCTUATION, Character.FINAL_QUOTE_PUNCTUATION,
          Character.OTHER_PUNCTUATION,
          Character.MATH_SYMBOL, Character.CURRENCY_SYMBOL, Character.MODIFIER_SYMBOL, Character.OTHER_SYMBOL -> {
        return true;
      }
      default -> {
        // CONTROL (U+001F among them), FORMAT, SURROGATE (unpaired), PRIVATE_USE, UNASSIGNED, separators
        return false;
      }
    }
  }
}
