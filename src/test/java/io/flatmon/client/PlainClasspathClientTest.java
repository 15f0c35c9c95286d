package io.flatmon.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.service.FlatmonService;
import io.flatmon.stream.TopologySettings;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A JVM trainer needs neither ND4J nor native libraries: {@code PlainTrainer} (a test resource) is
 * compiled and run against a class path of only kafka-clients (with its compression codecs), protobuf,
 * slf4j and the client, wire and generated schema classes — no engine class, no ND4J, JavaCPP or
 * OpenBLAS jar. It publishes a measured step to a real flatmon (embedded broker) from plain arrays and
 * must receive the STOP its policy asks for.
 */
class PlainClasspathClientTest {
  /** Jars a Kafka producer/consumer with zstd and protobuf messages needs, by file-name prefix. */
  private static final List<String> CLIENT_JARS = List.of("kafka-clients-", "protobuf-java-4", "slf4j-api-",
      "zstd-jni-", "lz4-java-", "snappy-java-");
  private static final List<String> CLIENT_PACKAGES = List.of("io/flatmon/client", "io/flatmon/wire",
      "io/flatmon/proto");

  @Test
  void trainerWithoutNd4jPublishesAndReceivesItsStop(@TempDir Path dir) throws Exception {
    List<String> classPath = new ArrayList<>();
    classPath.add(clientClasses(dir.resolve("classes")).toString());
    for (String entry : testClassPath().split(File.pathSeparator)) {
      String name = Path.of(entry).getFileName().toString();
      if (CLIENT_JARS.stream().anyMatch(name::startsWith)) {
        classPath.add(entry);
      }
    }
    for (String entry : classPath) {
      String lower = entry.toLowerCase(Locale.ROOT);
      assertFalse(lower.contains("nd4j") || lower.contains("javacpp") || lower.contains("openblas"), entry);
    }
    String cp = String.join(File.pathSeparator, classPath);

    Path source = dir.resolve("src/PlainTrainer.java");
    Files.createDirectories(source.getParent());
    try (InputStream in = getClass().getResourceAsStream("/client/PlainTrainer.java")) {
      Files.copy(in, source);
    }
    Path trainerClasses = Files.createDirectories(dir.resolve("trainer"));
    JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
    assertEquals(0, javac.run(null, null, null, "-classpath", cp, "-d", trainerClasses.toString(),
        source.toString()), "PlainTrainer compiles against the client class path alone");

    FlatmonService.Config config = new FlatmonService.Config(null, dir.resolve("service"), 0, Map.of(),
        "flatmon-plain-client-test", 2, (short) 1, Duration.ofHours(1).toMillis(), 1, "127.0.0.1", 0,
        TopologySettings.defaults());
    try (FlatmonService service = new FlatmonService(config).start(Duration.ofSeconds(120))) {
      String java = ProcessHandle.current().info().command()
          .orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
      Process child = new ProcessBuilder(java, "-Xmx256m", "-cp", trainerClasses + File.pathSeparator + cp,
          "PlainTrainer", service.bootstrapServers(), "plain-run").redirectErrorStream(true).start();
      String output;
      try (InputStream out = child.getInputStream()) {
        boolean exited = child.waitFor(150, TimeUnit.SECONDS);
        if (!exited) {
          child.destroyForcibly();
        }
        output = new String(out.readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(exited, "PlainTrainer did not finish:\n" + output);
      }
      assertEquals(0, child.exitValue(), "PlainTrainer output:\n" + output);
      assertTrue(output.contains("not on the class path: org.nd4j.linalg.factory.Nd4j"), output);
      assertTrue(output.contains("signal STOP step=1"), output);
    }
  }

  /** Copies only the client, wire and generated proto classes out of the main output directory. */
  private static Path clientClasses(Path target) throws IOException, java.net.URISyntaxException {
    Path main = Path.of(TelemetryPublisher.class.getProtectionDomain().getCodeSource().getLocation().toURI());
    for (String pkg : CLIENT_PACKAGES) {
      Path from = main.resolve(pkg);
      try (Stream<Path> files = Files.walk(from)) {
        for (Path f : (Iterable<Path>) files::iterator) {
          Path to = target.resolve(main.relativize(f).toString());
          if (Files.isDirectory(f)) {
            Files.createDirectories(to);
          } else {
            Files.copy(f, to);
          }
        }
      }
    }
    return target;
  }

  /** The test class path: surefire exposes it as java.class.path, or in a manifest-only jar. */
  private static String testClassPath() {
    String surefire = System.getProperty("surefire.test.class.path");
    return surefire != null && !surefire.isBlank() ? surefire : System.getProperty("java.class.path");
  }
}
