package io.flatmon.stream.it;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * {@code flatmon serve} in a child JVM (this JVM's java and class path), for tests that kill the
 * Streams instance hard. Its stdout is watched for the "flatmon serving" line; its stderr (the log)
 * goes to a file whose tail is shown when something goes wrong.
 */
public final class ServeProcess implements AutoCloseable {
  private final Process process;
  private final Path log;
  private final CompletableFuture<String> serving = new CompletableFuture<>();

  private ServeProcess(Process process, Path log) {
    this.process = process;
    this.log = log;
    Thread reader = new Thread(() -> {
      try (BufferedReader out = new BufferedReader(
          new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
        for (String line; (line = out.readLine()) != null; ) {
          System.out.println("[child " + process.pid() + "] " + line);
          if (line.startsWith("flatmon serving")) {
            serving.complete(line);
          }
        }
      } catch (IOException e) {
        // the child is gone
      }
      serving.complete(null);
    }, "serve-process-stdout-" + process.pid());
    reader.setDaemon(true);
    reader.start();
  }

  /** Starts {@code flatmon serve ARGS} with OMP_NUM_THREADS=1; returns once it prints "flatmon serving". */
  public static ServeProcess start(List<String> serveArgs, Path log, Duration timeout) throws Exception {
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command()
        .orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
    cmd.add("-Xmx768m");
    cmd.add("-XX:+UseSerialGC");
    cmd.add("-Dorg.bytedeco.javacpp.maxbytes=2G");
    cmd.add("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn");
    cmd.add("-Dorg.slf4j.simpleLogger.log.io.flatmon=info");
    cmd.add("-Dorg.slf4j.simpleLogger.showDateTime=true");
    cmd.add("-cp");
    cmd.add(classPath());
    cmd.add("io.flatmon.cli.FlatmonCommand");
    cmd.add("serve");
    cmd.addAll(serveArgs);
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.appendTo(log.toFile()));
    pb.environment().put("OMP_NUM_THREADS", "1");
    ServeProcess p = new ServeProcess(pb.start(), log);
    String line = p.serving.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
    if (line == null) {
      p.process.waitFor(5, TimeUnit.SECONDS);
      throw new AssertionError("flatmon serve exited before serving"
          + (p.process.isAlive() ? "" : " (exit code " + p.process.exitValue() + ")") + "; log:\n" + p.logTail());
    }
    return p;
  }

  /** The test class path: surefire exposes it as java.class.path in its forked JVM. */
  static String classPath() {
    String cp = System.getProperty("java.class.path");
    String surefire = System.getProperty("surefire.test.class.path");
    if (surefire != null && !surefire.isBlank() && !cp.contains("target/classes")) {
      return surefire;
    }
    return cp;
  }

  public long pid() {
    return process.pid();
  }

  public boolean isAlive() {
    return process.isAlive();
  }

  /** SIGKILL: no shutdown hook, no clean close of Streams, producers or state stores. */
  public void kill() throws InterruptedException {
    process.destroyForcibly();
    if (!process.waitFor(30, TimeUnit.SECONDS)) {
      throw new AssertionError("child " + process.pid() + " survived SIGKILL");
    }
  }

  /** The last lines of the child's log. */
  public String logTail() {
    try {
      List<String> lines = Files.readAllLines(log);
      return String.join("\n", lines.subList(Math.max(0, lines.size() - 60), lines.size()));
    } catch (IOException e) {
      return "(no log: " + e + ")";
    }
  }

  /** SIGTERM (the service's shutdown hook), SIGKILL after 20 s. */
  @Override
  public void close() throws InterruptedException {
    if (process.isAlive()) {
      process.destroy();
      if (!process.waitFor(20, TimeUnit.SECONDS)) {
        process.destroyForcibly().waitFor();
      }
    }
  }
}
