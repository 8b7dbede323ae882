#!/usr/bin/env bash
# perf/flamegraph.sh: records a dave node under load with `perf record` and renders a flamegraph.
#
# Installs what is missing: `perf` from the distribution (apt-get install linux-perf) and
# inferno (cargo install inferno). Builds the release examples (the release profile keeps line
# tables: symbols and inlined frames resolve), starts node_server on 127.0.0.1, drives it with
# loadgen, records the node's threads for RECORD seconds, and writes
#   perf/out/flamegraph-<scenario>.svg          (and the folded stacks beside it)
# With COMMIT=1 the SVG is also copied to perf/flamegraph-<scenario>.svg (the committed one).
# Everything it starts is killed on exit.
#
# Usage: perf/flamegraph.sh [get|get-owner|put|put-batch-o2]    (default: get, 128 GETs in flight)
#        RECORD=4 CALLGRAPH=dwarf COMMIT=1 perf/flamegraph.sh get
# CALLGRAPH: dwarf (default: Rust release code has no frame pointers, so `-g`, i.e. fp, would
# cut most stacks short) or fp.
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIO=${1:-get}
RECORD=${RECORD:-4}
CALLGRAPH=${CALLGRAPH:-dwarf}
FREQ=${FREQ:-1999}
OUT=perf/out
BIN=$OUT/bin
NODE=127.0.0.1:7010
STATS=127.0.0.1:7989
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v perf >/dev/null 2>&1; then
    echo "perf missing: installing linux-perf" >&2
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd=sudo
    $sudo_cmd apt-get update -q && $sudo_cmd apt-get install -y -q linux-perf
fi
if ! command -v inferno-flamegraph >/dev/null 2>&1; then
    echo "inferno missing: cargo install inferno" >&2
    cargo install inferno --locked
fi

mkdir -p "$BIN"
cargo build --release --example loadgen --example node_server
cp target/release/examples/loadgen target/release/examples/node_server "$BIN/"

case "$SCENARIO" in
get) NODE_FLAGS=() LOAD=(get --in-flight 128) ;;
get-owner) NODE_FLAGS=(--get-path owner) LOAD=(get --in-flight 128) ;;
put) NODE_FLAGS=() LOAD=(put --rate 30000) ;;
put-batch-o2) NODE_FLAGS=(--signature-check batch --owner-threads 2) LOAD=(put --rate 30000) ;;
*)
    echo "usage: $0 [get|get-owner|put|put-batch-o2]" >&2
    exit 2
    ;;
esac

"$BIN/node_server" serve --listen "$NODE" --stats-addr "$STATS" --max-seconds 120 "${NODE_FLAGS[@]}" \
    >"$OUT/flamegraph-node.log" 2>&1 &
NODE_PID=$!
PIDS+=("$NODE_PID")
"$BIN/loadgen" stats --stats-addr "$STATS" --wait 10 >/dev/null

# Load for longer than the recording; the recording starts once the keys are loaded.
"$BIN/loadgen" --json "${LOAD[@]}" --target "$NODE" --stats-addr "$STATS" --server-pid "$NODE_PID" \
    --duration $((RECORD + 3)) >"$OUT/flamegraph-$SCENARIO-load.json" 2>>"$OUT/loadgen.log" &
LOAD_PID=$!
PIDS+=("$LOAD_PID")
sleep 2

DATA=$OUT/perf-$SCENARIO.data
if [ "$CALLGRAPH" = fp ]; then CG=(-g); else CG=(--call-graph dwarf,16384); fi
perf record -F "$FREQ" "${CG[@]}" -p "$NODE_PID" -o "$DATA" -- sleep "$RECORD" 2>"$OUT/perf-record.log"
wait "$LOAD_PID" || true

FOLDED=$OUT/flamegraph-$SCENARIO.folded
SVG=$OUT/flamegraph-$SCENARIO.svg
perf script -i "$DATA" 2>/dev/null | inferno-collapse-perf >"$FOLDED"
inferno-flamegraph --title "dave node: $SCENARIO (${LOAD[*]}), $(git rev-parse --short HEAD)" \
    --minwidth 0.5 <"$FOLDED" >"$SVG"
echo "flamegraph: $SVG ($(du -h "$SVG" | cut -f1)); load report: $OUT/flamegraph-$SCENARIO-load.json"
# The hottest frames by self time, for the README.
echo "top frames (self samples):"
awk '{n=$NF; $NF=""; k=split($0, f, ";"); gsub(/ +$/, "", f[k]); self[f[k]]+=n; total+=n}
     END {for (s in self) printf "%6.2f%%  %s\n", 100*self[s]/total, s}' "$FOLDED" |
    sort -rn | head -25 || true # head closes the pipe early; not a failure
if [ "${COMMIT:-0}" = 1 ]; then
    cp "$SVG" "perf/flamegraph-$SCENARIO.svg"
    echo "copied to perf/flamegraph-$SCENARIO.svg"
fi
