package io.flatmon.fuzz;

import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.testing.ChildJvm;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * The {@link io.flatmon.testing.FuzzWorker} child JVM: a small heap and off-heap cap, records in,
 * one outcome line per record back. Its stderr (stack traces of internal errors) goes to a file.
 */
final class FuzzChild implements AutoCloseable {
  /** Heap and JavaCPP off-heap cap of the child. */
  static final List<String> JVM = List.of("-Xmx256m", "-Dorg.bytedeco.javacpp.maxbytes=768m");
  /** Limits the child decodes with: small, so that accepted batches stay cheap. */
  static final long DECODED = 16L << 20;
  static final long WORKING = 128L << 20;
  static final long WORK = 1_000_000_000L;
  /** Peak resident memory the child may reach: heap + off-heap cap + the JVM and ND4J themselves. */
  static final long RSS_LIMIT = 256L * 1048576 + 768L * 1048576 + 512L * 1048576;

  private final Process process;
  private final OutputStream in;
  private final BlockingQueue<String> lines = new ArrayBlockingQueue<>(1024);
  private final Path log;

  FuzzChild(int engineThreads, boolean gcStress) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command()
        .orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
    cmd.add("-XX:+UseSerialGC");
    cmd.add("-XX:-CreateCoredumpOnCrash");
    cmd.add("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn");
    cmd.addAll(JVM);
    cmd.add("-cp");
    cmd.add(ChildJvm.classPath());
    cmd.add("io.flatmon.testing.FuzzWorker");
    cmd.add(Integer.toString(engineThreads));
    cmd.add(Long.toString(DECODED));
    cmd.add(Long.toString(WORKING));
    cmd.add(Long.toString(WORK));
    if (gcStress) {
      cmd.add("gc");
    }
    log = Files.createTempFile("flatmon-fuzz", ".log");
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(log.toFile());
    pb.environment().put("OMP_NUM_THREADS", "1");
    process = pb.start();
    in = process.getOutputStream();
    Thread reader = new Thread(() -> {
      try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(),
          StandardCharsets.UTF_8))) {
        for (String line; (line = r.readLine()) != null; ) {
          lines.put(line);
        }
      } catch (IOException | InterruptedException e) {
        // the child is gone
      }
    }, "fuzz-child-stdout");
    reader.setDaemon(true);
    reader.start();
    String ready = lines.poll(120, TimeUnit.SECONDS);
    if (!"READY".equals(ready)) {
      throw new IllegalStateException("fuzz worker did not start: " + ready + "\n" + logTail());
    }
  }

  /** Sends a record and returns its outcome line, or null if the child did not answer in time. */
  String send(TelemetryRecord r, long timeoutSeconds) throws IOException, InterruptedException {
    r.writeDelimitedTo(in);
    in.flush();
    return lines.poll(timeoutSeconds, TimeUnit.SECONDS);
  }

  boolean isAlive() {
    return process.isAlive();
  }

  String logTail() {
    try {
      String s = Files.readString(log);
      return s.length() > 4000 ? s.substring(s.length() - 4000) : s;
    } catch (IOException e) {
      return "(no log)";
    }
  }

  @Override
  public void close() throws InterruptedException {
    try {
      in.close();
    } catch (IOException e) {
      // already gone
    }
    if (!process.waitFor(20, TimeUnit.SECONDS)) {
      process.destroyForcibly().waitFor();
    }
  }
}
