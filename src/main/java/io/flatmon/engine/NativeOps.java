package io.flatmon.engine;

import java.lang.ref.Reference;

/**
 * Keeps ND4J arrays reachable until the native operations that read or write them have returned.
 *
 * <p>Why: ND4J's legacy operations (broadcast, pairwise, scalar, transform, pullRows; not the custom
 * ops such as matmul, whose context holds its arrays) pass the native code only the arrays' opaque
 * buffer handles. Every reshape or view has a DataBuffer of its own, and when that DataBuffer is
 * collected ND4J's deallocator deletes its native handle — also while a native call is still using
 * it, because nothing on the Java side refers to a temporary (a reshape passed straight into a call,
 * a receiver whose result is discarded) once the handle has been read. A GC on another thread then
 * crashes the JVM (SIGSEGV in {@code DataBuffer::primary()}: seen in {@code muliRowVector} and
 * {@code pullRows} after minutes of the pipeline benchmark) or, for a fresh array that owns its
 * memory, reads freed memory. So every such temporary is held in a local and passed to {@link #keep}
 * after its last native use.
 */
final class NativeOps {
  private NativeOps() {
  }

  /** Marks the arrays as in use up to this point (a reachability fence on each). */
  static void keep(Object... arrays) {
    for (Object a : arrays) {
      Reference.reachabilityFence(a);
    }
  }
}
