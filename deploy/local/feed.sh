#!/usr/bin/env bash
# Publishes synthetic training runs to the local flatmon started by deploy/local/run.sh, so the Grafana
# dashboards have data (deploy/local/DemoFeed.java). Ctrl-C ends the runs (RunEnded).
#
#   deploy/local/feed.sh [bootstrap (127.0.0.1:9092)] [runs (3)] [steps, 0 = until Ctrl-C] [period s (5)]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# bin/flatmon builds the project when needed; --version is the cheapest way to make sure it is built.
"$root/bin/flatmon" --version >/dev/null
exec java -cp "$root/target/classes:$(cat "$root/target/classpath.txt")" \
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn "$here/DemoFeed.java" "$@"
