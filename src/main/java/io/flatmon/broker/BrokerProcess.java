package io.flatmon.broker;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.StringJoiner;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * {@link EmbeddedKafka#main} in a child JVM, for callers (the service, tests) that must survive a
 * broker that exits its JVM on a fatal fault, or that kill processes on purpose. The child uses this
 * JVM's {@code java} and class path, runs with {@code -XX:TieredStopAtLevel=1} (faster start-up) and
 * exits when this JVM dies ({@code --exit-on-stdin-eof}); its log goes to this JVM's stderr unless
 * a log file is given.
 */
public final class BrokerProcess implements AutoCloseable {

  private final Process process;
  private final String bootstrapServers;

  private BrokerProcess(Process process, String bootstrapServers) {
    this.process = process;
    this.bootstrapServers = bootstrapServers;
  }

  /**
   * Starts the child and waits for its {@code READY} line.
   *
   * @param port client port, 0 for a free one
   * @param saslUsers username → password, empty for PLAINTEXT
   * @param logFile where the child's stderr goes, or null to inherit this JVM's
   */
  public static BrokerProcess start(Path dataDir, int port, Map<String, String> saslUsers, Path logFile,
      Duration timeout) throws IOException {
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command().orElse(
        Path.of(System.getProperty("java.home"), "bin", "java").toString()));
    cmd.add("-XX:TieredStopAtLevel=1");
    cmd.add("-Xmx1g");
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add(EmbeddedKafka.class.getName());
    cmd.add("--data-dir");
    cmd.add(dataDir.toAbsolutePath().toString());
    cmd.add("--port");
    cmd.add(Integer.toString(port));
    if (!saslUsers.isEmpty()) {
      StringJoiner users = new StringJoiner(",");
      saslUsers.forEach((u, p) -> {
        if (u.contains(":") || u.contains(",") || p.contains(",")) {
          throw new IllegalArgumentException("user names must not contain ':' or ',', passwords not ','");
        }
        users.add(u + ":" + p);
      });
      cmd.add("--sasl-users");
      cmd.add(users.toString());
    }
    cmd.add("--exit-on-stdin-eof");
    ProcessBuilder pb = new ProcessBuilder(cmd)
        .redirectError(logFile == null ? ProcessBuilder.Redirect.INHERIT : ProcessBuilder.Redirect.appendTo(logFile.toFile()));
    Process p = pb.start();
    BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
    CompletableFuture<String> ready = CompletableFuture.supplyAsync(() -> {
      try {
        for (String line; (line = out.readLine()) != null; ) {
          if (line.startsWith("READY ")) {
            return line.substring("READY ".length()).trim();
          }
        }
        return null;
      } catch (IOException e) {
        return null;
      }
    });
    try {
      String bootstrap = ready.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
      if (bootstrap == null) {
        p.waitFor(5, TimeUnit.SECONDS);
        throw new IOException("broker process exited before READY"
            + (p.isAlive() ? "" : " (exit code " + p.exitValue() + ")"));
      }
      return new BrokerProcess(p, bootstrap);
    } catch (InterruptedException e) {
      p.destroyForcibly();
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while waiting for the broker process", e);
    } catch (ExecutionException | TimeoutException | IOException e) {
      p.destroyForcibly();
      throw e instanceof IOException io ? io : new IOException("broker process not ready within " + timeout, e);
    }
  }

  public String bootstrapServers() {
    return bootstrapServers;
  }

  public long pid() {
    return process.pid();
  }

  public boolean isAlive() {
    return process.isAlive();
  }

  /** SIGKILL, no clean shutdown. */
  public void kill() throws InterruptedException {
    process.destroyForcibly().waitFor();
  }

  /** SIGTERM and wait up to {@code timeout}, then SIGKILL; returns the exit code. */
  public int stop(Duration timeout) throws InterruptedException {
    Objects.requireNonNull(timeout);
    process.destroy();
    if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
      process.destroyForcibly().waitFor();
    }
    return process.exitValue();
  }

  @Override
  public void close() throws InterruptedException {
    if (process.isAlive()) {
      stop(Duration.ofSeconds(15));
    }
  }
}
