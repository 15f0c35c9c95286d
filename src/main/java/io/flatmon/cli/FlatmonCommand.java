package io.flatmon.cli;

import java.io.IOException;
import java.io.InputStream;
import java.util.Properties;
import picocli.CommandLine.Command;
import picocli.CommandLine;

/** The `flatmon` command line: one subcommand per job. */
@Command(
    name = "flatmon",
    mixinStandardHelpOptions = true,
    versionProvider = FlatmonCommand.Version.class,
    description = {
        "Exact Hessian trace and relative flatness of CNN heads from training telemetry.",
        "",
        "flatmon reads the weights of a network's last conv layer and the activations around its",
        "global-average-pooling head, and computes Tr H (the trace of the loss Hessian w.r.t. the",
        "conv kernel), relative flatness κ and its input-normalised form κ_norm in closed form.",
        ""},
    subcommands = {DemoCommand.class, ServeCommand.class, ComputeCommand.class, BenchCommand.class,
        CommandLine.HelpCommand.class},
    footer = {"", "Run 'flatmon help COMMAND' for a command's options. Docs: README.md, docs/math.md."})
public final class FlatmonCommand implements Runnable {

  @CommandLine.Spec
  CommandLine.Model.CommandSpec spec;

  public static void main(String[] args) {
    System.exit(commandLine().execute(args));
  }

  /** The configured command line, also used by tests. */
  public static CommandLine commandLine() {
    return ParagraphSections.install(new CommandLine(new FlatmonCommand())
        .setCaseInsensitiveEnumValuesAllowed(true));
  }

  @Override
  public void run() {
    spec.commandLine().usage(System.out);
  }

  /** The project version, written into version.properties by Maven's resource filtering. */
  static final class Version implements CommandLine.IVersionProvider {
    @Override
    public String[] getVersion() throws IOException {
      Properties p = new Properties();
      try (InputStream in = FlatmonCommand.class.getResourceAsStream("version.properties")) {
        if (in != null) {
          p.load(in);
        }
      }
      return new String[] {"flatmon " + p.getProperty("version", "(unknown version)")};
    }
  }
}
