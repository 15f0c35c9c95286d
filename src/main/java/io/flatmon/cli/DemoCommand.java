package io.flatmon.cli;

import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.SignalAction;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TrainerSignal;
import io.flatmon.service.FlatmonService;
import io.flatmon.service.ScratchDirectory;
import io.flatmon.stream.TopologySettings;
import io.flatmon.wire.Topics;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Stream;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * `flatmon demo`: the embedded broker and the service in this JVM, three PyTorch trainers on scikit-learn's
 * digits (clients/python/examples/digits_trainer.py) with different regularisation, and a live table of
 * what flatmon reports for each. Ends when the trainers end (or on Ctrl-C) and leaves nothing running.
 */
@Command(
    name = "demo",
    mixinStandardHelpOptions = true,
    sortOptions = false,
    description = {
        "Runs flatmon end to end on this machine.",
        "",
        "An embedded Kafka broker, the flatmon service, and three PyTorch trainers on",
        "scikit-learn's 8x8 digits that stream their last conv layer to it:",
        "  overfit       150 samples, 40%% of their labels randomised, no regulariser",
        "  weight-decay  1000 clean samples, Adam weight decay 5e-4",
        "  dropout       1000 clean samples, dropout 0.3, weight decay 1e-4",
        "overfit and weight-decay ask flatmon to stop them once their eval loss",
        "stops improving (patience 5 measurements) and restore their best weights",
        "(best = lowest eval loss); dropout sends no policy and runs under the",
        "server default, which stops only a non-finite or diverging run. Each",
        "trainer waits for the signal of each measurement, so it stops at exactly",
        "the step of its STOP.",
        "The live table shows flatmon's latest final measurement per run (step,",
        "relative flatness kappa, Tr H, eval loss and accuracy) and its last signal.",
        "Ends when the trainers end, or on Ctrl-C; leaves nothing running.",
        "",
        "The trainers need PyTorch for --python (Debian/Ubuntu):",
        "  apt-get install python3-torch python3-confluent-kafka python3-protobuf \\",
        "      python3-sklearn protobuf-compiler",
        ""})
final class DemoCommand implements Callable<Integer> {
  static final String INSTALL =
      "apt-get install python3-torch python3-confluent-kafka python3-protobuf python3-sklearn";
  private static final String TRAINER = "clients/python/examples/digits_trainer.py";

  @Spec
  CommandSpec spec;

  @Option(names = "--steps", defaultValue = "600",
      description = "Training steps per trainer (mini-batches of 128; default ${DEFAULT-VALUE}).")
  int steps;

  @Option(names = "--every", defaultValue = "20",
      description = "Measure every N steps (default ${DEFAULT-VALUE}).")
  int every;

  @Option(names = "--data-dir", paramLabel = "DIR",
      description = "Broker log, state stores and trainer logs; kept afterwards. Default: a temporary directory, "
          + "deleted at the end.")
  Path dataDir;

  @Option(names = "--http-port", paramLabel = "PORT",
      description = "Port of the query API and /metrics. Default: 9404, or a free port if 9404 is taken.")
  Integer httpPort;

  @Option(names = "--broker-port", defaultValue = "0",
      description = "Port of the embedded broker (default: a free one).")
  int brokerPort;

  @Option(names = "--python", defaultValue = "/usr/bin/python3",
      description = "Python interpreter with PyTorch (default ${DEFAULT-VALUE}).")
  String python;

  @Option(names = "--monitor", defaultValue = "eval_loss",
      description = "What the policy of overfit and weight-decay watches: eval_loss, relative_flatness, "
          + "hessian_trace, generalization_gap, or server for the service default (default ${DEFAULT-VALUE}).")
  String monitor;

  @Option(names = "--verbose", description = "Show the service's log (default: warnings from flatmon and errors only).")
  boolean verbose;

  /** One trainer: its run id, what differs, and its process. */
  private static final class Trainer {
    final String name;
    final String runId;
    final String regularisation;
    final String monitor;
    final List<String> args;
    final List<double[]> kappa = new ArrayList<>();
    Process process;
    Path log;
    Integer exit;
    FlatnessResult train;
    FlatnessResult eval;
    TrainerSignal signal;
    TrainerSignal stop;
    final List<FlatnessResult> finals = new ArrayList<>();
    final List<TrainerSignal> signals = new ArrayList<>();

    Trainer(String name, String runId, String regularisation, String monitor, List<String> args) {
      this.name = name;
      this.runId = runId;
      this.regularisation = regularisation;
      this.monitor = monitor;
      this.args = args;
    }

    /** The policy in words, and what its "best" is. */
    String policy() {
      return switch (monitor) {
        case "server" -> "server default (stops NaN/divergence only)";
        case "eval_loss" -> "eval_loss, patience 5 (best: lowest eval loss)";
        case "relative_flatness" -> "kappa, patience 5 (best: lowest kappa)";
        case "hessian_trace" -> "Tr H, patience 5 (best: lowest Tr H)";
        case "generalization_gap" -> "gap, patience 5 (best: smallest gap)";
        default -> monitor + ", patience 5";
      };
    }
  }

  private final AtomicBoolean interrupted = new AtomicBoolean();
  private final CountDownLatch finished = new CountDownLatch(1);

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    if (!verbose) {
      // Log lines would tear the live table. slf4j-simple reads these when each logger is created, which for the
      // service's and Kafka's classes is after this point.
      System.setProperty("org.slf4j.simpleLogger.log.io.flatmon", "warn");
      System.setProperty("org.slf4j.simpleLogger.log.org.apache.kafka", "error");
      System.setProperty("org.slf4j.simpleLogger.log.io.micrometer", "error");
    }
    Path repo = repoRoot();
    if (repo == null) {
      err.println("flatmon demo: cannot find " + TRAINER + " (run it from the flatmon checkout)");
      return 2;
    }
    String missing = checkPython(repo);
    if (missing != null) {
      err.println(missing);
      return 3;
    }
    ScratchDirectory scratch = new ScratchDirectory(dataDir, "flatmon-demo-");
    Path dir = scratch.path();
    Files.createDirectories(dir.resolve("logs"));
    int port = httpPort != null ? httpPort : (portFree(9404) ? 9404 : 0);
    FlatmonService.Config config = new FlatmonService.Config(null, dir.resolve("state"), brokerPort, Map.of(),
        "flatmon-demo", 3, (short) 1, Duration.ofDays(1).toMillis(), 1, "127.0.0.1", port,
        TopologySettings.defaults());
    FlatmonService service = new FlatmonService(config);
    List<Trainer> trainers = new ArrayList<>();
    Thread hook = new Thread(() -> {
      interrupted.set(true);
      try {
        finished.await(60, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }, "flatmon-demo-shutdown");
    Runtime.getRuntime().addShutdownHook(hook);
    int rc = 0;
    try {
      out.println("flatmon demo: starting the embedded Kafka broker and the flatmon service...");
      out.flush();
      try {
        service.start(Duration.ofSeconds(120));
      } catch (IllegalStateException | IOException e) {
        err.println("flatmon demo: " + e.getMessage());
        return 2;
      }
      String http = "http://127.0.0.1:" + service.httpPort();
      out.printf("flatmon serving: the live page at %s/%n  Kafka      %s%n  query API  %s/runs%n"
          + "  metrics    %s/metrics%n%n", http, service.bootstrapServers(), http, http);
      out.flush();
      String suffix = Long.toString(System.currentTimeMillis() / 1000 % 100000, 36);
      trainers.add(new Trainer("overfit", "demo-overfit-" + suffix, "150 samples, 40% label noise, none", monitor,
          List.of("--train-size", "150", "--label-noise", "0.4")));
      trainers.add(new Trainer("weight-decay", "demo-weight-decay-" + suffix, "1000 samples, wd 5e-4", monitor,
          List.of("--weight-decay", "5e-4")));
      trainers.add(new Trainer("dropout", "demo-dropout-" + suffix, "1000 samples, dropout 0.3, wd 1e-4", "server",
          List.of("--dropout", "0.3", "--weight-decay", "1e-4")));
      try (KafkaConsumer<String, byte[]> consumer = consumer(service.bootstrapServers())) {
        for (Trainer t : trainers) {
          start(t, repo, dir, service.bootstrapServers());
        }
        rc = watch(trainers, consumer, out, http);
      }
      writeCurves(trainers, dataDir != null ? dir.resolve("charts") : repo.resolve("target").resolve("demo-charts"),
          out);
    } finally {
      for (Trainer t : trainers) {
        stopProcess(t);
      }
      service.close();
      if (!scratch.temporary()) {
        out.println("data and trainer logs kept in " + dir);
      }
      scratch.close();
      out.flush();
      finished.countDown();
      if (!interrupted.get()) {
        try {
          Runtime.getRuntime().removeShutdownHook(hook);
        } catch (IllegalStateException ignored) {
          // already shutting down
        }
      }
    }
    return interrupted.get() ? 130 : rc;
  }

  /** The checkout that holds the trainer script: next to the classes/jar, or the working directory. */
  private static Path repoRoot() {
    List<Path> candidates = new ArrayList<>();
    try {
      Path code = Path.of(DemoCommand.class.getProtectionDomain().getCodeSource().getLocation().toURI());
      for (Path p = code; p != null; p = p.getParent()) {
        candidates.add(p);
      }
    } catch (Exception ignored) {
      // no code source: fall back to the working directory
    }
    candidates.add(Path.of("").toAbsolutePath());
    for (Path p : candidates) {
      if (Files.isRegularFile(p.resolve(TRAINER))) {
        return p;
      }
    }
    return null;
  }

  /** Null when --python can run the trainers, else what to install. */
  private String checkPython(Path repo) throws InterruptedException {
    ProcessBuilder pb = new ProcessBuilder(python, "-c",
        "import torch, sklearn, confluent_kafka, google.protobuf\nimport flatmon_client")
        .redirectErrorStream(true);
    pb.environment().put("PYTHONPATH", repo.resolve("clients/python").toString());
    String output;
    int code;
    try {
      Process p = pb.start();
      byte[] bytes = p.getInputStream().readAllBytes();
      if (!p.waitFor(120, TimeUnit.SECONDS)) {
        p.destroyForcibly();
      }
      code = p.exitValue();
      output = new String(bytes, StandardCharsets.UTF_8).trim();
    } catch (IOException e) {
      return "flatmon demo: cannot run " + python + " (" + e.getMessage() + ").\n"
          + "The demo's trainers need Python 3 with PyTorch. On Debian/Ubuntu:\n  sudo " + INSTALL
          + "\n(or point --python at an interpreter that has torch, scikit-learn, confluent-kafka and protobuf)";
    }
    if (code == 0) {
      return null;
    }
    String last = output.isEmpty() ? "" : output.substring(output.lastIndexOf('\n') + 1);
    if (last.contains("protoc")) {
      return "flatmon demo: " + last + "\nInstall the protobuf compiler: sudo apt-get install protobuf-compiler";
    }
    return "flatmon demo: " + python + " cannot run the trainers: " + last + "\n"
        + "The demo's trainers need PyTorch, scikit-learn, confluent-kafka and protobuf. On Debian/Ubuntu:\n"
        + "  sudo " + INSTALL + "\n"
        + "(or point --python at an interpreter that has them)";
  }

  private static boolean portFree(int port) {
    try (ServerSocket s = new ServerSocket(port, 1, InetAddress.getByName("127.0.0.1"))) {
      s.setReuseAddress(true);
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  private void start(Trainer t, Path repo, Path dir, String bootstrap) throws IOException {
    List<String> cmd = new ArrayList<>(List.of(python, repo.resolve(TRAINER).toString(), "--bootstrap", bootstrap,
        "--run-id", t.runId, "--display-name", t.name, "--steps", Integer.toString(steps), "--every",
        Integer.toString(every), "--monitor", t.monitor, "--lr", "1e-2",
        "--parent-pid", Long.toString(ProcessHandle.current().pid())));
    cmd.addAll(t.args);
    t.log = dir.resolve("logs").resolve(t.name + ".log");
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(t.log.toFile());
    pb.environment().put("PYTHONPATH", repo.resolve("clients/python").toString());
    pb.environment().put("OMP_NUM_THREADS", "1");
    pb.environment().put("PYTHONUNBUFFERED", "1");
    t.process = pb.start();
  }

  private static KafkaConsumer<String, byte[]> consumer(String bootstrap) {
    Map<String, Object> c = new HashMap<>(Topics.largeMessageConsumerConfig());
    c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(c);
    List<TopicPartition> parts = new ArrayList<>();
    for (String topic : List.of(Topics.RESULTS, Topics.SIGNALS)) {
      consumer.partitionsFor(topic, Duration.ofSeconds(30))
          .forEach(p -> parts.add(new TopicPartition(p.topic(), p.partition())));
    }
    consumer.assign(parts);
    consumer.seekToBeginning(parts);
    return consumer;
  }

  /** Follows results and signals until every trainer has exited (or Ctrl-C); returns the exit code. */
  private int watch(List<Trainer> trainers, KafkaConsumer<String, byte[]> consumer, PrintWriter out, String http)
      throws InterruptedException {
    Map<String, Trainer> byRun = new LinkedHashMap<>();
    trainers.forEach(t -> byRun.put(t.runId, t));
    boolean ansi = System.console() != null && !"dumb".equals(System.getenv("TERM"));
    int drawn = 0;
    long lastDraw = 0;
    long lastChange = System.nanoTime();
    long allExited = 0;
    String lastPlain = "";
    while (!interrupted.get()) {
      boolean changed = false;
      for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(250))) {
        Trainer t = byRun.get(r.key());
        if (t == null) {
          continue;
        }
        try {
          if (r.topic().equals(Topics.RESULTS)) {
            FlatnessResult res = FlatnessResult.parseFrom(r.value());
            if (!res.getFinal()) {
              continue;
            }
            t.finals.add(res);
            if (res.getSplit() == Split.EVAL) {
              if (t.eval == null || res.getStep() >= t.eval.getStep()) {
                t.eval = res;
              }
            } else {
              t.kappa.add(new double[] {res.getStep(), res.getRelativeFlatness().getMean()});
              if (t.train == null || res.getStep() >= t.train.getStep()) {
                t.train = res;
              }
            }
          } else {
            TrainerSignal s = TrainerSignal.parseFrom(r.value());
            t.signals.add(s);
            t.signal = s;
            if (s.getAction() == SignalAction.STOP && t.stop == null) {
              t.stop = s;
            }
          }
          changed = true;
        } catch (com.google.protobuf.InvalidProtocolBufferException e) {
          // not ours to judge: skip it
        }
      }
      if (changed) {
        lastChange = System.nanoTime();
      }
      for (Trainer t : trainers) {
        if (t.exit == null && !t.process.isAlive()) {
          t.exit = t.process.exitValue();
          changed = true;
        }
      }
      boolean done = trainers.stream().allMatch(t -> t.exit != null);
      long now = System.nanoTime();
      if (ansi && (changed || now - lastDraw > 1_000_000_000L)) {
        List<String> lines = table(trainers);
        StringBuilder sb = new StringBuilder();
        if (drawn > 0) {
          sb.append("\033[").append(drawn).append('F');
        }
        lines.forEach(l -> sb.append(l).append("\033[K\n"));
        sb.append("\033[J");
        out.print(sb);
        out.flush();
        drawn = lines.size();
        lastDraw = now;
      } else if (!ansi && changed) {
        // No terminal: a progress line per run whose flatmon step changed.
        StringBuilder sb = new StringBuilder();
        for (Trainer t : trainers) {
          sb.append(t.name).append('@').append(t.train == null ? -1 : t.train.getStep()).append(' ');
        }
        if (!sb.toString().equals(lastPlain) && now - lastDraw > 2_000_000_000L) {
          lastPlain = sb.toString();
          table(trainers).forEach(out::println);
          out.println();
          out.flush();
          lastDraw = now;
        }
      }
      if (done) {
        if (allExited == 0) {
          allExited = now;
        }
        // After the trainers exit, their RunEnded closes the last measurements: wait for those results.
        boolean quiet = now - lastChange > 3_000_000_000L;
        if ((quiet && now - allExited > 2_000_000_000L) || now - allExited > 30_000_000_000L) {
          break;
        }
      }
    }
    if (ansi && drawn > 0) {
      out.print("\033[" + drawn + "F\033[J");
    }
    for (String l : table(trainers)) {
      out.println(l);
    }
    out.println();
    int rc = 0;
    for (Trainer t : trainers) {
      String result = resultLine(t.log);
      out.printf("%-13s policy: %s%n", t.name, t.policy());
      if (t.stop != null) {
        String last = t.train == null ? "" : t.train.getStep() == t.stop.getStep() ? ", its last measurement"
            : "; its last measurement is step " + t.train.getStep() + " (the trainer saw the STOP late)";
        out.printf(Locale.ROOT, "%-13s stopped by flatmon: STOP %s at step %d%s; %s%n", "", t.stop.getReason(),
            t.stop.getStep(), last, t.stop.getBestStep() < 0 ? "no best step"
                : String.format(Locale.ROOT, "best %s %.4g at step %d%s", bestOf(t.stop), t.stop.getBestValue(),
                    t.stop.getBestStep(), result.contains("restored_step") ? " (weights restored)" : ""));
      } else if (t.exit != null && t.exit == 0) {
        out.printf(Locale.ROOT, "%-13s trained all %d steps; last signal %s%s%n", "", steps,
            t.signal == null ? "-" : t.signal.getAction() + " " + t.signal.getReason(), formerDefault(t));
      }
      if (t.exit != null && t.exit != 0 && !interrupted.get()) {
        rc = 1;
        out.printf("%-13s trainer failed (exit %d); the end of its log %s:%n%s%n", t.name, t.exit, t.log,
            tail(t.log, 15));
      }
    }
    out.printf("%nWhile it ran: query API %s/runs, metrics %s/metrics. flatmon stopped; nothing left running.%n",
        http, http);
    out.flush();
    return rc;
  }

  /** A PNG of each run's curves (what the live page charts), drawn from the final results the demo read. */
  private static void writeCurves(List<Trainer> trainers, Path dir, PrintWriter out) {
    try {
      Files.createDirectories(dir);
      out.println("Curves of each run (PNG):");
      for (Trainer t : trainers) {
        Path png = dir.resolve(t.name + ".png");
        io.flatmon.web.CurvesImage.write(png, t.name + " (" + t.regularisation + ")", null, t.finals, t.signals);
        out.println("  " + png.toAbsolutePath());
      }
    } catch (IOException | RuntimeException e) {
      out.println("flatmon demo: could not draw the curves: " + e);
    }
    out.flush();
  }

  /** What a STOP's best value is: the monitored quantity's best in its direction. */
  private static String bestOf(TrainerSignal s) {
    return switch (s.getMonitor()) {
      case EVAL_LOSS -> "(lowest) eval loss";
      case RELATIVE_FLATNESS -> "(lowest) kappa";
      case HESSIAN_TRACE -> "(lowest) Tr H";
      case GENERALIZATION_GAP -> "(smallest) generalization gap";
      default -> s.getMonitor().name().toLowerCase(Locale.ROOT);
    };
  }

  /**
   * For a run under the server default: where the former default (kappa, lower is better, patience 10)
   * would have stopped it, replayed on the kappa flatmon measured.
   */
  private static String formerDefault(Trainer t) {
    if (!"server".equals(t.monitor) || t.kappa.isEmpty()) {
      return "";
    }
    io.flatmon.proto.v1.EarlyStopPolicy former = io.flatmon.proto.v1.EarlyStopPolicy.newBuilder()
        .setMonitor(io.flatmon.proto.v1.MonitoredQuantity.RELATIVE_FLATNESS)
        .setMode(io.flatmon.proto.v1.PolicyMode.MIN).setPatience(10).setCheckFinite(true).build();
    io.flatmon.proto.v1.DetectorState state = io.flatmon.proto.v1.DetectorState.getDefaultInstance();
    List<double[]> sorted = new ArrayList<>(t.kappa);
    sorted.sort((a, b) -> Double.compare(a[0], b[0]));
    for (double[] sk : sorted) {
      io.flatmon.signal.StopDetector.Decision d =
          io.flatmon.signal.StopDetector.observe(former, state, t.runId, (long) sk[0], sk[1]);
      state = d.state();
      if (d.signal().getAction() == SignalAction.STOP) {
        return String.format(Locale.ROOT, "; kept alive: the former default (kappa, lower is better, patience 10) "
            + "would have stopped it at step %d", d.signal().getStep());
      }
    }
    return "";
  }

  private static List<String> table(List<Trainer> trainers) {
    List<String> lines = new ArrayList<>();
    lines.add(String.format(Locale.ROOT, "%-13s %-36s %5s %11s %11s %9s %6s  %s", "run", "regularisation", "step",
        "kappa", "Tr H", "eval loss", "acc", "last signal"));
    trainers.forEach(t -> lines.add(row(t)));
    return lines;
  }

  private static String row(Trainer t) {
    String step = t.train == null ? "-" : Long.toString(t.train.getStep());
    String kappa = t.train == null ? "-" : num(t.train.getRelativeFlatness().getMean());
    String trace = t.train == null ? "-" : num(t.train.getHessianTrace().getMean());
    String loss = t.eval == null ? "-" : String.format(Locale.ROOT, "%.4f", t.eval.getLoss().getMean());
    String acc = t.eval == null ? "-" : String.format(Locale.ROOT, "%.3f", t.eval.getAccuracy().getMean());
    String signal = "-";
    TrainerSignal s = t.stop != null ? t.stop : t.signal;
    if (s != null) {
      signal = String.format(Locale.ROOT, "%s %s @%d%s", s.getAction(), s.getReason(), s.getStep(),
          s.getBestStep() < 0 ? "" : " (best " + s.getBestStep() + ")");
    }
    String state = t.exit == null ? "" : t.exit == 0 ? "  [done]" : "  [exit " + t.exit + "]";
    return String.format(Locale.ROOT, "%-13s %-36s %5s %11s %11s %9s %6s  %s%s", t.name, t.regularisation, step,
        kappa, trace, loss, acc, signal, state);
  }

  private static String num(double v) {
    return Double.isFinite(v) ? String.format(Locale.ROOT, "%.5g", v) : Double.toString(v);
  }

  private static String resultLine(Path log) {
    try (Stream<String> lines = Files.lines(log)) {
      return lines.filter(l -> l.startsWith("RESULT ")).reduce((a, b) -> b).orElse("");
    } catch (IOException | java.io.UncheckedIOException e) {
      return "";
    }
  }

  private static String tail(Path log, int n) {
    try {
      List<String> lines = Files.readAllLines(log);
      return String.join("\n", lines.subList(Math.max(0, lines.size() - n), lines.size()));
    } catch (IOException e) {
      return "(no log)";
    }
  }

  /** SIGTERM, then SIGKILL after 5 s: the trainer's own RunEnded/flush gets a chance first. */
  private static void stopProcess(Trainer t) {
    if (t.process == null || !t.process.isAlive()) {
      return;
    }
    t.process.destroy();
    try {
      if (!t.process.waitFor(5, TimeUnit.SECONDS)) {
        t.process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      t.process.destroyForcibly();
      Thread.currentThread().interrupt();
    }
  }
}
