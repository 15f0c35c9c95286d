package io.flatmon.broker;

import io.flatmon.wire.Topics;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A real in-process KRaft broker: large records, persistence across restarts, SASL/PLAIN, shutdown time. */
class EmbeddedKafkaTest {

  private static final int RECORD_BYTES = 20 * 1024 * 1024;
  private static final long RETENTION_MS = 7L * 24 * 3600 * 1000;
  private static final Duration MAX_CLOSE = Duration.ofSeconds(10);

  @Test
  void largeRecordSurvivesRestartOnSameDataDir(@TempDir Path dir) throws Exception {
    byte[] payload = new byte[RECORD_BYTES];
    new Random(42).nextBytes(payload); // incompressible, like float weights
    Path dataDir = dir.resolve("kafka");
    RecordMetadata written;

    EmbeddedKafka kafka = EmbeddedKafka.builder().dataDir(dataDir).build().start();
    try {
      assertTrue(Files.exists(dataDir.resolve("meta.properties")));
      try (Admin admin = Admin.create(kafka.clientProperties())) {
        Set<String> created = TopicSetup.ensure(admin, 2, (short) 1, RETENTION_MS,
            Map.of(Topics.DEAD_LETTER, -1L));
        assertEquals(Set.copyOf(Topics.ALL), created);
        assertEquals(Set.of(), TopicSetup.ensure(admin, 2, (short) 1, RETENTION_MS), "idempotent");
        Config dlq = describe(admin, Topics.DEAD_LETTER);
        assertEquals("-1", dlq.get("retention.ms").value());
        assertEquals(Long.toString(RETENTION_MS), describe(admin, Topics.TELEMETRY).get("retention.ms").value());
      }
      try (KafkaProducer<String, byte[]> producer = producer(kafka.clientProperties())) {
        written = producer.send(new ProducerRecord<>(Topics.TELEMETRY, "run-1", payload)).get();
      }
      ConsumerRecord<String, byte[]> read = readOne(kafka.clientProperties(), written, null);
      assertEquals("run-1", read.key());
      assertArrayEquals(payload, read.value());
    } finally {
      assertClosesQuickly(kafka);
    }

    try (EmbeddedKafka again = EmbeddedKafka.builder().dataDir(dataDir).build()) {
      again.start();
      try (Admin admin = Admin.create(again.clientProperties())) {
        assertTrue(admin.listTopics().names().get().containsAll(Topics.ALL));
        Config telemetry = describe(admin, Topics.TELEMETRY);
        assertEquals(Integer.toString(Topics.MAX_MESSAGE_BYTES), telemetry.get("max.message.bytes").value());
        assertEquals("zstd", telemetry.get("compression.type").value());
        assertEquals(Set.of(), TopicSetup.ensure(admin, 2, (short) 1, RETENTION_MS), "topics persisted");
      }
      // Through a consumer group this time: exercises the offsets topic of the restarted broker.
      ConsumerRecord<String, byte[]> read = readOne(again.clientProperties(), written, "restart-check");
      assertArrayEquals(payload, read.value());
      assertClosesQuickly(again);
    }
  }

  @Test
  void saslPlainAcceptsRightAndRejectsWrongPassword(@TempDir Path dir) throws Exception {
    Map<String, String> users = Map.of("flatmon", "s3cr\"et pw");
    EmbeddedKafka kafka = EmbeddedKafka.builder().dataDir(dir).saslUsers(users).build().start();
    try {
      Properties good = kafka.clientProperties("flatmon");
      assertEquals("SASL_PLAINTEXT", good.get("security.protocol"));
      try (Admin admin = Admin.create(good)) {
        assertEquals(Set.copyOf(Topics.ALL), TopicSetup.ensure(admin, 1, (short) 1, RETENTION_MS));
      }
      byte[] value = "hello".getBytes(StandardCharsets.UTF_8);
      RecordMetadata md;
      try (KafkaProducer<String, byte[]> producer = producer(good)) {
        md = producer.send(new ProducerRecord<>(Topics.SIGNALS, "run-1", value)).get();
      }
      assertArrayEquals(value, readOne(good, md, null).value());

      Properties bad = kafka.clientProperties("flatmon", "wrong");
      bad.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
      bad.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
      long t0 = System.nanoTime();
      try (Admin admin = Admin.create(bad)) {
        ExecutionException e = assertThrows(ExecutionException.class,
            () -> admin.describeCluster().nodes().get());
        SaslAuthenticationException sae = assertInstanceOf(SaslAuthenticationException.class, e.getCause());
        assertTrue(sae.getMessage().contains("Invalid username or password"), sae.getMessage());
        // TopicSetup passes the Kafka exception through unwrapped.
        assertThrows(SaslAuthenticationException.class, () -> TopicSetup.ensure(admin, 1, (short) 1, RETENTION_MS));
      }
      double seconds = (System.nanoTime() - t0) / 1e9;
      System.out.printf("wrong password rejected in %.2f s%n", seconds);
      assertTrue(seconds < 5, "wrong password took " + seconds + " s to fail");
    } finally {
      assertClosesQuickly(kafka);
    }
  }

  @Test
  void childProcessPrintsReadyAndStopsOnSigterm(@TempDir Path dir) throws Exception {
    try (BrokerProcess broker = BrokerProcess.start(dir.resolve("kafka"), 0, Map.of(), dir.resolve("broker.log"),
        Duration.ofSeconds(60))) {
      assertTrue(broker.bootstrapServers().startsWith("127.0.0.1:"), broker.bootstrapServers());
      Properties props = new Properties();
      props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrapServers());
      try (Admin admin = Admin.create(props)) {
        assertEquals(1, admin.describeCluster().nodes().get().size());
      }
      long t0 = System.nanoTime();
      int code = broker.stop(Duration.ofSeconds(20));
      double seconds = (System.nanoTime() - t0) / 1e9;
      // Process.destroy() sends SIGTERM and closes the child's stdin: either ends it cleanly (143 after
      // SIGTERM, 0 after stdin EOF with --exit-on-stdin-eof), whichever the child sees first.
      assertTrue(code == 143 || code == 0, "exit code " + code);
      assertTrue(seconds < MAX_CLOSE.toSeconds(), "SIGTERM shutdown took " + seconds + " s");
      String log = Files.readString(dir.resolve("broker.log"));
      assertTrue(log.contains("stopped in"), log);
    }
  }

  @Test
  void parsesSaslUsers() {
    assertEquals(Map.of("a", "x:y", "b", "2"), EmbeddedKafka.parseUsers("a:x:y,b:2"));
    assertThrows(IllegalArgumentException.class, () -> EmbeddedKafka.parseUsers("nocolon"));
  }

  private static Config describe(Admin admin, String topic) throws Exception {
    ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
    Config c = admin.describeConfigs(List.of(r)).all().get().get(r);
    assertNotNull(c);
    return c;
  }

  private static KafkaProducer<String, byte[]> producer(Properties client) {
    Properties p = new Properties();
    p.putAll(client);
    p.putAll(Topics.largeMessageProducerConfig());
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    return new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer());
  }

  /** Reads the record at {@code md}'s offset, by assignment or (with a group id) by subscription. */
  private static ConsumerRecord<String, byte[]> readOne(Properties client, RecordMetadata md, String groupId) {
    Properties p = new Properties();
    p.putAll(client);
    p.putAll(Topics.largeMessageConsumerConfig());
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    if (groupId != null) {
      p.put(ConsumerConfig.GROUP_ID_CONFIG, groupId);
    }
    TopicPartition tp = new TopicPartition(md.topic(), md.partition());
    try (KafkaConsumer<String, byte[]> consumer =
        new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer())) {
      if (groupId != null) {
        consumer.subscribe(List.of(md.topic()));
      } else {
        consumer.assign(List.of(tp));
        consumer.seek(tp, md.offset());
      }
      long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
      while (System.nanoTime() < deadline) {
        for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(200))) {
          if (r.partition() == md.partition() && r.offset() == md.offset()) {
            if (groupId != null) {
              consumer.commitSync();
            }
            return r;
          }
        }
      }
    }
    throw new AssertionError("record " + tp + "@" + md.offset() + " not read within 30 s");
  }

  private static void assertClosesQuickly(EmbeddedKafka kafka) {
    long t0 = System.nanoTime();
    kafka.close();
    double seconds = (System.nanoTime() - t0) / 1e9;
    System.out.printf("embedded broker started in %.1f s, closed in %.1f s%n",
        kafka.startupTime() == null ? Double.NaN : kafka.startupTime().toNanos() / 1e9, seconds);
    assertTrue(seconds < MAX_CLOSE.toSeconds(), "close() took " + seconds + " s");
  }
}
