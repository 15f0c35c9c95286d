package io.flatmon.stream;

import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.Rejected;
import io.flatmon.wire.Topics;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.streams.errors.DeserializationExceptionHandler;
import org.apache.kafka.streams.errors.ErrorHandlerContext;
import org.apache.kafka.streams.errors.ProcessingExceptionHandler;
import org.apache.kafka.streams.errors.ProductionExceptionHandler;
import org.apache.kafka.streams.processor.api.Record;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Kafka Streams' handler for a record whose processing, deserialization or output fails outside
 * what {@link TelemetryProcessor} catches itself (a state store or changelog error, an output record
 * the producer refuses): the record goes to the dead-letter topic once, as INTERNAL_ERROR with the
 * failure and its source topic/partition/offset, in the same transaction as the input offset, and
 * processing resumes with the next record. The default handlers would stop the stream thread, and a
 * replaced thread would replay the same record and fail again, for ever.
 *
 * <p>Counted through the {@link TopologyListener} given as {@value #LISTENER_CONFIG} in the
 * Streams properties, when there is one.
 */
public final class DeadLetterExceptionHandler
    implements ProcessingExceptionHandler, DeserializationExceptionHandler, ProductionExceptionHandler {
  /** Streams property holding the {@link TopologyListener} that counts the rejections. */
  public static final String LISTENER_CONFIG = "flatmon.dead-letter.listener";
  private static final Logger LOG = LoggerFactory.getLogger(DeadLetterExceptionHandler.class);

  private TopologyListener listener = TopologyListener.NONE;

  @Override
  public void configure(Map<String, ?> configs) {
    if (configs.get(LISTENER_CONFIG) instanceof TopologyListener l) {
      listener = l;
    }
  }

  @Override
  public ProcessingExceptionHandler.Response handleError(ErrorHandlerContext context, Record<?, ?> record,
      Exception exception) {
    return ProcessingExceptionHandler.Response.resume(deadLetter(context, "processing", exception));
  }

  @Override
  public DeserializationExceptionHandler.Response handleError(ErrorHandlerContext context,
      ConsumerRecord<byte[], byte[]> record, Exception exception) {
    return DeserializationExceptionHandler.Response.resume(deadLetter(context, "deserialization", exception));
  }

  @Override
  public ProductionExceptionHandler.Response handleError(ErrorHandlerContext context,
      ProducerRecord<byte[], byte[]> record, Exception exception) {
    if (Topics.DEAD_LETTER.equals(record.topic())) {
      // A dead letter that cannot be written is dropped (and logged), not dead-lettered again.
      LOG.error("cannot write a dead-letter record for {}; dropping it", coordinates(context), exception);
      return ProductionExceptionHandler.Response.resume();
    }
    return ProductionExceptionHandler.Response.resume(deadLetter(context, "writing its output to "
        + record.topic(), exception));
  }

  @Override
  @SuppressWarnings("rawtypes")
  public ProductionExceptionHandler.Response handleSerializationError(ErrorHandlerContext context,
      ProducerRecord record, Exception exception, SerializationExceptionOrigin origin) {
    return ProductionExceptionHandler.Response.resume(deadLetter(context, "serializing its output", exception));
  }

  private List<ProducerRecord<byte[], byte[]>> deadLetter(ErrorHandlerContext context, String stage,
      Exception exception) {
    byte[] key = context.sourceRawKey();
    byte[] value = context.sourceRawValue();
    String runId = key == null ? "" : new String(key, StandardCharsets.UTF_8);
    LOG.error("internal error {} record {} of run '{}'; sending it to the dead-letter topic as INTERNAL_ERROR",
        stage, coordinates(context), runId, exception);
    Rejected.Builder r = Rejected.newBuilder()
        .setReason(RejectReason.INTERNAL_ERROR)
        .setDetail("internal error " + stage + ": " + exception)
        .setRunId(runId)
        .setRecordSizeBytes(value == null ? 0 : value.length)
        .setRejectedTimeMicros(System.currentTimeMillis() * 1000L);
    if (context.topic() != null) {
      r.setSourceTopic(context.topic()).setSourcePartition(context.partition()).setSourceOffset(context.offset());
    }
    listener.onRejected(RejectReason.INTERNAL_ERROR);
    return List.of(new ProducerRecord<>(Topics.DEAD_LETTER, null, context.timestamp(), key, r.build().toByteArray()));
  }

  private static String coordinates(ErrorHandlerContext context) {
    return context.topic() + "/" + context.partition() + "@" + context.offset();
  }
}
