package io.flatmon.web;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.flatmon.proto.v1.Estimate;
import io.flatmon.proto.v1.FlatnessResult;
import io.flatmon.proto.v1.SignalAction;
import io.flatmon.proto.v1.SignalReason;
import io.flatmon.proto.v1.Split;
import io.flatmon.proto.v1.TrainerSignal;
import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;

/** The demo's PNG of a run: curves in the train/eval colours and the STOP marker where the signal was. */
class CurvesImageTest {
  @Test
  void drawsCurvesAndTheStopMarker() throws Exception {
    List<FlatnessResult> results = new ArrayList<>();
    for (int step = 20; step <= 400; step += 20) {
      for (Split split : List.of(Split.TRAIN, Split.EVAL)) {
        double t = step / 400.0;
        results.add(FlatnessResult.newBuilder().setRunId("r").setLayer("conv2").setStep(step).setSplit(split)
            .setFinal(true).setLabelledSamples(64)
            .setRelativeFlatness(Estimate.newBuilder().setMean(10 - 5 * t + (split == Split.EVAL ? 1 : 0))
                .setStandardError(0.5))
            .setHessianTrace(Estimate.newBuilder().setMean(3 + t).setStandardError(0.2))
            .setLoss(Estimate.newBuilder().setMean(split == Split.TRAIN ? 2 - t : 2 - 0.5 * t))
            .setAccuracy(Estimate.newBuilder().setMean(0.5 + 0.4 * t)).build());
      }
    }
    List<TrainerSignal> signals = List.of(TrainerSignal.newBuilder().setRunId("r").setStep(300)
        .setAction(SignalAction.STOP).setReason(SignalReason.PATIENCE_EXHAUSTED).build());
    Path png = Path.of("target", "curves-image-test.png");
    Files.createDirectories(png.getParent());
    CurvesImage.write(png, "test run", null, results, signals);
    BufferedImage image = ImageIO.read(png.toFile());
    assertEquals(1200, image.getWidth());
    assertTrue(count(image, 0x1f5fbf) > 300, "train curves drawn");
    assertTrue(count(image, 0xe8590c) > 300, "eval curves drawn");
    // The STOP marker: a vertical red line at step 300 in every panel, the tallest red run of pixels.
    int best = 0;
    int bestX = -1;
    for (int x = 0; x < image.getWidth(); x++) {
      int run = 0;
      for (int y = 0; y < image.getHeight(); y++) {
        run = (image.getRGB(x, y) & 0xffffff) == 0xc62828 ? run + 1 : 0;
        if (run > best) {
          best = run;
          bestX = x;
        }
      }
    }
    assertTrue(best > 200, "a STOP line across a panel: " + best);
    // Left panels' plot areas span x 82..580 for steps 20..400: step 300 is at 82 + 280/380 * 498 ≈ 449
    // (right panels: 590 further).
    assertTrue(Math.abs(bestX - 449) <= 2 || Math.abs(bestX - 449 - 590) <= 2, "STOP at step 300, x=" + bestX);
  }

  private static int count(BufferedImage image, int rgb) {
    int n = 0;
    for (int y = 0; y < image.getHeight(); y++) {
      for (int x = 0; x < image.getWidth(); x++) {
        n += (image.getRGB(x, y) & 0xffffff) == rgb ? 1 : 0;
      }
    }
    return n;
  }
}
