package io.flatmon.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/**
 * Every command's --help renders: picocli formats descriptions with String.format, so a stray "%"
 * makes it print a warning to stderr and show the raw text.
 */
class HelpTextTest {

  @Test
  void everyCommandsHelpRendersWithoutPicocliWarnings() {
    List<String[]> commands = new ArrayList<>();
    collect(FlatmonCommand.commandLine(), new ArrayList<>(), commands);
    assertTrue(commands.size() >= 5, "subcommands found: " + commands.size());
    PrintStream err = System.err;
    for (String[] path : commands) {
      ByteArrayOutputStream captured = new ByteArrayOutputStream();
      String usage;
      System.setErr(new PrintStream(captured, true, StandardCharsets.UTF_8));
      try {
        CommandLine line = FlatmonCommand.commandLine();
        for (String name : path) {
          line = line.getSubcommands().get(name);
        }
        usage = line.getUsageMessage();
      } finally {
        System.setErr(err);
      }
      String warnings = captured.toString(StandardCharsets.UTF_8);
      String command = String.join(" ", path);
      assertEquals("", warnings, "flatmon " + command + " --help");
      assertFalse(usage.contains("%n"), "flatmon " + command + " --help shows a raw %n");
    }
  }

  private static void collect(CommandLine line, List<String> path, List<String[]> out) {
    out.add(path.toArray(new String[0]));
    for (var e : line.getSubcommands().entrySet()) {
      if (e.getValue().getCommandSpec().name().equals(e.getKey())) { // skip aliases
        List<String> sub = new ArrayList<>(path);
        sub.add(e.getKey());
        collect(e.getValue(), sub, out);
      }
    }
  }
}
