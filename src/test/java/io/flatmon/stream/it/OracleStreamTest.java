package io.flatmon.stream.it;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.flatmon.proto.v1.OracleCase;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.service.FlatmonService;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The oracle fixtures (src/test/resources/oracle/cases.pb) produced to a real broker and measured by
 * the running service: every final result equals expected.pb — PyTorch float64 autograd, or 50-digit
 * mpmath on confident cases — at the engine's documented tolerance (1e-5, 1e-4 confident), relative
 * with no floor. The expected values come from outside flatmon.
 */
class OracleStreamTest {
  @TempDir
  Path dir;

  @Test
  void streamedFinalsOfTheFixturesEqualTheOracle() throws Exception {
    List<TelemetryRecord> records = OracleFixtures.records();
    Map<String, OracleCase> expected = OracleFixtures.expected();
    long t0 = System.nanoTime();
    try (FlatmonService service = Services.start(Services.config(null, dir.resolve("flatmon"),
        Services.applicationId("oracle"), 2, Map.of()))) {
      var client = Services.bootstrap(service.bootstrapServers());
      try (KafkaProducer<String, byte[]> producer = TelemetryFixtures.producer(client)) {
        TelemetryFixtures.produce(producer, TelemetryFixtures.messages(records));
      }
      try (ResultsReader results = ResultsReader.results(client)) {
        results.pollUntil(r -> r.finalCount() >= expected.size(), Duration.ofSeconds(120),
            () -> results.finalCount() + " of " + expected.size() + " finals");
        results.drainToEnd(Duration.ofSeconds(10));
        System.out.println("OracleStreamTest: " + expected.size() + " fixture cases measured through the broker in "
            + Services.since(t0));
        OracleFixtures.assertFinalsMatch(expected, results.finals());
      }
      try (ResultsReader dead = ResultsReader.deadLetter(client)) {
        dead.drainToEnd(Duration.ofSeconds(10));
        assertEquals(List.of(), dead.rejected(), "nothing rejected");
      }
    }
  }
}
