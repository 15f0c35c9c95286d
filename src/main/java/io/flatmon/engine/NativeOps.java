package io.flatmon.engine;

import java.lang.ref.Reference;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.ops.impl.broadcast.BroadcastMulOp;
import org.nd4j.linalg.api.ops.impl.shape.Gather;
import org.nd4j.linalg.api.ops.impl.transforms.pairwise.arithmetic.AddOp;
import org.nd4j.linalg.api.ops.impl.transforms.pairwise.arithmetic.MulOp;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The ND4J calls the engine makes where ND4J itself does not keep their arrays alive through the
 * native call, done in a way that does.
 *
 * <p>Why: ND4J hands native code only the arrays' opaque buffer handles, and when a DataBuffer is
 * collected its deallocator deletes the handle (and, for an array that owns its memory, the memory)
 * — also while a native call still uses it. Every reshape or view has a DataBuffer of its own, so a
 * temporary passed straight into a call, or a receiver whose result is discarded, is collectable as
 * soon as its handle has been read. ND4J's custom ops (matmul, multiply, gather…) keep their arrays
 * in the op context until the call returns, and its legacy scalar, transform and reduce ops keep the
 * op (which refers to them) alive; but its legacy broadcast ops ({@code muliRowVector},
 * {@code addiColumnVector}) and {@code pullRows} drop every Java reference before the native call,
 * including to what they create themselves (the broadcast op with its dimensions, the row indices). A GC on
 * another thread then crashes the JVM: SIGSEGV in {@code DataBuffer::primary()} or
 * {@code TadDescriptor::TadDescriptor}, seen in both after minutes of the pipeline benchmark. So the
 * engine uses the custom ops below instead, or a broadcast op it builds and keeps itself, and holds
 * every temporary of a batch in a {@link Scope} opened around the whole computation (or, in small
 * helpers, a local passed to {@link #keep} after its last native use).
 */
final class NativeOps {
  private NativeOps() {
  }

  /**
   * Arrays held strongly until the scope closes: opened with try-with-resources around a
   * computation, every temporary registered with {@link #hold} as it is created stays reachable
   * until the last native call of that computation has returned — by construction, instead of a
   * {@link #keep} after each last use that a later edit can forget.
   */
  static final class Scope implements AutoCloseable {
    private final java.util.ArrayList<Object> held = new java.util.ArrayList<>();

    /** Returns a, held until {@link #close}. */
    <T> T hold(T a) {
      held.add(a);
      return a;
    }

    @Override
    public void close() {
      Reference.reachabilityFence(held);
      held.clear();
    }
  }

  static Scope scope() {
    return new Scope();
  }

  /** Marks the arrays as in use up to this point (a reachability fence on each). */
  static void keep(Object... arrays) {
    for (Object a : arrays) {
      Reference.reachabilityFence(a);
    }
  }

  /** z = x ∘ y elementwise, y broadcast to x's shape (e.g. a [1, n] row over [m, n]); z may be x. */
  static void multiply(INDArray x, INDArray y, INDArray z) {
    Nd4j.exec(new MulOp(x, y, z));
  }

  /**
   * x[i, :] ∘= row for every row of a [m, n] array: ND4J's legacy row broadcast (the custom
   * multiply's broadcast measured about 15 % more engine time per sample on the pipeline benchmark),
   * with the op kept alive — it holds x, the row and the broadcast dimensions the native call reads.
   */
  static void multiplyRowsInPlace(INDArray x, INDArray row) {
    BroadcastMulOp op = new BroadcastMulOp(x, row, x, 1);
    Nd4j.getExecutioner().exec(op);
    keep(op, x, row);
  }

  /** z = x + y elementwise, y broadcast to x's shape; z may be x. */
  static void add(INDArray x, INDArray y, INDArray z) {
    Nd4j.exec(new AddOp(x, y, z));
  }

  /** target[i] = source[rows[i]] along the first axis (target has rows.length rows). */
  static void gatherRows(INDArray source, int[] rows, INDArray target) {
    Gather gather = new Gather(source, Nd4j.createFromArray(rows), 0);
    gather.addOutputArgument(target);
    Nd4j.exec(gather);
  }
}
