#!/usr/bin/env bash
# perf/flood_floor.sh: how much of its GET rate a server can keep during a 5x forged-PUT flood
# on this machine, even one that never sees the flood (issue 14's flood target, ≥ 0.7).
#
# Each round runs `loadgen flood` (16 GETs in flight from 127.0.0.11, the flood from 127.0.0.12
# and .13) against three servers, one after the other:
#   node           node_server, as perf/issue14.sh's flood-x5
#   echo-seen      echo_baseline answering GETs only; it reads the flood and drops it (the floor
#                  perf/issue14.sh reports as flood-echo-x5)
#   echo-dropped   the same server while an iptables rule drops the flood's datagrams before
#                  any socket (INPUT chain, by source): what a server keeps if the flood costs
#                  it nothing at all, so only the flood's senders compete for the two vCPUs
# The ratio (GETs/s during the flood / the same client's GETs/s alone) of echo-dropped bounds
# what any server can reach here while the flood's senders share the machine.
#
# Needs root and iptables (`apt-get install iptables`); the rule is removed on exit.
# Every loadgen run is bounded by --duration; every process it starts is killed on exit.
#
# Usage: RUNS=5 DUR=3 CAPACITY=70000 GSO=0 perf/flood_floor.sh
#        GSO=32 CAPACITY=130000 perf/flood_floor.sh   # the flood in GSO runs (session 16's)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
DUR=${DUR:-3}
CAPACITY=${CAPACITY:-70000}
GSO=${GSO:-0}
OUT=perf/out
BIN=$OUT/bin-floor
NODE=127.0.0.1:7000
STATS=127.0.0.1:7999
ECHO=127.0.0.1:7001
RULE=(INPUT -p udp -s 127.0.0.12/31 -d 127.0.0.1 --dport 7001 -j DROP)
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$OUT/flood-floor-$STAMP.jsonl
PID=""

command -v iptables >/dev/null || {
    echo "needs iptables (apt-get install iptables) and root" >&2
    exit 2
}
cleanup() {
    iptables -D "${RULE[@]}" 2>/dev/null || true
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    PID=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$BIN"
cargo build --release --example loadgen --example node_server --example echo_baseline
cp target/release/examples/loadgen target/release/examples/node_server \
    target/release/examples/echo_baseline "$BIN/"
echo "commit $(git rev-parse --short HEAD), $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)," \
    "runs $RUNS x ${DUR}s, flood 5 x $CAPACITY/s, gso $GSO"

flood() { # TAG TARGET [flags...]
    local tag=$1 target=$2
    shift 2
    "$BIN/loadgen" --json --tag "$tag" --run "$RUN" flood --target "$target" --server-pid "$PID" \
        --duration "$DUR" --in-flight 16 --clients 1 --capacity "$CAPACITY" --multiplier 5 \
        --kind forged-put --gso-segments "$GSO" "$@" >>"$RESULTS" 2>>"$OUT/loadgen.log" ||
        echo "run $RUN $tag: failed (see $OUT/loadgen.log)" >&2
}

for RUN in $(seq 1 "$RUNS"); do
    "$BIN/node_server" serve --listen "$NODE" --stats-addr "$STATS" --max-seconds 600 \
        >>"$OUT/node_server.log" 2>&1 &
    PID=$!
    "$BIN/loadgen" stats --stats-addr "$STATS" --wait 120 >/dev/null
    flood node "$NODE" --stats-addr "$STATS"
    cleanup
    for mode in seen dropped; do
        "$BIN/echo_baseline" --listen "$ECHO" --answer-only-op 3 2>>"$OUT/echo_baseline.log" &
        PID=$!
        sleep 0.3
        [ "$mode" = seen ] || iptables -I "${RULE[@]}"
        flood "echo-$mode" "$ECHO" --no-handshake --skip-load
        cleanup
    done
done

python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    rows.setdefault(d["tag"], []).append(d)
print(f"{'server':<14} {'during/alone median':>20}  runs  (GETs/s during; loadgen cores)")
for tag in ("node", "echo-seen", "echo-dropped"):
    v = rows.get(tag, [])
    if not v:
        continue
    ratios = [x["get_ratio"] for x in v]
    during = statistics.median(x["get_during_flood"]["ops_per_s"] for x in v)
    cores = statistics.median(x["server"]["loadgen_cpu_cores"] for x in v)
    print(f"{tag:<14} {statistics.median(ratios):>20.3f}  {ratios}  ({during:.0f}; {cores:.2f})")
print("results:", sys.argv[1])
EOF
