package io.flatmon.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.cli.FlatmonCommand;
import java.io.IOException;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.constructor.SafeConstructor;
import picocli.CommandLine;

/**
 * Everything under deploy/ that can be checked without Docker, Kubernetes or Grafana: Prometheus
 * configs and rules with promtool (rules unit-tested too), every YAML file parses, the compose stack,
 * Kubernetes manifests and Grafana provisioning are consistent with each other and with the
 * repository, and every `flatmon` command line in them is accepted by the real CLI parser.
 */
class DeployConfigTest {
  private static final Path DEPLOY = Path.of("deploy");
  private static final Pattern K8S_VAR = Pattern.compile("\\$\\(([A-Z_][A-Z0-9_]*)\\)");

  @TempDir
  Path tmp;

  @Test
  void prometheusConfigsPassPromtool() throws IOException {
    List<Path> configs = files(p -> p.getFileName().toString().matches("prometheus.*\\.ya?ml"));
    assertTrue(configs.size() >= 3, "prometheus configs for local, compose and k8s: " + configs);
    List<String> failures = new ArrayList<>();
    for (Path config : configs) {
      Prometheus.Result r = promtool("check", "config", config.toString());
      if (r.exitCode() != 0 && r.output().contains("field kubernetes_sd_configs not found")) {
        // Debian's Prometheus is built without Kubernetes discovery: check the rest of the file with a
        // static target in its place (same relative rule_files path).
        r = checkWithoutKubernetesDiscovery(config);
      }
      if (r.exitCode() != 0) {
        failures.add(config + ":\n" + r.output());
      }
    }
    assertEquals(List.of(), failures, String.join("\n", failures));
  }

  @Test
  void alertingRulesPassPromtoolAndTheirUnitTests() {
    Prometheus.Result check = promtool("check", "rules", DEPLOY.resolve("prometheus/flatmon-rules.yml").toString());
    assertEquals(0, check.exitCode(), check.output());
    Prometheus.Result test = Prometheus.run(List.of(Prometheus.binary("promtool").toString(), "test", "rules",
        "flatmon-rules.test.yml"), null, DEPLOY.resolve("prometheus"), Duration.ofSeconds(60));
    assertEquals(0, test.exitCode(), test.output());
  }

  @Test
  void localScrapeConfigScrapesFlatmonEveryFiveSeconds() throws IOException {
    Map<String, Object> config = map(yaml(DEPLOY.resolve("local/prometheus.yml")).get(0));
    Map<String, Object> job = map(list(config.get("scrape_configs")).get(0));
    assertEquals("flatmon", job.get("job_name"), "the rules expect job=\"flatmon\"");
    Object interval = job.getOrDefault("scrape_interval", map(config.get("global")).get("scrape_interval"));
    assertEquals("5s", interval);
    assertEquals(List.of("127.0.0.1:9404"), map(list(job.get("static_configs")).get(0)).get("targets"));

    Path script = DEPLOY.resolve("local/run.sh");
    assertTrue(Files.isExecutable(script), script + " is executable");
    Prometheus.Result syntax = Prometheus.run(List.of("bash", "-n", script.toString()), null, null,
        Duration.ofSeconds(10));
    assertEquals(0, syntax.exitCode(), syntax.output());
    String text = Files.readString(script);
    assertTrue(text.contains("bin/flatmon\" serve") && text.contains("--http-port 9404"), "starts flatmon serve");
    assertTrue(text.contains("prometheus.yml") && text.contains("--storage.tsdb.path"), "starts prometheus");
    assertTrue(text.contains("trap"), "stops both on Ctrl-C");
  }

  /** deploy/local/feed.sh runs DemoFeed.java as a single-file program: it must compile against the code. */
  @Test
  void demoFeedCompilesAgainstTheCurrentCode() {
    javax.tools.JavaCompiler javac = javax.tools.ToolProvider.getSystemJavaCompiler();
    assertNotNull(javac, "tests run on a JDK");
    java.io.ByteArrayOutputStream err = new java.io.ByteArrayOutputStream();
    int rc = javac.run(null, null, err, "-d", tmp.resolve("classes").toString(), "-cp",
        System.getProperty("java.class.path"), "-Xlint:all,-path", "-Werror",
        DEPLOY.resolve("local/DemoFeed.java").toString());
    assertEquals(0, rc, err.toString(StandardCharsets.UTF_8));
    Prometheus.Result syntax = Prometheus.run(List.of("bash", "-n", DEPLOY.resolve("local/feed.sh").toString()), null,
        null, Duration.ofSeconds(10));
    assertEquals(0, syntax.exitCode(), syntax.output());
    assertTrue(Files.isExecutable(DEPLOY.resolve("local/feed.sh")));
  }

  @Test
  void everyYamlFileParses() throws IOException {
    List<Path> yamls = files(p -> p.getFileName().toString().matches(".*\\.ya?ml"));
    assertTrue(yamls.size() >= 12, "" + yamls);
    List<String> failures = new ArrayList<>();
    for (Path p : yamls) {
      try {
        List<Object> docs = yaml(p);
        if (docs.isEmpty() || docs.stream().anyMatch(d -> !(d instanceof Map))) {
          failures.add(p + ": not a mapping document");
        }
      } catch (RuntimeException e) {
        failures.add(p + ": " + e.getMessage());
      }
    }
    assertEquals(List.of(), failures, String.join("\n", failures));
  }

  @Test
  void grafanaProvisioningIsUsable() throws IOException {
    Map<String, Object> ds = map(yaml(DEPLOY.resolve("grafana/provisioning/datasources/flatmon.yaml")).get(0));
    assertEquals(1, ds.get("apiVersion"));
    Map<String, Object> source = map(list(ds.get("datasources")).get(0));
    assertEquals("prometheus", source.get("type"));
    assertEquals("flatmon-prometheus", source.get("uid"), "a fixed uid");
    assertEquals("http://localhost:9090", source.get("url"));
    assertEquals("proxy", source.get("access"));

    Map<String, Object> composeDs = map(yaml(DEPLOY.resolve("compose/grafana/datasources/flatmon.yaml")).get(0));
    Map<String, Object> composeSource = map(list(composeDs.get("datasources")).get(0));
    assertEquals(source.get("uid"), composeSource.get("uid"), "the compose datasource is the same datasource");
    assertEquals("http://prometheus:9090", composeSource.get("url"));

    Map<String, Object> dashboards = map(yaml(DEPLOY.resolve("grafana/provisioning/dashboards/flatmon.yaml")).get(0));
    assertEquals(1, dashboards.get("apiVersion"));
    Map<String, Object> provider = map(list(dashboards.get("providers")).get(0));
    assertEquals("file", provider.get("type"));
    String path = (String) map(provider.get("options")).get("path");
    assertNotNull(path);

    // The compose stack mounts the repository's dashboards where the provider reads them.
    Map<String, Object> grafana = map(map(compose().get("services")).get("grafana"));
    List<String> volumes = strings(grafana.get("volumes"));
    assertTrue(volumes.contains("../../dashboards:" + path + ":ro"), volumes + " mounts dashboards/ at " + path);
    assertTrue(volumes.contains("../grafana/provisioning/dashboards:/etc/grafana/provisioning/dashboards:ro"),
        "" + volumes);
    assertTrue(volumes.contains("./grafana/datasources:/etc/grafana/provisioning/datasources:ro"), "" + volumes);
  }

  @Test
  void composeStackIsConsistent() throws IOException {
    Map<String, Object> services = map(compose().get("services"));
    for (String s : List.of("kafka", "flatmon-1", "flatmon-2", "prometheus", "grafana")) {
      assertTrue(services.containsKey(s), "service " + s);
    }
    Map<String, Object> kafka = map(services.get("kafka"));
    assertTrue(((String) kafka.get("image")).startsWith("apache/kafka:"), "Kafka from apache/kafka");
    Map<String, Object> kafkaEnv = map(kafka.get("environment"));
    assertTrue(String.valueOf(kafkaEnv.get("KAFKA_PROCESS_ROLES")).contains("controller"), "KRaft");
    assertTrue(Long.parseLong(String.valueOf(kafkaEnv.get("KAFKA_MESSAGE_MAX_BYTES"))) >= 64L << 20,
        "the broker accepts flatmon's 64 MiB records");

    Path composeDir = DEPLOY.resolve("compose");
    List<String> targets = new ArrayList<>();
    for (String name : List.of("flatmon-1", "flatmon-2")) {
      Map<String, Object> s = map(services.get(name));
      Map<String, Object> build = map(s.get("build"));
      Path context = composeDir.resolve((String) build.get("context")).normalize();
      assertEquals(Path.of("").toAbsolutePath().normalize(), context.toAbsolutePath().normalize(),
          "built from the repository root");
      assertTrue(Files.isRegularFile(context.resolve((String) build.get("dockerfile"))));
      List<String> command = strings(s.get("command"));
      assertEquals("serve", command.get(0));
      parseFlatmon(command, name);
      int host = command.indexOf("--http-host");
      assertEquals(name, command.get(host + 1), name + " binds and advertises its compose host name");
      assertTrue(command.contains("kafka:9092"), "uses the compose Kafka");
      targets.add(name + ":" + command.get(command.indexOf("--http-port") + 1));
      assertNotNull(map(s.get("environment")).get("OMP_NUM_THREADS"));
    }
    Map<String, Object> prom = map(yaml(composeDir.resolve("prometheus.yml")).get(0));
    Map<String, Object> job = map(list(prom.get("scrape_configs")).get(0));
    assertEquals("flatmon", job.get("job_name"));
    assertEquals(targets, map(list(job.get("static_configs")).get(0)).get("targets"), "scrapes both instances");

    // Every bind mount's source exists.
    for (Map.Entry<String, Object> e : services.entrySet()) {
      for (String v : strings(map(e.getValue()).get("volumes"))) {
        String source = v.split(":")[0];
        if (source.startsWith(".")) {
          assertTrue(Files.exists(composeDir.resolve(source)), e.getKey() + ": " + v + " (missing source)");
        }
      }
    }

    // The Dockerfile builds on eclipse-temurin:17 from files that exist.
    String dockerfile = Files.readString(composeDir.resolve("Dockerfile"));
    assertTrue(dockerfile.contains("FROM eclipse-temurin:17"), "eclipse-temurin:17 base");
    Matcher copy = Pattern.compile("(?m)^COPY (?!--from)(\\S+)").matcher(dockerfile);
    while (copy.find()) {
      assertTrue(Files.exists(Path.of(copy.group(1))), "Dockerfile COPY source " + copy.group(1));
    }
    assertTrue(Files.isExecutable(composeDir.resolve("flatmon-entrypoint.sh")));
  }

  @Test
  void kubernetesManifestsAreConsistent() throws IOException {
    Path k8s = DEPLOY.resolve("k8s");
    Map<String, Object> kustomization = map(yaml(k8s.resolve("kustomization.yaml")).get(0));
    Map<String, Map<String, Object>> byKind = new java.util.HashMap<>();
    for (String resource : strings(kustomization.get("resources"))) {
      assertTrue(Files.isRegularFile(k8s.resolve(resource)), "kustomization resource " + resource);
      for (Object doc : yaml(k8s.resolve(resource))) {
        Map<String, Object> m = map(doc);
        assertNotNull(m.get("apiVersion"), resource);
        assertNotNull(map(m.get("metadata")).get("name"), resource);
        byKind.put((String) m.get("kind"), m);
      }
    }
    Map<String, Object> deployment = byKind.get("Deployment");
    Map<String, Object> service = byKind.get("Service");
    Map<String, Object> configMap = byKind.get("ConfigMap");
    assertNotNull(deployment);
    assertNotNull(service);
    assertNotNull(configMap);

    Map<String, Object> spec = map(deployment.get("spec"));
    assertEquals(3, spec.get("replicas"));
    Map<String, Object> template = map(spec.get("template"));
    Map<String, Object> podMeta = map(template.get("metadata"));
    Map<String, Object> podLabels = map(podMeta.get("labels"));
    assertEquals(map(map(spec.get("selector")).get("matchLabels")), podLabels, "selector matches the pod");
    assertEquals(podLabels, map(service.getOrDefault("spec", Map.of())).get("selector"), "service selects the pods");
    Map<String, Object> annotations = map(podMeta.get("annotations"));
    assertEquals("true", annotations.get("prometheus.io/scrape"));
    assertEquals("/metrics", annotations.get("prometheus.io/path"));

    Map<String, Object> pod = map(template.get("spec"));
    Map<String, Object> container = map(list(pod.get("containers")).get(0));
    Map<String, Object> port = map(list(container.get("ports")).get(0));
    assertEquals(annotations.get("prometheus.io/port"), String.valueOf(port.get("containerPort")),
        "the scrape annotation names the container port");
    Map<String, Object> readiness = map(map(container.get("readinessProbe")).get("httpGet"));
    assertEquals("/healthz", readiness.get("path"));
    assertTrue(readiness.get("port").equals(port.get("name")) || readiness.get("port").equals(port.get("containerPort")));
    Map<String, Object> svcPort = map(list(map(service.get("spec")).get("ports")).get(0));
    assertTrue(svcPort.get("targetPort").equals(port.get("name"))
        || svcPort.get("targetPort").equals(port.get("containerPort")), "service targets the container port");

    List<String> envNames = new ArrayList<>();
    for (Object e : list(container.get("env"))) {
      Map<String, Object> env = map(e);
      envNames.add((String) env.get("name"));
      Object from = env.get("valueFrom");
      if (from != null && map(from).containsKey("configMapKeyRef")) {
        Map<String, Object> ref = map(map(from).get("configMapKeyRef"));
        assertEquals(map(configMap.get("metadata")).get("name"), ref.get("name"));
        assertTrue(map(configMap.get("data")).containsKey(ref.get("key")), "ConfigMap has " + ref.get("key"));
      }
    }
    assertTrue(envNames.contains("OMP_NUM_THREADS"), "OMP_NUM_THREADS is set");

    // The command line: every $(VAR) is defined, and the real CLI accepts it.
    List<String> args = new ArrayList<>();
    for (String a : strings(container.get("args"))) {
      Matcher m = K8S_VAR.matcher(a);
      StringBuilder out = new StringBuilder();
      while (m.find()) {
        assertTrue(envNames.contains(m.group(1)), "$(" + m.group(1) + ") is defined in env");
        m.appendReplacement(out, m.group(1).contains("PARTITIONS") || m.group(1).contains("FACTOR") ? "3" : "x");
      }
      m.appendTail(out);
      args.add(out.toString());
    }
    parseFlatmon(args, "the Deployment");
    assertTrue(args.contains("--kafka-config=/etc/flatmon/client.properties"));

    // client.properties is a properties file, mounted where --kafka-config points.
    String clientProperties = (String) map(configMap.get("data")).get("client.properties");
    Properties p = new Properties();
    p.load(new StringReader(clientProperties));
    assertFalse(p.isEmpty(), "client.properties has settings");
    assertTrue(list(container.get("volumeMounts")).stream().map(DeployConfigTest::map)
        .anyMatch(v -> "/etc/flatmon".equals(v.get("mountPath"))), "config mounted at /etc/flatmon");
  }

  // ------------------------------------------------------------------ helpers

  /** Parses a flatmon command line with the real CLI (without running it). */
  private static void parseFlatmon(List<String> args, String where) {
    try {
      CommandLine.ParseResult r = FlatmonCommand.commandLine().parseArgs(args.toArray(String[]::new));
      assertTrue(r.hasSubcommand(), where + ": a subcommand");
    } catch (CommandLine.ParameterException e) {
      throw new AssertionError(where + ": flatmon rejects " + args + ": " + e.getMessage(), e);
    }
  }

  private Prometheus.Result checkWithoutKubernetesDiscovery(Path config) throws IOException {
    String text = Files.readString(config).replaceAll("kubernetes_sd_configs:\\s*\\n(\\s*)- role: pod",
        "static_configs:\n$1- targets: [\"pod:9404\"]");
    assertFalse(text.contains("kubernetes_sd_configs"), "only role: pod discovery is rewritten");
    Path dir = tmp.resolve(config.getParent().getFileName().toString());
    Files.createDirectories(dir);
    Path copy = dir.resolve(config.getFileName());
    Files.writeString(copy, text);
    Path rules = tmp.resolve("prometheus");
    Files.createDirectories(rules);
    Files.copy(DEPLOY.resolve("prometheus/flatmon-rules.yml"), rules.resolve("flatmon-rules.yml"),
        java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    return promtool("check", "config", copy.toString());
  }

  private static Prometheus.Result promtool(String... args) {
    List<String> command = new ArrayList<>();
    command.add(Prometheus.binary("promtool").toString());
    command.addAll(List.of(args));
    return Prometheus.run(command, null, null, Duration.ofSeconds(60));
  }

  private static Map<String, Object> compose() throws IOException {
    return map(yaml(DEPLOY.resolve("compose/docker-compose.yml")).get(0));
  }

  private static List<Path> files(java.util.function.Predicate<Path> filter) throws IOException {
    try (Stream<Path> s = Files.walk(DEPLOY)) {
      return s.filter(Files::isRegularFile).filter(filter).sorted().toList();
    }
  }

  static List<Object> yaml(Path file) throws IOException {
    LoaderOptions options = new LoaderOptions();
    options.setAllowDuplicateKeys(false);
    Yaml yaml = new Yaml(new SafeConstructor(options));
    List<Object> docs = new ArrayList<>();
    for (Object d : yaml.loadAll(Files.readString(file, StandardCharsets.UTF_8))) {
      if (d != null) {
        docs.add(d);
      }
    }
    return docs;
  }

  @SuppressWarnings("unchecked")
  static Map<String, Object> map(Object o) {
    assertTrue(o instanceof Map, "expected a mapping, got " + o);
    return (Map<String, Object>) o;
  }

  @SuppressWarnings("unchecked")
  static List<Object> list(Object o) {
    assertTrue(o instanceof List, "expected a list, got " + o);
    return (List<Object>) o;
  }

  static List<String> strings(Object o) {
    if (o == null) {
      return List.of();
    }
    return list(o).stream().map(String::valueOf).toList();
  }
}
