package io.flatmon.service;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * A data directory that lives as long as one command (a demo or a benchmark): a fresh temporary
 * directory, deleted with everything in it on {@link #close} — and on JVM exit if the command is
 * interrupted — or a directory the user named, which is kept. A pipeline benchmark writes about
 * 50 MB/s of broker log and state, so an undeleted temporary directory fills a disk within hours.
 */
public final class ScratchDirectory implements AutoCloseable {
  private final Path path;
  private final boolean temporary;
  private final Thread onExit;

  /** @param given the user's directory (kept), or null for a temporary one named with prefix */
  public ScratchDirectory(Path given, String prefix) throws IOException {
    this.temporary = given == null;
    this.path = temporary ? Files.createTempDirectory(prefix) : given.toAbsolutePath();
    Files.createDirectories(path);
    this.onExit = temporary ? new Thread(() -> delete(path), "flatmon-scratch-cleanup") : null;
    if (onExit != null) {
      Runtime.getRuntime().addShutdownHook(onExit);
    }
  }

  public Path path() {
    return path;
  }

  /** Whether {@link #close} deletes it. */
  public boolean temporary() {
    return temporary;
  }

  @Override
  public void close() {
    if (!temporary) {
      return;
    }
    try {
      Runtime.getRuntime().removeShutdownHook(onExit);
    } catch (IllegalStateException alreadyExiting) {
      // the hook runs anyway
    }
    delete(path);
  }

  /** Deletes a tree, best effort (a file another process still holds open may stay). */
  static void delete(Path dir) {
    try (Stream<Path> walk = Files.walk(dir)) {
      walk.sorted(Comparator.reverseOrder()).forEach(p -> {
        try {
          Files.deleteIfExists(p);
        } catch (IOException ignored) {
          // best effort
        }
      });
    } catch (IOException ignored) {
      // best effort
    }
  }
}
