package io.flatmon.service.http;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.protobuf.util.JsonFormat;
import java.nio.charset.StandardCharsets;

/**
 * The query API's JSON: protobuf's JSON mapping of the messages in query.proto and results.proto,
 * with the proto field names, every field without presence printed (0, false, [] included), int64
 * as strings and Timestamps as RFC 3339.
 */
final class Json {
  private static final JsonFormat.Printer PRINTER = JsonFormat.printer().preservingProtoFieldNames()
      .alwaysPrintFieldsWithNoPresence().omittingInsignificantWhitespace();
  private static final JsonFormat.Parser PARSER = JsonFormat.parser().ignoringUnknownFields();

  private Json() {
  }

  static byte[] print(Message message) {
    try {
      return PRINTER.print(message).getBytes(StandardCharsets.UTF_8);
    } catch (InvalidProtocolBufferException e) {
      throw new IllegalStateException("cannot print " + message.getDescriptorForType().getFullName(), e);
    }
  }

  static <B extends Message.Builder> B parse(String json, B builder) throws InvalidProtocolBufferException {
    PARSER.merge(json, builder);
    return builder;
  }
}
