package io.flatmon.cli;

import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Help;
import picocli.CommandLine;

/**
 * Renders every command's description and footer as paragraphs wrapped between words at the help's
 * width. picocli's own wrapping breaks lines after any period, so paths and dotted names
 * ({@code docs/math.md}, {@code flatmon.v1.telemetry}) were split across lines, and it wraps each
 * source line on its own. Here consecutive source lines form one paragraph, an empty line separates
 * paragraphs, and a line that starts with a space (an example) is printed as written.
 */
final class ParagraphSections {
  private ParagraphSections() {
  }

  /** Installs the renderers on a command and all its subcommands. */
  static CommandLine install(CommandLine line) {
    line.getHelpSectionMap().put(CommandLine.Model.UsageMessageSpec.SECTION_KEY_DESCRIPTION,
        help -> render(help, help.commandSpec().usageMessage().description()));
    line.getHelpSectionMap().put(CommandLine.Model.UsageMessageSpec.SECTION_KEY_FOOTER,
        help -> render(help, help.commandSpec().usageMessage().footer()));
    for (CommandLine sub : line.getSubcommands().values()) {
      install(sub);
    }
    return line;
  }

  static String render(Help help, String[] source) {
    int width = help.commandSpec().usageMessage().width();
    StringBuilder out = new StringBuilder();
    List<String> paragraph = new ArrayList<>();
    for (String raw : source) {
      for (String element : raw.replace("%n", "\n").replace("%%", "%").split("\n", -1)) {
        if (element.isBlank() || element.startsWith(" ")) {
          wrap(String.join(" ", paragraph), width, out);
          paragraph.clear();
          out.append(element.isBlank() ? "" : element).append(System.lineSeparator());
        } else {
          paragraph.add(element.strip());
        }
      }
    }
    wrap(String.join(" ", paragraph), width, out);
    return out.toString();
  }

  private static void wrap(String text, int width, StringBuilder out) {
    if (text.isEmpty()) {
      return;
    }
    StringBuilder line = new StringBuilder();
    for (String word : text.split(" +")) {
      if (line.length() > 0 && line.length() + 1 + word.length() > width) {
        out.append(line).append(System.lineSeparator());
        line.setLength(0);
      }
      if (line.length() > 0) {
        line.append(' ');
      }
      line.append(word);
    }
    out.append(line).append(System.lineSeparator());
  }
}
