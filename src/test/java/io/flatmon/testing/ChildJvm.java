package io.flatmon.testing;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Runs a main class of the test class path in a child JVM with a small heap and off-heap cap, so that
 * a native crash or an exhausted heap ends the child, not the test JVM. Output goes to files in a
 * scratch directory and is returned whole.
 */
public final class ChildJvm {
  /** How the child ended: its exit status (134/139 on a native crash, -1 if it had to be killed). */
  public record Result(int exit, String out, String err) {
    /** The JVM died: a native crash (hs_err report), a signal, an error out of main, or the timeout. */
    public boolean crashed() {
      return exit >= 128 || exit < 0 || out.contains("A fatal error has been detected")
          || err.contains("Exception in thread \"main\"");
    }

    @Override
    public String toString() {
      return "exit " + exit + "\n--- stdout ---\n" + tail(out) + "\n--- stderr ---\n" + tail(err);
    }

    private static String tail(String s) {
      return s.length() <= 6000 ? s : "…" + s.substring(s.length() - 6000);
    }
  }

  private ChildJvm() {
  }

  /**
   * @param jvmOptions e.g. -Xmx512m, -Dorg.bytedeco.javacpp.maxbytes=1G
   */
  public static Result run(Path scratch, List<String> jvmOptions, String mainClass, List<String> args,
      long timeoutSeconds) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command()
        .orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
    cmd.add("-XX:+UseSerialGC");
    cmd.add("-XX:-CreateCoredumpOnCrash");
    cmd.add("-XX:ErrorFile=" + scratch.resolve("hs_err_%p.log"));
    cmd.add("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn");
    cmd.addAll(jvmOptions);
    cmd.add("-cp");
    cmd.add(classPath());
    cmd.add(mainClass);
    cmd.addAll(args);
    Files.createDirectories(scratch);
    Path out = Files.createTempFile(scratch, "child", ".out");
    Path err = Files.createTempFile(scratch, "child", ".err");
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile());
    pb.environment().put("OMP_NUM_THREADS", "1");
    Process p = pb.start();
    int exit;
    if (p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
      exit = p.exitValue();
    } else {
      p.destroyForcibly().waitFor();
      exit = -1;
    }
    return new Result(exit, Files.readString(out, StandardCharsets.UTF_8), Files.readString(err, StandardCharsets.UTF_8));
  }

  /** The test class path: surefire exposes it as java.class.path in its forked JVM. */
  public static String classPath() {
    String cp = System.getProperty("java.class.path");
    String surefire = System.getProperty("surefire.test.class.path");
    if (surefire != null && !surefire.isBlank() && !cp.contains("target/classes")) {
      return surefire;
    }
    return cp;
  }

  /** Peak resident set size of this JVM so far (VmHWM of /proc/self/status), in bytes; -1 off Linux. */
  public static long peakRss() {
    return statusField("VmHWM:");
  }

  /** Current resident set size (VmRSS), in bytes; -1 off Linux. */
  public static long rss() {
    return statusField("VmRSS:");
  }

  private static long statusField(String name) {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
        if (line.startsWith(name)) {
          String[] parts = line.substring(name.length()).trim().split("\\s+");
          return Long.parseLong(parts[0]) * 1024L;
        }
      }
    } catch (IOException | RuntimeException e) {
      return -1;
    }
    return -1;
  }
}
