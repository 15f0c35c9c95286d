package io.flatmon.broker;

import io.flatmon.wire.Topics;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Creates the {@link Topics flatmon topics} that are missing; idempotent and safe to run from several
 * instances at once (a topic another instance created in the meantime counts as existing).
 *
 * <p>Every created topic gets:
 *
 * <ul>
 *   <li>the same partition count: all topics are keyed by run id, so equal counts keep them
 *       co-partitioned (a run's telemetry, results and signals live in the same partition number),
 *       and the partition count bounds how many Streams instances share the work;
 *   <li>{@code max.message.bytes} = 64 MiB and {@code compression.type} = zstd (why: {@link Topics});
 *   <li>{@code retention.ms}: one value for all, or per topic via {@code retentionOverrides} (e.g. a
 *       longer one for results and dead-letter, which are small and worth keeping, and a short one for
 *       telemetry, which is bulky and only needed until processed); {@code cleanup.policy} stays
 *       {@code delete};
 *   <li>{@code min.insync.replicas} = 2 when the replication factor is at least 3 (an acknowledged
 *       write survives one broker loss, and exactly-once commits need acks=all to mean something);
 *       otherwise the broker default.
 * </ul>
 *
 * <p>Existing topics are never altered (their owner may have tuned them); a warning is logged when
 * their partition count differs from the requested one or their {@code max.message.bytes} is below
 * 64 MiB, since large snapshots would then be rejected.
 */
public final class TopicSetup {

  private static final Logger LOG = LoggerFactory.getLogger(TopicSetup.class);

  /** How long a just-created topic may stay unknown to the broker before its check is skipped. */
  private static final long CHECK_WAIT_MS = 10_000;

  private TopicSetup() {}

  /**
   * {@link #ensure(Admin, int, short, long, Map)} with one retention for all topics.
   *
   * @return the topics created by this call
   */
  public static Set<String> ensure(Admin admin, int partitions, short replicationFactor, long retentionMs) {
    return ensure(admin, partitions, replicationFactor, retentionMs, Map.of());
  }

  /**
   * Creates the missing flatmon topics.
   *
   * @param partitions partitions of every topic (&gt; 0)
   * @param replicationFactor replication factor, or &le; 0 for the broker's {@code
   *     default.replication.factor}
   * @param retentionMs default {@code retention.ms} (-1 = forever)
   * @param retentionOverrides topic name → {@code retention.ms}, for topics that need another one
   * @return the topics created by this call
   * @throws org.apache.kafka.common.KafkaException the broker's error (e.g. authentication,
   *     authorization, policy) as thrown by the Admin client
   */
  public static Set<String> ensure(Admin admin, int partitions, short replicationFactor, long retentionMs,
      Map<String, Long> retentionOverrides) {
    if (partitions <= 0) {
      throw new IllegalArgumentException("partitions must be > 0, got " + partitions);
    }
    for (String t : retentionOverrides.keySet()) {
      if (!Topics.ALL.contains(t)) {
        throw new IllegalArgumentException("retention override for unknown topic " + t);
      }
    }
    Set<String> existing = await(admin.listTopics().names());
    List<NewTopic> toCreate = new ArrayList<>();
    for (String name : Topics.ALL) {
      if (!existing.contains(name)) {
        toCreate.add(newTopic(name, partitions, replicationFactor,
            retentionOverrides.getOrDefault(name, retentionMs)));
      }
    }
    Set<String> created = new LinkedHashSet<>();
    if (!toCreate.isEmpty()) {
      Map<String, KafkaFuture<Void>> results = admin.createTopics(toCreate).values();
      for (Map.Entry<String, KafkaFuture<Void>> e : results.entrySet()) {
        try {
          e.getValue().get();
          created.add(e.getKey());
        } catch (ExecutionException ex) {
          if (!(ex.getCause() instanceof TopicExistsException)) {
            throw rethrow(ex);
          }
        } catch (InterruptedException ex) {
          Thread.currentThread().interrupt();
          throw new IllegalStateException("interrupted while creating topics", ex);
        }
      }
      if (!created.isEmpty()) {
        LOG.info("created topics {} ({} partitions, replication factor {}, zstd, max.message.bytes {})",
            created, partitions, replicationFactor > 0 ? replicationFactor : "broker default",
            Topics.MAX_MESSAGE_BYTES);
      }
    }
    List<String> preexisting = new ArrayList<>(Topics.ALL);
    preexisting.removeAll(created);
    if (!preexisting.isEmpty()) {
      checkExistingWhenKnown(admin, preexisting, partitions);
    }
    return created;
  }

  /**
   * {@link #checkExisting}, retried while the broker does not know a topic yet: a topic another
   * instance has just created (ours got TopicExistsException from the controller) reaches the
   * broker's metadata a moment later, and describing it before then fails with
   * UnknownTopicOrPartitionException. The check only warns, so after {@link #CHECK_WAIT_MS} it is
   * skipped with a warning rather than failing the start.
   */
  private static void checkExistingWhenKnown(Admin admin, Collection<String> names, int partitions) {
    long deadline = System.nanoTime() + CHECK_WAIT_MS * 1_000_000L;
    while (true) {
      try {
        checkExisting(admin, names, partitions);
        return;
      } catch (UnknownTopicOrPartitionException e) {
        if (System.nanoTime() > deadline) {
          LOG.warn("could not check the existing topics {}: {}", names, e.getMessage());
          return;
        }
        try {
          Thread.sleep(100);
        } catch (InterruptedException ie) {
          Thread.currentThread().interrupt();
          throw new IllegalStateException("interrupted while checking topics", ie);
        }
      }
    }
  }

  private static NewTopic newTopic(String name, int partitions, short replicationFactor, long retentionMs) {
    Map<String, String> configs = new HashMap<>();
    configs.put(TopicConfig.MAX_MESSAGE_BYTES_CONFIG, Integer.toString(Topics.MAX_MESSAGE_BYTES));
    configs.put(TopicConfig.COMPRESSION_TYPE_CONFIG, Topics.COMPRESSION);
    // The level the broker compresses at when it must (a producer using another codec); it keeps
    // zstd batches as they come whatever their level.
    configs.put(TopicConfig.COMPRESSION_ZSTD_LEVEL_CONFIG, Integer.toString(Topics.ZSTD_LEVEL));
    configs.put(TopicConfig.RETENTION_MS_CONFIG, Long.toString(retentionMs));
    configs.put(TopicConfig.CLEANUP_POLICY_CONFIG, TopicConfig.CLEANUP_POLICY_DELETE);
    if (replicationFactor >= 3) {
      configs.put(TopicConfig.MIN_IN_SYNC_REPLICAS_CONFIG, "2");
    }
    NewTopic t = new NewTopic(name, Optional.of(partitions),
        replicationFactor > 0 ? Optional.of(replicationFactor) : Optional.empty());
    return t.configs(configs);
  }

  private static void checkExisting(Admin admin, Collection<String> names, int partitions) {
    Map<String, TopicDescription> descriptions = await(admin.describeTopics(names).allTopicNames());
    for (TopicDescription d : descriptions.values()) {
      if (d.partitions().size() != partitions) {
        LOG.warn("existing topic {} has {} partitions, not the configured {}; left as is", d.name(),
            d.partitions().size(), partitions);
      }
    }
    List<ConfigResource> resources = new ArrayList<>();
    for (String n : names) {
      resources.add(new ConfigResource(ConfigResource.Type.TOPIC, n));
    }
    Map<ConfigResource, Config> configs = await(admin.describeConfigs(resources).all());
    for (Map.Entry<ConfigResource, Config> e : configs.entrySet()) {
      ConfigEntry max = e.getValue().get(TopicConfig.MAX_MESSAGE_BYTES_CONFIG);
      if (max != null && max.value() != null) {
        try {
          if (Long.parseLong(max.value()) < Topics.MAX_MESSAGE_BYTES) {
            LOG.warn("existing topic {} has max.message.bytes {} < {}: records above that size will be"
                + " rejected; left as is", e.getKey().name(), max.value(), Topics.MAX_MESSAGE_BYTES);
          }
        } catch (NumberFormatException ignored) {
          // not a number: nothing to compare
        }
      }
    }
  }

  private static <T> T await(KafkaFuture<T> f) {
    try {
      return f.get();
    } catch (ExecutionException e) {
      throw rethrow(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while talking to Kafka", e);
    }
  }

  private static RuntimeException rethrow(ExecutionException e) {
    if (e.getCause() instanceof RuntimeException re) {
      return re;
    }
    return new IllegalStateException(e.getCause() != null ? e.getCause() : e);
  }
}
