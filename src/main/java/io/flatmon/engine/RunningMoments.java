package io.flatmon.engine;

import io.flatmon.proto.v1.MomentsState;

/**
 * Count, mean and M2 = Σ(x − mean)² of a stream of values, updated by Welford's rule and merged by
 * Chan et al.'s pairwise rule, so any split of the samples into parts gives the one-pass result up
 * to rounding.
 */
public final class RunningMoments {
  private long count;
  private double mean;
  private double m2;

  public void add(double x) {
    count++;
    double delta = x - mean;
    mean += delta / count;
    m2 += delta * (x - mean);
  }

  public void merge(RunningMoments other) {
    if (other.count == 0) {
      return;
    }
    if (count == 0) {
      count = other.count;
      mean = other.mean;
      m2 = other.m2;
      return;
    }
    long n = count + other.count;
    double delta = other.mean - mean;
    mean += delta * other.count / n;
    m2 += other.m2 + delta * delta * ((double) count * other.count / n);
    count = n;
  }

  public long count() {
    return count;
  }

  /** The mean, NaN when empty. */
  public double mean() {
    return count == 0 ? Double.NaN : mean;
  }

  /** Standard error of the mean, s/√n with the unbiased s; NaN below two values. */
  public double standardError() {
    if (count < 2) {
      return Double.NaN;
    }
    return Math.sqrt(m2 / (count - 1) / count);
  }

  MomentsState toState() {
    return MomentsState.newBuilder().setCount(count).setMean(mean).setM2(m2).build();
  }

  static RunningMoments fromState(MomentsState state) {
    RunningMoments m = new RunningMoments();
    m.count = state.getCount();
    m.mean = state.getMean();
    m.m2 = state.getM2();
    return m;
  }
}
