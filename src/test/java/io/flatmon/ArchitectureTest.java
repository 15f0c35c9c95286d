package io.flatmon;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.classes;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.fields;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.Architectures.layeredArchitecture;
import static com.tngtech.archunit.library.dependencies.SlicesRuleDefinition.slices;

import com.tngtech.archunit.core.importer.ImportOption;
import com.tngtech.archunit.junit.AnalyzeClasses;
import com.tngtech.archunit.junit.ArchTest;
import com.tngtech.archunit.lang.ArchRule;

/**
 * The package graph of docs/ARCHITECTURE.md ("Packages"), checked on the compiled main classes:
 * every package depends only on the packages listed for it, so nothing imports upward, and the
 * libraries each layer may see are restricted where the architecture promises it (the engine knows no
 * Kafka, the trainer client no engine or ND4J, the early-stopping detector no I/O).
 */
@AnalyzeClasses(packages = "io.flatmon", importOptions = ImportOption.DoNotIncludeTests.class)
class ArchitectureTest {

  @ArchTest
  static final ArchRule packageGraph = layeredArchitecture().consideringOnlyDependenciesInLayers()
      .layer("proto").definedBy("io.flatmon.proto..")
      .layer("wire").definedBy("io.flatmon.wire..")
      .layer("engine").definedBy("io.flatmon.engine..")
      .layer("schema").definedBy("io.flatmon.schema..")
      .layer("signal").definedBy("io.flatmon.signal..")
      .layer("client").definedBy("io.flatmon.client..")
      .layer("trainer").definedBy("io.flatmon.trainer..")
      .layer("stream").definedBy("io.flatmon.stream..")
      .layer("metrics").definedBy("io.flatmon.metrics..")
      .layer("broker").definedBy("io.flatmon.broker..")
      .layer("web").definedBy("io.flatmon.web..")
      .layer("service").definedBy("io.flatmon.service..")
      .layer("bench").definedBy("io.flatmon.bench..")
      .layer("cli").definedBy("io.flatmon.cli..")
      .whereLayer("proto").mayNotAccessAnyLayer()
      .whereLayer("wire").mayOnlyAccessLayers("proto")
      .whereLayer("engine").mayOnlyAccessLayers("proto")
      .whereLayer("schema").mayOnlyAccessLayers("engine", "wire", "proto")
      .whereLayer("signal").mayOnlyAccessLayers("proto")
      .whereLayer("client").mayOnlyAccessLayers("wire", "proto")
      .whereLayer("trainer").mayOnlyAccessLayers("client", "schema", "engine", "wire", "proto")
      .whereLayer("stream").mayOnlyAccessLayers("signal", "schema", "engine", "wire", "proto")
      .whereLayer("metrics").mayOnlyAccessLayers("stream", "engine", "proto")
      .whereLayer("broker").mayOnlyAccessLayers("wire")
      .whereLayer("web").mayOnlyAccessLayers("wire", "proto")
      .whereLayer("service").mayOnlyAccessLayers("web", "metrics", "stream", "broker", "signal", "schema", "engine",
          "wire", "proto")
      .whereLayer("bench").mayOnlyAccessLayers("schema", "engine", "wire", "proto")
      .whereLayer("cli").mayOnlyAccessLayers("service", "web", "metrics", "stream", "broker", "bench", "signal",
          "schema", "engine", "wire", "proto");

  @ArchTest
  static final ArchRule packagesFormNoCycles = slices().matching("io.flatmon.(*)..").should().beFreeOfCycles();

  @ArchTest
  static final ArchRule engineKnowsNoKafkaMetricsOrCommandLine = noClasses().that()
      .resideInAPackage("io.flatmon.engine..").should().dependOnClassesThat()
      .resideInAnyPackage("org.apache.kafka..", "kafka..", "io.micrometer..", "io.prometheus..", "picocli..",
          "com.sun.net.httpserver..", "java.net..");

  @ArchTest
  static final ArchRule clientKnowsOnlyTheWireSchemaAndKafkaClients = classes().that()
      .resideInAPackage("io.flatmon.client..").should().onlyDependOnClassesThat()
      .resideInAnyPackage("io.flatmon.client..", "io.flatmon.wire..", "io.flatmon.proto..", "com.google.protobuf..",
          "org.apache.kafka.clients..", "org.apache.kafka.common..", "java..");

  @ArchTest
  static final ArchRule wireKnowsOnlyProtobufAndKafkaClientSettings = classes().that()
      .resideInAPackage("io.flatmon.wire..").should().onlyDependOnClassesThat()
      .resideInAnyPackage("io.flatmon.wire..", "io.flatmon.proto..", "com.google.protobuf..",
          "org.apache.kafka.clients..", "java..");

  /** StopDetector is a function of (policy, state, step, value): no I/O, no clock, no Kafka. */
  @ArchTest
  static final ArchRule signalIsAPureFunctionOfResults = classes().that()
      .resideInAPackage("io.flatmon.signal..").should().onlyDependOnClassesThat()
      .resideInAnyPackage("io.flatmon.signal..", "io.flatmon.proto..", "com.google.protobuf..", "java.lang..",
          "java.util..");

  @ArchTest
  static final ArchRule signalReadsNoClockOrEnvironment = noClasses().that().resideInAPackage("io.flatmon.signal..")
      .should().dependOnClassesThat().belongToAnyOf(System.class, Runtime.class, Thread.class, ProcessHandle.class);

  @ArchTest
  static final ArchRule signalHoldsNoMutableState = fields().that().areDeclaredInClassesThat()
      .resideInAPackage("io.flatmon.signal..").should().beFinal();
}
