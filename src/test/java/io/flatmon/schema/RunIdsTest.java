package io.flatmon.schema;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.proto.v1.RejectReason;
import org.junit.jupiter.api.Test;

/** The run-id grammar and the quoting of untrusted text for logs. */
class RunIdsTest {
  /** The awkward but printable ids the query API must serve. */
  static final String[] AWKWARD = {"a+b", "resnet/lr=0.1", "50%", "100%25", "run 7", "say \"hi\"", "it's",
      "Läufe-ü", "训练-1", "emoji-\uD83D\uDE80", "a?b#c&d=e", "..", "~user@host:8080", "back\\slash"};

  @Test
  void printableIdsAreValid() throws Exception {
    for (String id : AWKWARD) {
      assertTrue(RunIds.isValid(id), id + ": " + RunIds.problem(id));
      assertEquals(id, RunIds.require(id));
    }
    String longest = "x".repeat(RunIds.MAX_LENGTH - 1) + "\uD83D\uDE80";
    assertTrue(RunIds.isValid(longest), "128 code points, 129 UTF-16 chars");
  }

  @Test
  void controlFormatSeparatorAndOverlongIdsAreRejected() {
    String[] bad = {"victim\u001fx", "line\nforged", "tab\tid", "nul\0", "del\u007f", "zero\u200bwidth",
        "bidi\u202eevil", "nbsp\u00a0", "line\u2028sep", "lone\uD800", "lone\uDC00x", "private\uE000",
        " leading", "trailing ", "x".repeat(RunIds.MAX_LENGTH + 1)};
    for (String id : bad) {
      assertFalse(RunIds.isValid(id), UntrustedText.quote(id));
      RejectedRecordException e = assertThrows(RejectedRecordException.class, () -> RunIds.require(id));
      assertEquals(RejectReason.INVALID_RUN_ID, e.reason());
      assertFalse(e.getMessage().contains("\n"), e.getMessage());
    }
    RejectedRecordException empty = assertThrows(RejectedRecordException.class, () -> RunIds.require(""));
    assertEquals(RejectReason.MISSING_FIELD, empty.reason());
  }

  @Test
  void quotingKeepsALogLineOneLineAndBounded() {
    assertEquals("\"victim\\u001fx\"", UntrustedText.quote("victim\u001fx"));
    assertEquals("\"a\\nINFO forged\"", UntrustedText.quote("a\nINFO forged"));
    assertEquals("\"say \\\"hi\\\"\"", UntrustedText.quote("say \"hi\""));
    assertEquals("\"Läufe\"", UntrustedText.quote("Läufe"));
    assertEquals("\"bidi\\u202e\"", UntrustedText.quote("bidi\u202e"));
    String huge = UntrustedText.quote("y".repeat(5_000_000));
    assertTrue(huge.length() < UntrustedText.MAX_CHARS + 40, huge.length() + " chars");
    assertTrue(huge.endsWith("...(5000000 chars)"), huge.substring(huge.length() - 30));
  }
}
