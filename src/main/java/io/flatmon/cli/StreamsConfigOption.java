package io.flatmon.cli;

import java.util.LinkedHashMap;
import java.util.Map;
import picocli.CommandLine.Option;

/**
 * {@code --streams-config KEY=VALUE} of the bench commands that start a flatmon instance (a picocli
 * mixin): Kafka Streams or client properties over flatmon's own, to measure a setting's cost beside
 * the default in one session.
 */
final class StreamsConfigOption {
  @Option(names = "--streams-config", paramLabel = "KEY=VALUE", description =
      "Kafka Streams property for the flatmon instance, for example commit.interval.ms=500 (repeatable; "
          + "default: the service's own settings).")
  Map<String, String> values = new LinkedHashMap<>();

  Map<String, Object> asMap() {
    return Map.copyOf(values);
  }
}
