package io.flatmon.schema;

/**
 * Text that came from outside (a record key, a run id before validation, a request path), made safe
 * to put in a log line or an error message: quoted, with control, format and non-printable
 * characters escaped, so that it can neither forge a log line nor hide behind invisible characters,
 * and cut at {@value #MAX_CHARS} characters.
 */
public final class UntrustedText {
  /** Longest text kept (UTF-16 chars); the rest is replaced by a count. */
  public static final int MAX_CHARS = 256;

  private UntrustedText() {
  }

  /** {@code "text"} with \" \\ \n \r \t and \\uXXXX escapes; null gives {@code null}. */
  public static String quote(String text) {
    if (text == null) {
      return "null";
    }
    int end = Math.min(text.length(), MAX_CHARS);
    if (end < text.length() && Character.isHighSurrogate(text.charAt(end - 1))) {
      end--;
    }
    StringBuilder b = new StringBuilder(end + 16).append('"');
    for (int i = 0; i < end; i++) {
      char c = text.charAt(i);
      switch (c) {
        case '"' -> b.append("\\\"");
        case '\\' -> b.append("\\\\");
        case '\n' -> b.append("\\n");
        case '\r' -> b.append("\\r");
        case '\t' -> b.append("\\t");
        default -> {
          if (printable(text, i)) {
            b.append(c);
          } else {
            b.append(String.format("\\u%04x", (int) c));
          }
        }
      }
    }
    b.append('"');
    if (end < text.length()) {
      b.append("...(").append(text.length()).append(" chars)");
    }
    return b.toString();
  }

  private static boolean printable(String text, int i) {
    char c = text.charAt(i);
    if (Character.isHighSurrogate(c)) {
      return i + 1 < text.length() && Character.isLowSurrogate(text.charAt(i + 1));
    }
    if (Character.isLowSurrogate(c)) {
      return i > 0 && Character.isHighSurrogate(text.charAt(i - 1));
    }
    return switch (Character.getType(c)) {
      case Character.CONTROL, Character.FORMAT, Character.LINE_SEPARATOR, Character.PARAGRAPH_SEPARATOR,
          Character.PRIVATE_USE, Character.UNASSIGNED -> false;
      default -> true;
    };
  }
}
