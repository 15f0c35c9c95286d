package io.flatmon.stream;

import com.google.protobuf.InvalidProtocolBufferException;
import io.flatmon.engine.ActivationBatch;
import io.flatmon.engine.BatchCurvature;
import io.flatmon.engine.ByteBudgetCache;
import io.flatmon.engine.CurvatureComputer;
import io.flatmon.engine.EngineCapacityException;
import io.flatmon.engine.HeadSnapshot;
import io.flatmon.engine.StepAggregate;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.LayerSnapshot;
import io.flatmon.proto.v1.MeasurementDone;
import io.flatmon.proto.v1.MeasurementState;
import io.flatmon.proto.v1.RejectReason;
import io.flatmon.proto.v1.Rejected;
import io.flatmon.proto.v1.RunState;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TelemetryRecord;
import io.flatmon.schema.RecordDecoder;
import io.flatmon.schema.RejectedRecordException;
import io.flatmon.schema.ResultBuilder;
import io.flatmon.schema.UntrustedText;
import java.util.ArrayList;
import java.util.List;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Turns each run's telemetry into results. Per run (records arrive in order, keyed by run_id):
 * a LayerSnapshot replaces the (run, layer) snapshot and closes that layer's measurements of other
 * steps; an ActivationBatch is measured against the snapshot of its step and folded into the
 * (run, layer, step, split) {@link StepAggregate}, emitting a running result; MeasurementDone closes
 * the step's measurements with final results; RunEnded closes everything and starts the retention
 * clock. Bad records go to the dead-letter topic with a reason; nothing is thrown out of here.
 *
 * <p>A batch whose snapshot is missing, or whose step differs from the snapshot's, is rejected as
 * MISSING_SNAPSHOT: per-run order is guaranteed by keying, so waiting could only help a trainer that
 * publishes out of order, and a deterministic rejection keeps replays exact.
 */
final class TelemetryProcessor implements Processor<String, byte[], String, byte[]> {
  private static final Logger LOG = LoggerFactory.getLogger(TelemetryProcessor.class);
  /** Heap for decoded snapshots per task: ~12 ResNet-18-sized heads (10 MB each), thousands of small ones. */
  private static final long CACHED_HEAD_BYTES = 128L << 20;

  private final TopologySettings settings;
  private final TopologyListener listener;
  /** Thread-safe (an {@link io.flatmon.engine.EnginePool}): every task of the instance shares it. */
  private final CurvatureComputer engine;
  private final RecordDecoder decoder;
  /** Runs this processor (task) has handled, released to the listener when the task closes. */
  private final java.util.Set<String> seenRuns = new java.util.HashSet<>();
  /** Decoded snapshots by (run, layer), so a snapshot is decoded once per instance, not per batch. */
  private final ByteBudgetCache<String, CachedHead> heads =
      new ByteBudgetCache<>(CACHED_HEAD_BYTES);
  private ProcessorContext<String, byte[]> context;
  private KeyValueStore<String, byte[]> snapshots;
  private KeyValueStore<String, byte[]> measurements;
  private KeyValueStore<String, byte[]> runs;
  private KeyValueStore<String, byte[]> latest;
  private KeyValueStore<String, byte[]> history;

  private record CachedHead(long step, HeadSnapshot head) {
  }

  TelemetryProcessor(TopologySettings settings, TopologyListener listener, CurvatureComputer engine) {
    this.settings = settings;
    this.listener = listener;
    this.engine = engine;
    this.decoder = new RecordDecoder(settings.maxTensorElements(), settings.workLimits());
  }

  @Override
  public void init(ProcessorContext<String, byte[]> context) {
    this.context = context;
    // A revived task (after an aborted transaction) restores its stores: start from them, not from memory.
    heads.clear();
    this.snapshots = context.getStateStore(FlatmonTopology.SNAPSHOT_STORE);
    this.measurements = context.getStateStore(FlatmonTopology.MEASUREMENT_STORE);
    this.runs = context.getStateStore(FlatmonTopology.RUN_STORE);
    this.latest = context.getStateStore(FlatmonTopology.LATEST_STORE);
    this.history = context.getStateStore(FlatmonTopology.HISTORY_STORE);
    context.schedule(settings.cleanupInterval(), PunctuationType.WALL_CLOCK_TIME, this::expire);
  }

  @Override
  public void process(Record<String, byte[]> record) {
    String runId = record.key();
    try {
      if (record.value() == null || record.value().length == 0) {
        throw new RejectedRecordException(RejectReason.UNDECODABLE, "empty record value");
      }
      TelemetryRecord t;
      try {
        // Aliasing: tensor bytes stay views of the record value instead of 2 MB copies per batch.
        com.google.protobuf.CodedInputStream in = com.google.protobuf.CodedInputStream.newInstance(record.value());
        in.enableAliasing(true);
        t = TelemetryRecord.parseFrom(in);
      } catch (java.io.IOException e) {
        throw new RejectedRecordException(RejectReason.UNDECODABLE, "not a TelemetryRecord: " + e.getMessage());
      }
      runId = runIdOf(t);
      if (record.key() == null || !record.key().equals(runId)) {
        throw new RejectedRecordException(RejectReason.INVALID_VALUE, String.format(
            "record key %s differs from run_id %s: key telemetry by run_id so each run stays in order",
            io.flatmon.schema.UntrustedText.quote(record.key()), io.flatmon.schema.UntrustedText.quote(runId)));
      }
      switch (t.getRecordCase()) {
        case RUN_STARTED -> onRunStarted(t.getRunStarted(), record.timestamp());
        case LAYER_SNAPSHOT -> onSnapshot(t.getLayerSnapshot(), record.timestamp());
        case ACTIVATION_BATCH -> onBatch(t.getActivationBatch(), record.timestamp());
        case MEASUREMENT_DONE -> onDone(t.getMeasurementDone(), record.timestamp());
        case RUN_ENDED -> onEnded(runId, record.timestamp());
        default -> throw new RejectedRecordException(RejectReason.UNKNOWN_RECORD_TYPE,
            "the record sets no known variant (newer schema?)");
      }
    } catch (RejectedRecordException e) {
      reject(record, runId, e.reason(), e.getMessage());
    } catch (EngineCapacityException e) {
      // The engine refused the batch's memory (its own guard, or the native allocator): too large for
      // this instance, whatever the configured limits said.
      reject(record, runId, RejectReason.TOO_LARGE, e.getMessage());
    } catch (KafkaException e) {
      // Kafka's own failures (a task migrated, a fenced producer, a store or changelog error) are
      // Kafka Streams' to handle: rethrown, they reach its exception handlers (StreamsSettings).
      throw e;
    } catch (RuntimeException | LinkageError | AssertionError | StackOverflowError | OutOfMemoryError e) {
      // A bug or an unforeseen input must not stop the whole instance, nor come back after a restart
      // to stop it again: dead-letter the record as an internal error (not the trainer's fault), with
      // the stack trace in the log.
      LOG.error("internal error on record {} of run {}; sending it to the dead-letter topic as INTERNAL_ERROR",
          coordinates(), UntrustedText.quote(runId), e);
      reject(record, runId, RejectReason.INTERNAL_ERROR, "internal error: " + e);
    }
  }

  /** topic/partition@offset of the record being processed, for log lines. */
  private String coordinates() {
    return context.recordMetadata().map(md -> md.topic() + "/" + md.partition() + "@" + md.offset()).orElse("?");
  }

  private static String runIdOf(TelemetryRecord t) throws RejectedRecordException {
    String id = switch (t.getRecordCase()) {
      case RUN_STARTED -> t.getRunStarted().getRunId();
      case LAYER_SNAPSHOT -> t.getLayerSnapshot().getRunId();
      case ACTIVATION_BATCH -> t.getActivationBatch().getRunId();
      case MEASUREMENT_DONE -> t.getMeasurementDone().getRunId();
      case RUN_ENDED -> t.getRunEnded().getRunId();
      default -> throw new RejectedRecordException(RejectReason.UNKNOWN_RECORD_TYPE,
          "the record sets no known variant (newer schema?)");
    };
    return io.flatmon.schema.RunIds.require(id);
  }

  private void onRunStarted(io.flatmon.proto.v1.RunStarted started, long timestamp) {
    RunState.Builder run = loadRun(started.getRunId(), timestamp).toBuilder();
    // A restarted run id (resumed training) is live again.
    run.setEnded(false).setEndedWallMs(0).setDisplayName(started.getDisplayName())
        .setFramework(started.getFramework());
    if (seenRuns.contains(run.getRunId())) {
      listener.onRunSeen(run.getRunId(), run.getDisplayName(), run.getFramework());
    }
    if (started.hasEarlyStopPolicy()) {
      acceptPolicy(run, started.getEarlyStopPolicy(), timestamp);
    }
    saveRun(run, timestamp);
  }

  /**
   * A run's own policy, or — when it is invalid — the server default and a WARN / INVALID_POLICY signal
   * (step 0) that says why.
   */
  private void acceptPolicy(RunState.Builder run, io.flatmon.proto.v1.EarlyStopPolicy requested, long timestamp) {
    io.flatmon.proto.v1.EarlyStopPolicy policy =
        io.flatmon.signal.StopDetector.effective(requested, settings.defaultPolicy());
    List<String> problems = io.flatmon.signal.StopDetector.problems(policy);
    if (problems.isEmpty()) {
      run.setPolicy(policy).setPolicyFromTrainer(true);
      return;
    }
    run.clearPolicy().setPolicyFromTrainer(false);
    send(run.getRunId(), io.flatmon.signal.StopDetector.warning(settings.defaultPolicy(), run.getDetector(),
        run.getRunId(), 0, io.flatmon.proto.v1.SignalReason.INVALID_POLICY,
        "invalid early-stop policy: " + String.join("; ", problems) + "; the server default applies"), timestamp);
  }

  private void onSnapshot(LayerSnapshot s, long timestamp) throws RejectedRecordException {
    RunState.Builder run = liveRun(s.getRunId(), timestamp);
    HeadSnapshot head = decoder.snapshot(s);
    // The next step has started for this layer: its older measurements are complete.
    closeMeasurements(run, m -> m.getLayer().equals(s.getLayer()) && m.getStep() != s.getStep(), timestamp);
    String key = StateKeys.head(s.getRunId(), s.getLayer());
    snapshots.put(key, s.toByteArray());
    heads.put(key, new CachedHead(s.getStep(), head), s.getSerializedSize());
    if (!run.getLayersList().contains(s.getLayer())) {
      run.addLayers(s.getLayer());
    }
    saveRun(run, timestamp);
  }

  private void onBatch(io.flatmon.proto.v1.ActivationBatch a, long timestamp) throws RejectedRecordException {
    RunState.Builder run = liveRun(a.getRunId(), timestamp);
    CachedHead cached = head(a.getRunId(), a.getLayer());
    if (cached == null || cached.step != a.getStep()) {
      throw new RejectedRecordException(RejectReason.MISSING_SNAPSHOT, String.format(
          "batch of run '%s' layer '%s' step %d has no snapshot of that step%s", a.getRunId(), a.getLayer(),
          a.getStep(), cached == null ? "" : " (current snapshot: step " + cached.step + ")"));
    }
    ActivationBatch batch = decoder.batch(a, cached.head);
    Split split = a.getSplit() == Split.SPLIT_UNSPECIFIED ? Split.TRAIN : a.getSplit();
    String key = StateKeys.measurement(a.getRunId(), a.getLayer(), a.getStep(), split);
    MeasurementState.Builder m = loadMeasurement(key);
    if (m == null) {
      m = MeasurementState.newBuilder().setRunId(a.getRunId()).setLayer(a.getLayer()).setStep(a.getStep())
          .setSplit(split)
          .setWeightDecayTrace(cached.head.weightDecayTrace())
          .setWeightDecayRelativeFlatness(cached.head.weightDecayRelativeFlatness())
          .setTrainerRms(cached.head.inputChannelRms() != null);
      run.addOpenMeasurements(key);
    }
    StepAggregate aggregate = StepAggregate.fromState(m.getAggregate());
    long t0 = System.nanoTime();
    BatchCurvature curvature = engine.compute(cached.head, batch, aggregate.normalizerFor(cached.head, batch));
    double seconds = (System.nanoTime() - t0) / 1e9;
    aggregate.add(curvature);
    m.setAggregate(aggregate.toState()).setLastPublishTimeMicros(a.getPublishTimeMicros());
    measurements.put(key, m.build().toByteArray());
    saveRun(run, timestamp);
    FlatnessResult result = result(m, aggregate, false);
    emit(result, timestamp);
    listener.onResult(result, seconds, batch.samples());
  }

  private void onDone(MeasurementDone d, long timestamp) throws RejectedRecordException {
    RunState.Builder run = liveRun(d.getRunId(), timestamp);
    closeMeasurements(run, m -> m.getStep() == d.getStep()
        && (d.getLayer().isEmpty() || m.getLayer().equals(d.getLayer())), timestamp);
    saveRun(run, timestamp);
  }

  private void onEnded(String runId, long timestamp) {
    RunState.Builder run = loadRun(runId, timestamp).toBuilder();
    closeMeasurements(run, m -> true, timestamp);
    run.setEnded(true).setEndedWallMs(System.currentTimeMillis());
    saveRun(run, timestamp);
  }

  /** Emits final results for the run's open measurements that match, and forgets them. */
  private void closeMeasurements(RunState.Builder run, java.util.function.Predicate<MeasurementState.Builder> which,
      long timestamp) {
    List<String> stillOpen = new ArrayList<>();
    for (String key : run.getOpenMeasurementsList()) {
      MeasurementState.Builder m = loadMeasurement(key);
      if (m == null) {
        continue;
      }
      if (which.test(m)) {
        FlatnessResult result = result(m, StepAggregate.fromState(m.getAggregate()), true);
        emit(result, timestamp);
        listener.onResult(result, Double.NaN, 0);
        signal(run, result, timestamp);
        measurements.delete(key);
      } else {
        stillOpen.add(key);
      }
    }
    run.clearOpenMeasurements().addAllOpenMeasurements(stillOpen);
  }

  /**
   * Feeds a final result to the run's early-stop detector if it carries the monitored quantity of the
   * run's primary layer (the first layer to finish a measurement), and sends the signal. Every final
   * train result first passes the run-wide guard (non-finite values, loss divergence); a measurement
   * without the eval split that the policy needs gets WARN / EVAL_DATA_MISSING, so that every
   * measurement of the primary layer is answered.
   */
  private void signal(RunState.Builder run, FlatnessResult r, long timestamp) {
    io.flatmon.proto.v1.EarlyStopPolicy policy = run.hasPolicy() ? run.getPolicy() : settings.defaultPolicy();
    io.flatmon.proto.v1.DetectorState.Builder state = run.getDetector().toBuilder();
    if (state.getPrimaryLayer().isEmpty()) {
      state.setPrimaryLayer(r.getLayer());
    }
    if (!state.getPrimaryLayer().equals(r.getLayer())) {
      return;
    }
    boolean train = r.getSplit() == Split.TRAIN;
    if (train) {
      io.flatmon.signal.StopDetector.Decision g = io.flatmon.signal.StopDetector.guard(policy, state.build(),
          r.getRunId(), r.getStep(), new io.flatmon.signal.StopDetector.TrainQuantities(r.getLoss().getMean(),
              r.getHessianTrace().getMean(), r.getRelativeFlatness().getMean(),
              r.getRelativeFlatnessNormalized().getMean()));
      state = g.state().toBuilder();
      run.setDetector(state);
      if (g.signal() != null) {
        send(r.getRunId(), g.signal(), timestamp);
        return;
      }
      if (io.flatmon.signal.StopDetector.needsEval(policy)
          && !run.getOpenMeasurementsList().contains(StateKeys.measurement(r.getRunId(), r.getLayer(), r.getStep(),
              Split.EVAL))) {
        send(r.getRunId(), io.flatmon.signal.StopDetector.warning(policy, state.build(), r.getRunId(), r.getStep(),
            io.flatmon.proto.v1.SignalReason.EVAL_DATA_MISSING, "the policy monitors " + policy.getMonitor()
                + " but the measurement of step " + r.getStep() + " has no eval split"), timestamp);
        return;
      }
    }
    double value;
    switch (policy.getMonitor()) {
      case RELATIVE_FLATNESS, MONITOR_UNSPECIFIED -> {
        if (!train) {
          return;
        }
        value = r.getRelativeFlatness().getMean();
      }
      case RELATIVE_FLATNESS_NORMALIZED -> {
        if (!train) {
          return;
        }
        value = r.getRelativeFlatnessNormalized().getMean();
      }
      case HESSIAN_TRACE -> {
        if (!train) {
          return;
        }
        value = r.getHessianTrace().getMean();
      }
      case GUARD_ONLY -> {
        if (!train) {
          return;
        }
        value = r.getLoss().getMean();
      }
      case EVAL_LOSS -> {
        if (train) {
          return;
        }
        value = r.getLoss().getMean();
      }
      case GENERALIZATION_GAP -> {
        if (train) {
          state.putPendingTrainLoss(r.getStep(), r.getLoss().getMean());
          run.setDetector(state);
          return;
        }
        if (!state.containsPendingTrainLoss(r.getStep())) {
          return;
        }
        value = r.getLoss().getMean() - state.getPendingTrainLossOrThrow(r.getStep());
        state.removePendingTrainLoss(r.getStep());
      }
      default -> {
        return;
      }
    }
    io.flatmon.signal.StopDetector.Decision d =
        io.flatmon.signal.StopDetector.observe(policy, state.build(), r.getRunId(), r.getStep(), value);
    run.setDetector(d.state());
    send(r.getRunId(), d.signal(), timestamp);
  }

  private void send(String runId, io.flatmon.proto.v1.TrainerSignal decided, long timestamp) {
    io.flatmon.proto.v1.TrainerSignal signal = decided.toBuilder()
        .setEmittedTimeMicros(System.currentTimeMillis() * 1000L).build();
    context.forward(new Record<>(runId, signal.toByteArray(), timestamp), FlatmonTopology.SIGNALS_SINK);
    listener.onSignal(runId, signal);
  }

  private static FlatnessResult result(MeasurementState.Builder m, StepAggregate aggregate, boolean last) {
    return ResultBuilder.build(m.getRunId(), m.getLayer(), m.getStep(), m.getSplit(), last, aggregate,
        m.getWeightDecayTrace(), m.getWeightDecayRelativeFlatness(), m.getTrainerRms(), Double.NaN)
        .toBuilder().setPublishTimeMicros(m.getLastPublishTimeMicros()).build();
  }

  /** Finalises and drops runs that ended longer than the retention ago, or have been idle too long. */
  private void expire(long wallClockMs) {
    List<KeyValue<String, RunState>> drop = new ArrayList<>();
    try (KeyValueIterator<String, byte[]> it = runs.all()) {
      while (it.hasNext()) {
        KeyValue<String, byte[]> kv = it.next();
        RunState run = parseRun(kv.value);
        boolean endedLongAgo = run.getEnded()
            && wallClockMs - run.getEndedWallMs() >= settings.endedRetention().toMillis();
        boolean idle = !run.getEnded()
            && wallClockMs - run.getLastSeenWallMs() >= settings.idleExpiry().toMillis();
        if (endedLongAgo || idle) {
          drop.add(KeyValue.pair(kv.key, run));
        }
      }
    }
    for (KeyValue<String, RunState> kv : drop) {
      RunState.Builder run = kv.value.toBuilder();
      closeMeasurements(run, m -> true, wallClockMs);
      for (String layer : run.getLayersList()) {
        String key = StateKeys.head(run.getRunId(), layer);
        snapshots.delete(key);
        heads.remove(key);
      }
      runs.delete(kv.key);
      deletePrefix(latest, run.getRunId());
      deletePrefix(history, run.getRunId());
      seenRuns.remove(run.getRunId());
      listener.onRunReleased(run.getRunId());
      LOG.info("run {} {}: its state is released", run.getRunId(), run.getEnded() ? "ended" : "expired (idle)");
    }
  }

  private CachedHead head(String runId, String layer) throws RejectedRecordException {
    String key = StateKeys.head(runId, layer);
    CachedHead cached = heads.get(key);
    if (cached == null) {
      byte[] bytes = snapshots.get(key);
      if (bytes == null) {
        return null;
      }
      try {
        LayerSnapshot s = LayerSnapshot.parseFrom(bytes);
        cached = new CachedHead(s.getStep(), decoder.snapshot(s));
      } catch (InvalidProtocolBufferException e) {
        throw new IllegalStateException("corrupt snapshot store entry " + key, e);
      }
      heads.put(key, cached, bytes.length);
    }
    return cached;
  }

  /** The run's state, rejecting records of a run that has ended (until RunStarted reopens it). */
  private RunState.Builder liveRun(String runId, long timestamp) throws RejectedRecordException {
    RunState run = loadRun(runId, timestamp);
    if (run.getEnded()) {
      throw new RejectedRecordException(RejectReason.UNKNOWN_RUN,
          "run '" + runId + "' has ended (RunEnded received); send RunStarted to reopen it");
    }
    return run.toBuilder();
  }

  private RunState loadRun(String runId, long timestamp) {
    byte[] bytes = runs.get(runId);
    if (bytes == null) {
      return RunState.newBuilder().setRunId(runId).setFirstSeenMs(timestamp).build();
    }
    return parseRun(bytes);
  }

  private static RunState parseRun(byte[] bytes) {
    try {
      return RunState.parseFrom(bytes);
    } catch (InvalidProtocolBufferException e) {
      throw new IllegalStateException("corrupt run store entry", e);
    }
  }

  /** The task is closing (shutdown or its partition moved): stop exporting its runs from here. */
  @Override
  public void close() {
    seenRuns.forEach(listener::onRunReleased);
    seenRuns.clear();
  }

  private void saveRun(RunState.Builder run, long timestamp) {
    if (seenRuns.add(run.getRunId())) {
      listener.onRunSeen(run.getRunId(), run.getDisplayName(), run.getFramework());
    }
    run.setLastSeenMs(Math.max(run.getLastSeenMs(), timestamp)).setLastSeenWallMs(System.currentTimeMillis());
    runs.put(run.getRunId(), run.build().toByteArray());
  }

  private MeasurementState.Builder loadMeasurement(String key) {
    byte[] bytes = measurements.get(key);
    if (bytes == null) {
      return null;
    }
    try {
      return MeasurementState.parseFrom(bytes).toBuilder();
    } catch (InvalidProtocolBufferException e) {
      throw new IllegalStateException("corrupt measurement store entry " + key, e);
    }
  }

  private void emit(FlatnessResult result, long timestamp) {
    byte[] bytes = result.toByteArray();
    context.forward(new Record<>(result.getRunId(), bytes, timestamp), FlatmonTopology.RESULTS_SINK);
    latest.put(StateKeys.latest(result.getRunId(), result.getLayer(), result.getSplit()), bytes);
    if (result.getFinal()) {
      history.put(StateKeys.measurement(result.getRunId(), result.getLayer(), result.getStep(), result.getSplit()),
          bytes);
      trimHistory(result.getRunId());
    }
  }

  /** Keeps the final results of the run's last {@code historySteps} steps (keys sort by layer, then step). */
  private void trimHistory(String runId) {
    java.util.TreeMap<Long, List<String>> keysByStep = new java.util.TreeMap<>();
    try (KeyValueIterator<String, byte[]> it = history.prefixScan(StateKeys.runPrefix(runId),
        org.apache.kafka.common.serialization.Serdes.String().serializer())) {
      while (it.hasNext()) {
        String key = it.next().key;
        String[] parts = key.split("\u001f");
        keysByStep.computeIfAbsent(Long.parseLong(parts[parts.length - 2]), s -> new ArrayList<>()).add(key);
      }
    }
    while (keysByStep.size() > settings.historySteps()) {
      keysByStep.pollFirstEntry().getValue().forEach(history::delete);
    }
  }

  /** Deletes every key of the run in a (run-prefixed) store. */
  private static void deletePrefix(KeyValueStore<String, byte[]> store, String runId) {
    List<String> keys = new ArrayList<>();
    try (KeyValueIterator<String, byte[]> it = store.prefixScan(StateKeys.runPrefix(runId),
        org.apache.kafka.common.serialization.Serdes.String().serializer())) {
      it.forEachRemaining(kv -> keys.add(kv.key));
    }
    keys.forEach(store::delete);
  }

  private void reject(Record<String, byte[]> record, String runId, RejectReason reason, String detail) {
    Rejected.Builder r = Rejected.newBuilder()
        .setReason(reason)
        .setDetail(detail)
        .setRunId(runId == null ? "" : runId)
        .setRecordSizeBytes(record.value() == null ? 0 : record.value().length)
        .setRejectedTimeMicros(System.currentTimeMillis() * 1000L);
    context.recordMetadata().ifPresent((RecordMetadata md) -> r.setSourceTopic(md.topic())
        .setSourcePartition(md.partition()).setSourceOffset(md.offset()));
    listener.onRejected(reason);
    LOG.warn("rejected record {}/{}@{} of run {}: {}: {}", r.getSourceTopic(), r.getSourcePartition(),
        r.getSourceOffset(), UntrustedText.quote(r.getRunId()), reason, UntrustedText.quote(detail));
    context.forward(new Record<>(runId, r.build().toByteArray(), record.timestamp()),
        FlatmonTopology.DEAD_LETTER_SINK);
  }
}
