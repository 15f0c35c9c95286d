package io.flatmon.testing;

import io.flatmon.cli.FlatmonCommand;

/**
 * {@code flatmon ARGS} in this JVM, then "peak_rss_bytes=N" (VmHWM) on stderr: for child-JVM tests
 * that bound the memory a command may use.
 */
public final class RssReportingMain {
  private RssReportingMain() {
  }

  public static void main(String[] args) {
    int exit = FlatmonCommand.commandLine().execute(args);
    System.err.println("peak_rss_bytes=" + ChildJvm.peakRss());
    System.err.flush();
    System.exit(exit);
  }
}
