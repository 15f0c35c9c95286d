package io.flatmon.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/**
 * Every command's --help renders: picocli formats descriptions with String.format, so a stray "%"
 * makes it print a warning to stderr and show the raw text. Help texts are paragraphs that picocli
 * wraps at the terminal's width, so at 80 and 120 columns no word or path is split across lines and
 * every shell example's line continuation ends its line.
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

  @Test
  void helpWrapsBetweenWordsAndKeepsShellContinuationsAtLineEnds() {
    List<String[]> commands = new ArrayList<>();
    collect(FlatmonCommand.commandLine(), new ArrayList<>(), commands);
    List<String> problems = new ArrayList<>();
    for (String[] path : commands) {
      // Rendered wide enough that nothing wraps, the help's words are the ones its author wrote.
      Set<String> words = new HashSet<>(Arrays.asList(usage(path, 1000).split("\\s+")));
      for (int width : new int[] {80, 120}) {
        String where = "flatmon " + String.join(" ", path) + " --help at " + width + " columns";
        String[] lines = usage(path, width).split("\\R");
        for (int i = 0; i < lines.length; i++) {
          String line = lines[i];
          for (String word : line.trim().split("\\s+")) {
            if (!word.isEmpty() && !words.contains(word)) {
              problems.add(where + ": \"" + word + "\" is part of a word split across lines:\n  " + line);
            }
          }
          String[] tokens = line.trim().split("\\s+");
          for (int t = 0; t < tokens.length; t++) {
            boolean last = t == tokens.length - 1;
            if (tokens[t].equals("\\") && (!last || tokens.length == 1)) {
              problems.add(where + ": a line continuation that does not end its command line:\n  " + line);
            }
          }
        }
      }
    }
    assertTrue(problems.isEmpty(), String.join("\n", problems));
  }

  @Test
  void versionIsTheProjectVersion() throws Exception {
    String[] version = FlatmonCommand.commandLine().getCommandSpec().version();
    assertTrue(version.length == 1 && version[0].matches("flatmon \\d+\\.\\d+\\.\\d+.*"), Arrays.toString(version));
    String expected = pomVersion();
    assertEquals("flatmon " + expected, version[0]);
  }

  /** The project version as pom.xml declares it (the first version element after the artifactId). */
  private static String pomVersion() throws Exception {
    String pom = Files.readString(Path.of("pom.xml"));
    Matcher m = Pattern.compile("<artifactId>flatmon</artifactId>\\s*<version>([^<]+)</version>").matcher(pom);
    assertTrue(m.find(), "project version in pom.xml");
    return m.group(1);
  }

  private static String usage(String[] path, int width) {
    CommandLine line = FlatmonCommand.commandLine();
    line.setUsageHelpWidth(width);
    for (String name : path) {
      line = line.getSubcommands().get(name);
    }
    return line.getUsageMessage(CommandLine.Help.Ansi.OFF);
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
