package io.flatmon.engine;

/**
 * The engine cannot hold a batch: its arrays would exceed what this JVM may allocate (JavaCPP's
 * off-heap cap, the heap, int indexing), or the native allocator refused. The batch is not measured;
 * the engine stays usable for the next one.
 */
public final class EngineCapacityException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public EngineCapacityException(String message) {
    super(message);
  }

  public EngineCapacityException(String message, Throwable cause) {
    super(message, cause);
  }
}
