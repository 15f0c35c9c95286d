package io.flatmon.cli;

import picocli.CommandLine.Command;

/** `flatmon bench ...`: benchmarks that print figures (never run as tests). */
@Command(
    name = "bench",
    mixinStandardHelpOptions = true,
    description = "Benchmarks that print figures. See the subcommands.",
    subcommands = {BenchEngineCommand.class, BenchPipelineCommand.class, BenchSignalsCommand.class})
final class BenchCommand implements Runnable {
  @picocli.CommandLine.Spec
  picocli.CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(System.out);
  }
}
