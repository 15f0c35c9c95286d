#!/usr/bin/env bash
# Starts a local flatmon (`bin/flatmon serve`, embedded Kafka broker) and Debian's Prometheus scraping its
# /metrics every 5 s (deploy/local/prometheus.yml); Ctrl-C stops both.
#
#   deploy/local/run.sh [extra `flatmon serve` options]
#
# Environment:
#   FLATMON_LOCAL_STATE  where flatmon's and Prometheus' data go
#                        (default ${XDG_STATE_HOME:-~/.local/state}/flatmon-local; kept across runs)
#   PROMETHEUS_PORT      Prometheus' HTTP port on 127.0.0.1 (default 9090)
#   PROMETHEUS           the prometheus binary (default: prometheus on PATH, else /usr/bin/prometheus)
#
# flatmon's query API and /metrics are on http://127.0.0.1:9404, Kafka on 127.0.0.1:9092,
# Prometheus on http://127.0.0.1:9090. Point Grafana at the latter (docs/grafana.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="${FLATMON_LOCAL_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/flatmon-local}"
prom_port="${PROMETHEUS_PORT:-9090}"
prometheus="${PROMETHEUS:-$(command -v prometheus || echo /usr/bin/prometheus)}"

if [[ ! -x "$prometheus" ]]; then
  echo "run.sh: prometheus not found; install it (Debian/Ubuntu: sudo apt-get install prometheus)" >&2
  exit 127
fi
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if port_busy "$prom_port"; then
  echo "run.sh: 127.0.0.1:$prom_port is taken (Debian's package starts its own prometheus service:" >&2
  echo "        'sudo systemctl stop prometheus', or run with PROMETHEUS_PORT=9091)" >&2
  exit 1
fi
for port in 9404 9092; do
  if port_busy "$port"; then
    echo "run.sh: 127.0.0.1:$port is taken; is another flatmon running?" >&2
    exit 1
  fi
done

mkdir -p "$state/flatmon" "$state/prometheus"
flatmon_pid=""
prometheus_pid=""
stopping=0
stop() {
  ((stopping)) && return
  stopping=1
  echo "run.sh: stopping..." >&2
  [[ -n "$prometheus_pid" ]] && kill -TERM "$prometheus_pid" 2>/dev/null || true
  [[ -n "$flatmon_pid" ]] && kill -TERM "$flatmon_pid" 2>/dev/null || true
  [[ -n "$prometheus_pid" ]] && wait "$prometheus_pid" 2>/dev/null || true
  [[ -n "$flatmon_pid" ]] && wait "$flatmon_pid" 2>/dev/null || true
  echo "run.sh: stopped (data kept in $state)" >&2
}
trap stop EXIT
trap 'exit 130' INT TERM

echo "run.sh: flatmon data in $state/flatmon, Prometheus data in $state/prometheus" >&2
"$root/bin/flatmon" serve --data-dir "$state/flatmon" --http-host 127.0.0.1 --http-port 9404 "$@" &
flatmon_pid=$!

"$prometheus" \
  --config.file="$here/prometheus.yml" \
  --storage.tsdb.path="$state/prometheus" \
  --storage.tsdb.retention.time=15d \
  --web.listen-address="127.0.0.1:$prom_port" \
  --log.level=warn &
prometheus_pid=$!

echo "run.sh: Prometheus on http://127.0.0.1:$prom_port (targets: http://127.0.0.1:$prom_port/targets)," \
  "flatmon metrics on http://127.0.0.1:9404/metrics; Ctrl-C stops both" >&2
# Whichever exits first (or Ctrl-C) ends the session; the EXIT trap stops the other.
set +e
wait -n "$flatmon_pid" "$prometheus_pid"
status=$?
set -e
echo "run.sh: a process exited with status $status" >&2
exit "$status"
