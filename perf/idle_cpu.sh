#!/usr/bin/env bash
# perf/idle_cpu.sh: the CPU an idle `dave node` spends per second of wall time, all its threads
# together (issue 11). Sums the first field of /proc/PID/task/*/schedstat (ns on a CPU) before
# and after a measurement window, and also reports utime+stime from /proc/PID/stat (clock ticks)
# as a cross-check.
#
# Usage:   perf/idle_cpu.sh [PEERS] [SECONDS]
#   PEERS    extra idle nodes started on loopback; the measured node lists them as edges (0)
#   SECONDS  measurement window, at least 10 (10)
# Env:     DAVE_BIN (target/release/dave), BASE_PORT (41618), WARM_S (3, or 12 with peers:
#          peers activate after their 5 s activation delay plus a ping round or two)
# Example: cargo build --release --bin dave && perf/idle_cpu.sh 0 10 && perf/idle_cpu.sh 3 10
set -euo pipefail

PEERS=${1:-0}
SECS=${2:-10}
BIN=${DAVE_BIN:-target/release/dave}
BASE_PORT=${BASE_PORT:-41618}
if [ "$PEERS" -gt 0 ]; then WARM_S=${WARM_S:-12}; else WARM_S=${WARM_S:-3}; fi
if [ "$SECS" -lt 10 ]; then echo "idle_cpu.sh: measure at least 10 s" >&2; exit 2; fi
[ -x "$BIN" ] || { echo "idle_cpu.sh: $BIN not found (cargo build --release --bin dave)" >&2; exit 2; }

pids=()
log=/dev/null
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "$log" = /dev/null ] || rm -f "$log"
}
trap cleanup EXIT

edges=()
for i in $(seq 1 "$PEERS"); do
  port=$((BASE_PORT + i))
  "$BIN" node --listen "127.0.0.1:$port" >/dev/null 2>&1 &
  pids+=($!)
  edges+=(--edge "127.0.0.1:$port")
done
log=$(mktemp)
RUST_LOG=info "$BIN" node --listen "127.0.0.1:$BASE_PORT" "${edges[@]}" >"$log" 2>&1 &
node=$!
pids+=("$node")

sleep "$WARM_S"
kill -0 "$node" 2>/dev/null || { echo "idle_cpu.sh: the node exited" >&2; exit 1; }

cpu_ns() { # sum of on-CPU ns over the node's threads
  local sum=0 t f
  for f in /proc/"$node"/task/*/schedstat; do
    read -r t _ < "$f" 2>/dev/null || continue
    sum=$((sum + t))
  done
  echo "$sum"
}
ticks() { # utime + stime of the whole process, in clock ticks
  awk '{ print $14 + $15 }' "/proc/$node/stat"
}

threads=$(ls /proc/"$node"/task | wc -l)
ns0=$(cpu_ns); t0=$(ticks); w0=$(date +%s%N)
sleep "$SECS"
ns1=$(cpu_ns); t1=$(ticks); w1=$(date +%s%N)

hz=$(getconf CLK_TCK)
active=$(grep -c " active, key " "$log" || true)
echo "peers that became active during the run (node log): $active"
awk -v ns=$((ns1 - ns0)) -v wall=$((w1 - w0)) -v tk=$((t1 - t0)) -v hz="$hz" \
    -v threads="$threads" -v peers="$PEERS" 'BEGIN {
  s = wall / 1e9
  printf "idle dave node, %d peers, %d threads, %.1f s wall\n", peers, threads, s
  printf "schedstat   %.2f ms CPU per wall second (%.1f ms in total)\n", ns / 1e6 / s, ns / 1e6
  printf "utime+stime %.2f ms CPU per wall second (%d ticks of %d Hz)\n", tk * 1000 / hz / s, tk, hz
}'
