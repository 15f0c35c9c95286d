package io.flatmon.engine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.bench.SyntheticHeads;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

/**
 * The shared engine pool: same numbers as one engine, from any number of callers and with a batch's
 * chunks spread over the workers, Ω once per snapshot.
 */
class EnginePoolTest {

  private record Case(HeadSnapshot head, ActivationBatch batch, double[] rho, BatchCurvature expected) {
  }

  /**
   * Heads wide enough for blocks and, at C = 512, several chunks per batch (five samples each), with
   * and without Z and κ_norm, each measured alone first.
   */
  private static List<Case> cases() {
    List<Case> cases = new ArrayList<>();
    int[] channels = {512, 8, 256, 8, 512, 16};
    for (int i = 0; i < 6; i++) {
      SyntheticHeads random = new SyntheticHeads(40 + i);
      HeadSnapshot head = random.head(channels[i], 4, new ConvGeometry(3, 3, 1, 1, 1, 1, 1, 1), 10,
          Activation.of(i % 3 == 0 ? Activation.Kind.GELU : Activation.Kind.RELU), true, i % 2 == 1, 1.0);
      ActivationBatch batch = random.batch(head, channels[i] == 512 ? 17 : 9, 4, 4, true);
      if (i % 3 == 1) {
        batch = random.withPreActivation(head, batch, 0.3);
      }
      double[] rho = i % 2 == 0 ? batch.inputChannelRms() : null;
      cases.add(new Case(head, batch, rho, new CurvatureEngine().compute(head, batch, rho)));
    }
    return cases;
  }

  @Test
  void concurrentCallersGetWhatOneEngineComputes() throws Exception {
    List<Case> cases = cases();
    ExecutorService callers = Executors.newFixedThreadPool(6);
    try (EnginePool pool = new EnginePool(2)) {
      List<Future<BatchCurvature>> results = new ArrayList<>();
      for (int round = 0; round < 4; round++) {
        for (Case c : cases) {
          results.add(callers.submit(() -> pool.compute(c.head(), c.batch(), c.rho())));
        }
      }
      for (int i = 0; i < results.size(); i++) {
        Case c = cases.get(i % cases.size());
        BatchCurvature got = results.get(i).get();
        // The same engine code on the same inputs: bit-for-bit equal, whichever worker ran it.
        assertArrayEquals(c.expected().hessianTrace(), got.hessianTrace());
        assertArrayEquals(c.expected().relativeFlatness(), got.relativeFlatness());
        assertArrayEquals(c.expected().relativeFlatnessNormalized(), got.relativeFlatnessNormalized());
        assertArrayEquals(c.expected().loss(), got.loss());
      }
      // Both workers measured every head, yet each snapshot was prepared (Ω formed) for the pool once.
      assertEquals(cases.size(), pool.preparedHeads());
    } finally {
      callers.shutdownNow();
    }
  }

  @Test
  void aLoneBatchIsSharedByTheWorkersAndGivesTheSameNumbers() {
    Case c = cases().get(0);
    try (EnginePool pool = new EnginePool(3)) {
      for (int round = 0; round < 3; round++) {
        BatchCurvature got = pool.compute(c.head(), c.batch(), c.rho());
        assertArrayEquals(c.expected().relativeFlatness(), got.relativeFlatness());
        assertArrayEquals(c.expected().relativeFlatnessNormalized(), got.relativeFlatnessNormalized());
        assertArrayEquals(c.expected().hessianTrace(), got.hessianTrace());
      }
      // 17 samples are 4 chunks of at most 5: the idle workers took some of them.
      assertTrue(pool.sharedChunks() > 0, "no chunk ran outside its batch's worker");
    }
  }

  @Test
  void callerThreadEnginesWithoutWorkers() {
    Case c = cases().get(0);
    try (EnginePool inline = new EnginePool(0)) {
      assertEquals(0, inline.threads());
      assertArrayEquals(c.expected().relativeFlatness(), inline.compute(c.head(), c.batch(), c.rho())
          .relativeFlatness());
    }
  }

  @Test
  void engineExceptionsReachTheCallerUnchanged() {
    SyntheticHeads random = new SyntheticHeads(5);
    HeadSnapshot head = random.head(8, 4, ConvGeometry.of(3, 3), 10, Activation.of(Activation.Kind.RELU),
        false, false, 1.0);
    HeadSnapshot other = random.head(8, 5, ConvGeometry.of(3, 3), 10, Activation.of(Activation.Kind.RELU),
        false, false, 1.0);
    ActivationBatch wrong = random.batch(other, 3, 4, 4, true);
    try (EnginePool pool = new EnginePool(1)) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> pool.compute(head, wrong, null));
      assertTrue(e.getMessage() != null && !e.getMessage().isEmpty());
    }
  }

  @Test
  void negativeThreadCountIsRefused() {
    assertThrows(IllegalArgumentException.class, () -> new EnginePool(-1));
  }

  @Test
  void aClosedPoolRefusesWork() {
    Case c = cases().get(1);
    EnginePool pool = new EnginePool(1);
    pool.close();
    assertThrows(IllegalStateException.class, () -> pool.compute(c.head(), c.batch(), c.rho()));
  }
}
