package io.flatmon.stream.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.broker.EmbeddedKafka;
import io.flatmon.cli.FlatmonCommand;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.service.FlatmonService;
import java.io.InputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A broker with SASL/PLAIN authentication: the service works with the credentials of a
 * --kafka-config file, and `flatmon serve` with wrong ones exits 2 with a clear one-line message.
 */
class SaslTest {
  @TempDir
  Path dir;

  @Test
  void worksWithKafkaConfigAndFailsClearlyOnWrongCredentials() throws Exception {
    try (EmbeddedKafka kafka = EmbeddedKafka.builder().dataDir(dir.resolve("kafka"))
        .saslUsers(Map.of("flatmon", "s3cret")).build().start()) {
      Path good = dir.resolve("client.properties");
      Files.writeString(good, """
          security.protocol=SASL_PLAINTEXT
          sasl.mechanism=PLAIN
          sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\
              username="flatmon" password="s3cret";
          """);
      Path wrong = dir.resolve("wrong.properties");
      Files.writeString(wrong, Files.readString(good).replace("s3cret", "not-the-password"));

      wrongCredentials(kafka, wrong);
      rightCredentials(kafka, good);
    }
  }

  /** `flatmon serve --kafka-config wrong.properties`, in this JVM: exit 2, a readable message, no stack trace. */
  private void wrongCredentials(EmbeddedKafka kafka, Path wrong) throws Exception {
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    var cli = FlatmonCommand.commandLine();
    cli.setOut(new PrintWriter(out, true));
    cli.setErr(new PrintWriter(err, true));
    long t0 = System.nanoTime();
    CompletableFuture<Integer> exit = CompletableFuture.supplyAsync(() -> cli.execute("serve",
        "--bootstrap-servers", kafka.bootstrapServers(), "--kafka-config", wrong.toString(),
        "--data-dir", dir.resolve("refused").toString(), "--http-port", "0",
        "--application-id", Services.applicationId("sasl-refused")));
    int code = exit.get(30, TimeUnit.SECONDS);
    double seconds = (System.nanoTime() - t0) / 1e9;
    System.out.printf("SaslTest: wrong credentials → exit %d in %.1f s: %s", code, seconds, err);
    assertEquals(2, code, "exit code; stderr: " + err);
    String message = err.toString();
    assertTrue(message.contains("refused the credentials"), message);
    assertTrue(message.contains(kafka.bootstrapServers()), "names the cluster: " + message);
    assertFalse(message.contains("\tat ") || message.contains("Exception in thread"), "no stack trace: " + message);
    assertTrue(message.strip().lines().count() <= 2, "a short message: " + message);
    assertFalse(out.toString().contains("flatmon serving"), out.toString());
  }

  /** The service with the --kafka-config file's client settings measures a run. */
  private void rightCredentials(EmbeddedKafka kafka, Path good) throws Exception {
    Map<String, Object> clientConfig = new HashMap<>();
    Properties p = new Properties();
    try (InputStream in = Files.newInputStream(good)) {
      p.load(in);
    }
    p.forEach((k, v) -> clientConfig.put(k.toString(), v));
    List<TelemetryRecord> run = TelemetryFixtures.smallRun("sasl-run", 900);
    int expectedFinals = TelemetryFixtures.expectedFinals(run);

    long t0 = System.nanoTime();
    try (FlatmonService service = Services.start(Services.config(kafka.bootstrapServers(), dir.resolve("flatmon"),
        Services.applicationId("sasl"), 1, clientConfig))) {
      System.out.println("SaslTest: service on the SASL broker up in " + Services.since(t0));
      Properties client = kafka.clientProperties();
      try (KafkaProducer<String, byte[]> producer = TelemetryFixtures.producer(client)) {
        TelemetryFixtures.produce(producer, TelemetryFixtures.messages(run));
      }
      List<FlatnessResult> finals;
      try (ResultsReader results = ResultsReader.results(client)) {
        results.pollUntil(r -> r.finalCount() >= expectedFinals, Duration.ofSeconds(90),
            () -> results.finalCount() + " of " + expectedFinals + " finals");
        results.drainToEnd(Duration.ofSeconds(20));
        finals = results.finals();
      }
      assertEquals(expectedFinals, finals.size());
      TelemetryFixtures.assertFinalsEqualOffline(
          TelemetryFixtures.offline(TelemetryFixtures.writeDelimited(dir.resolve("sasl.pb"), run)), finals);
    }
  }
}
