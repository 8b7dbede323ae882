#!/usr/bin/env bash
# perf/put_capacity.sh: PUTs stored per second as the offered rate grows, for one or more
# commits of the node in the same rounds (issue 14: "PUTs stored ≥ 0.8 of the batched
# verification rate").
#
# For each REV it builds `node_server` (a detached worktree under perf/out, one shared target
# directory) and copies it to perf/out/bin-cap/REV; `loadgen` is this tree's. Then ROUNDS
# rounds, each: the batched verification rate on both cores (`loadgen verify --mode batch
# --threads 2`, no key cache: the baseline), then for every fraction F in FRACTIONS and every
# REV, a fresh node and `loadgen put` at F x that rate for DUR seconds (2 client threads, fresh
# valid records of 64 owners), then the baseline again. The ratio divides by the higher of the
# round's two baselines. Interleaved, so the host's noise hits every REV alike.
#
# Writes perf/out/putcap-<stamp>.jsonl and prints, per REV and fraction, the medians over the
# rounds of stored/baseline and of the node's CPU per stored PUT; "capacity" is the median
# over rounds of the best fraction's ratio. Every node is killed on exit; every run is bounded
# by --duration and the node's --max-seconds.
#
# A REV may carry node_server flags after commas: `HEAD,--put-verify-stage,true` is a node of
# HEAD started with `--put-verify-stage true` (its label: the REV's short hash and the flags).
# The REV `sink` is not a commit: this tree's `verify_sink` (perf/verify_sink.rs), a server
# that only receives and batch-verifies PUTs, measured like a node in the same rounds: the most
# any node stores on this machine with the load generator beside it.
#
# SPLIT=1 gives the server one whole core and the load generator the other: the server (node or
# sink) runs under `taskset -c 0` (its threads, its receiver pinning and its verification
# permits then see one core), `loadgen put` under `taskset -c 1`, and the baseline is the
# batched verification rate of one thread on core 0. It answers "does the node store 0.8 of
# the verification rate of the cores it has, when the generator does not share them?"; the
# default answers the issue's question as asked (both cores for the node, the generator on
# them too). Loopback delivery runs in the sender's context, so with SPLIT the kernel's
# receive path up to the node's socket is charged to core 1, as a NIC's interrupts would be
# to another core.
#
# GSO=N sends the PUTs N per UDP GSO send (`loadgen put --gso-segments`) instead of one
# `sendmmsg` entry each, as an independent client would: the generator then costs the shared
# machine one trip through the network stack per N PUTs, and a node whose PUT lane takes
# coalesced runs (`put_lane_gro`, the default) receives each send whole. Give the sink the same
# with `sink,--gro,true`; a node without it with `HEAD,--put-lane-gro,false`.
#
# Usage: perf/put_capacity.sh REV...            # ROUNDS=5 DUR=3 FRACTIONS="0.6 0.8 1.0 1.2"
#        SPLIT=1 perf/put_capacity.sh HEAD sink   # one core each: server, generator
#        perf/put_capacity.sh HEAD sink           # the node beside the verify-only floor
#        ROUNDS=1 FRACTIONS="1.0" perf/put_capacity.sh HEAD HEAD,--put-verify-stage,true
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DUR=${DUR:-3}
FRACTIONS=${FRACTIONS:-"0.6 0.8 1.0 1.2"}
GSO=${GSO:-0}
# Fresh records for the highest fraction's run (1.2 x ~130 k/s x 3 s) with room to spare.
RECORDS=${RECORDS:-800000}
# shellcheck source=perf/split_cores.sh
source perf/split_cores.sh
[ $# -ge 1 ] || {
    echo "usage: perf/put_capacity.sh REV..." >&2
    exit 2
}
OUT=perf/out
BIN=$OUT/bin-cap
NODE=127.0.0.1:7010
STATS=127.0.0.1:7011
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$OUT/putcap-$STAMP.jsonl
NODE_PID=""

stop() {
    if [ -n "$NODE_PID" ]; then
        kill "$NODE_PID" 2>/dev/null || true
        wait "$NODE_PID" 2>/dev/null || true
    fi
    NODE_PID=""
}
trap stop EXIT
trap 'exit 130' INT TERM

mkdir -p "$BIN"
cargo build --release --example loadgen
cp target/release/examples/loadgen "$BIN/loadgen"
LG=$BIN/loadgen
REVS=()
for arg in "$@"; do
    rev=${arg%%,*}
    if [ "$rev" = sink ]; then
        # Not a commit: this tree's verify_sink, the floor for any node's PUT path.
        REVS+=("$arg")
        cargo build --release --example verify_sink
        mkdir -p "$BIN/sink"
        cp target/release/examples/verify_sink "$BIN/sink/"
        continue
    fi
    short=$(git rev-parse --short "$rev")
    flags=""
    [ "$arg" = "$rev" ] || flags=,${arg#*,}
    REVS+=("$short$flags")
    [ -x "$BIN/$short/node_server" ] && continue
    tree=$OUT/worktree-$short
    git worktree add --detach --force "$tree" "$short" >/dev/null
    (cd "$tree" && CARGO_TARGET_DIR=../target-cap cargo build --release --example node_server)
    mkdir -p "$BIN/$short"
    cp "$OUT/target-cap/release/examples/node_server" "$BIN/$short/"
    git worktree remove --force "$tree"
done

{
    echo "date: $(date -u +%FT%TZ)"
    echo "revs: ${REVS[*]}; loadgen from $(git rev-parse --short HEAD)"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), nproc $(nproc), kernel $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "rounds: $ROUNDS, seconds per run: $DUR, fractions: $FRACTIONS, split cores: $SPLIT, PUTs per GSO send: $GSO"
} | tee "$OUT/putcap-machine-$STAMP.txt"

"$LG" prepare --records "$RECORDS" >/dev/null

baseline() {
    "${SERVER_CPU[@]}" "$LG" --json --tag "$1" --run "$2" verify --mode batch \
        --threads "$VERIFY_THREADS" --duration 2 |
        tee -a "$RESULTS" | grep -o '"verified_per_s":[0-9.]*' | cut -d: -f2
}

for run in $(seq 1 "$ROUNDS"); do
    vb=$(baseline verify-start "$run")
    echo "== round $run of $ROUNDS: baseline $vb/s (load average $(cut -d' ' -f1 /proc/loadavg))"
    for f in $FRACTIONS; do
        for rev in "${REVS[@]}"; do
            IFS=, read -r -a words <<<"$rev"
            if [ "${words[0]}" = sink ]; then
                "${SERVER_CPU[@]}" "$BIN/sink/verify_sink" --listen "$NODE" --stats-addr "$STATS" \
                    --max-seconds 120 "${words[@]:1}" >>"$OUT/putcap-node.log" 2>&1 &
            else
                "${SERVER_CPU[@]}" "$BIN/${words[0]}/node_server" serve --listen "$NODE" --stats-addr "$STATS" \
                    --max-seconds 120 "${words[@]:1}" >>"$OUT/putcap-node.log" 2>&1 &
            fi
            NODE_PID=$!
            "$LG" stats --stats-addr "$STATS" --wait 60 >/dev/null
            rate=$(awk "BEGIN {print int($vb * $f)}")
            "${CLIENT_CPU[@]}" "$LG" --json --tag "put-$rev-$f" --run "$run" put --target "$NODE" \
                --stats-addr "$STATS" --server-pid "$NODE_PID" --duration "$DUR" \
                --rate "$rate" --offset 8192 --records "$RECORDS" --gso-segments "$GSO" >>"$RESULTS" ||
                echo "round $run put-$rev-$f: failed" >&2
            stop
        done
    done
    baseline verify-end "$run" >/dev/null
done

python3 - "$RESULTS" "$SPLIT" "$FRACTIONS" "${REVS[@]}" <<'EOF'
import json, statistics, sys
path, split, fractions, revs = sys.argv[1], sys.argv[2] == "1", sys.argv[3].split(), sys.argv[4:]
rows = [json.loads(l) for l in open(path)]
base = {}
for r in rows:
    if r.get("tag", "").startswith("verify-"):
        base[r["run"]] = max(base.get(r["run"], 0), r["verified_per_s"])
print(f"baseline (batched verification, {'core 0' if split else 'both cores'}), median of rounds: "
      f"{statistics.median(base.values()):.0f}/s")
print("| node | offered / baseline | stored / baseline (rounds) | stored/s | CPU µs per stored PUT |")
print("|---|---:|---|---:|---:|")
best = {rev: {} for rev in revs}
for rev in revs:
    for f in fractions:
        runs = [r for r in rows if r.get("tag") == f"put-{rev}-{f}"]
        if not runs:
            continue
        ratios = [r["stored_per_s"] / base[r["run"]] for r in runs]
        for r, x in zip(runs, ratios):
            best[rev][r["run"]] = max(best[rev].get(r["run"], 0), x)
        cpu = statistics.median(r["cpu_us_per_stored"] for r in runs)
        stored = statistics.median(r["stored_per_s"] for r in runs)
        print(f"| {rev} | {f} | **{statistics.median(ratios):.2f}** "
              f"({' '.join(f'{x:.2f}' for x in ratios)}) | {stored:.0f} | {cpu:.1f} |")
for rev in revs:
    vals = list(best[rev].values())
    print(f"capacity {rev}: median best ratio {statistics.median(vals):.2f} "
          f"(rounds {' '.join(f'{x:.2f}' for x in vals)})")
EOF
echo "results: $RESULTS"
