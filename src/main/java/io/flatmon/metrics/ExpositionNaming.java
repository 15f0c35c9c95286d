package io.flatmon.metrics;

import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.config.MeterFilter;

/**
 * Adapts third-party meters (Kafka clients and Streams, JVM process) so the whole exposition passes
 * Prometheus' own lint (`promtool check metrics`): non-counter gauges do not end in _count, and every
 * meter has help text. Meters measured in ns/µs/ms (Kafka's io/wait times in ns, start time in ms) are
 * dropped rather than exported under a misleading base unit: their *_ratio siblings carry the same
 * information, and flatmon's own latencies are histograms in seconds.
 */
final class ExpositionNaming implements MeterFilter {
  private static final java.util.Set<String> SUB_SECOND_UNITS = java.util.Set.of("ns", "us", "ms");

  @Override
  public io.micrometer.core.instrument.config.MeterFilterReply accept(Meter.Id id) {
    if (id.getBaseUnit() != null && SUB_SECOND_UNITS.contains(id.getBaseUnit())) {
      return io.micrometer.core.instrument.config.MeterFilterReply.DENY;
    }
    for (String token : id.getName().split("[._-]")) {
      if (SUB_SECOND_UNITS.contains(token)) {
        return io.micrometer.core.instrument.config.MeterFilterReply.DENY;
      }
    }
    return io.micrometer.core.instrument.config.MeterFilterReply.NEUTRAL;
  }

  @Override
  public Meter.Id map(Meter.Id id) {
    String name = rename(id.getName(), id.getType());
    String description = id.getDescription();
    if (description == null || description.isBlank()) {
      description = name.replace('.', ' ').replace('-', ' ');
    }
    if (name.equals(id.getName()) && description.equals(id.getDescription())) {
      return id;
    }
    return new Meter.Id(name, io.micrometer.core.instrument.Tags.of(id.getTags()), id.getBaseUnit(), description,
        id.getType());
  }

  static String rename(String name, Meter.Type type) {
    String renamed = name;
    boolean distribution = type == Meter.Type.TIMER || type == Meter.Type.DISTRIBUTION_SUMMARY
        || type == Meter.Type.LONG_TASK_TIMER;
    if (!distribution && type != Meter.Type.COUNTER && (renamed.endsWith(".count") || renamed.endsWith("_count"))) {
      renamed = renamed.substring(0, renamed.length() - "count".length()) + "number";
    }
    return renamed;
  }
}
