#!/usr/bin/env bash
# perf/run_bench.sh: the issue-7 benchmark suite, end to end.
#
# Builds the release examples (loadgen, node_server, echo_baseline), copies them to
# perf/out/bin (so a concurrent `cargo build` cannot swap a binary mid-run), then runs every
# scenario RUNS times, interleaved (run 1 of every scenario, then run 2, ...), so the host's
# noise hits all scenarios alike and the per-run ratios compare like with like. Each scenario
# gets a fresh server on 127.0.0.1. Prints the medians and the ratios, and writes
#   perf/out/results-<stamp>.jsonl   one JSON line per measurement (loadgen --json)
#   perf/out/summary-<stamp>.md      the medians table
# Every process it starts is killed on exit (trap), and every loadgen run is bounded by
# --duration.
#
# Usage: perf/run_bench.sh                  # everything, RUNS=5, DUR=2
#        RUNS=3 DUR=1 ONLY="get put" perf/run_bench.sh
# ONLY is a list of: client get put mixed flood handoff coldstart memory (default: all of them).
# `client` is issue 14's independent-style client (one thread, 4 proven sockets, fixed window),
# node and echo server in the same run; CDUR (default 3) seconds per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
DUR=${DUR:-2}
ONLY=${ONLY:-"client get put mixed flood handoff coldstart memory"}
MEMORY_RECORDS=${MEMORY_RECORDS:-1000000}
OUT=perf/out
BIN=$OUT/bin
NODE=127.0.0.1:7000
STATS=127.0.0.1:7999
ECHO=127.0.0.1:7001
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$OUT/results-$STAMP.jsonl
SUMMARY=$OUT/summary-$STAMP.md
SERVER=""

cleanup() {
    if [ -n "$SERVER" ]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
        SERVER=""
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

want() { [[ " $ONLY " == *" $1 "* ]]; }

mkdir -p "$BIN"
cargo build --release --example loadgen --example node_server --example echo_baseline \
    --example handoff
cp target/release/examples/loadgen target/release/examples/node_server \
    target/release/examples/echo_baseline target/release/examples/handoff "$BIN/"

{
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' (src/ has uncommitted changes)')"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
    echo "nproc: $(nproc)"
    echo "kernel: $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "runs: $RUNS, seconds per measurement: $DUR"
} | tee "$OUT/machine-$STAMP.txt"

start_node() {
    "$BIN/node_server" serve --listen "$NODE" --stats-addr "$STATS" --max-seconds 300 "$@" \
        >>"$OUT/node_server.log" 2>&1 &
    SERVER=$!
    "$BIN/loadgen" stats --stats-addr "$STATS" --wait 10 >/dev/null
}

start_echo() {
    "$BIN/echo_baseline" --listen "$ECHO" 2>>"$OUT/echo_baseline.log" &
    SERVER=$!
    sleep 0.3
}

stop_server() { cleanup; }

# lg TAG ARGS...: one loadgen measurement, appended to the results.
lg() {
    local tag=$1
    shift
    "$BIN/loadgen" --json --tag "$tag" --run "$RUN" "$@" >>"$RESULTS" 2>>"$OUT/loadgen.log" ||
        echo "run $RUN $tag: failed (see $OUT/loadgen.log)" >&2
}

# node_get TAG IN_FLIGHT NODE_FLAGS...: a fresh node, loaded, then GETs.
node_get() {
    local tag=$1 inflight=$2
    shift 2
    start_node "$@"
    lg "$tag" get --target "$NODE" --stats-addr "$STATS" --server-pid "$SERVER" \
        --duration "$DUR" --in-flight "$inflight"
    stop_server
}

# The last value of FIELD in the results for TAG in this run.
field() {
    grep "\"tag\":\"$1\"" "$RESULTS" | grep "\"run\":$RUN," | tail -1 |
        grep -o "\"$2\":[0-9.]*" | head -1 | cut -d: -f2
}

# put_at TAG RATE NODE_FLAGS...: a fresh node, PUTs at RATE.
put_at() {
    local tag=$1 rate=$2
    shift 2
    start_node "$@"
    lg "$tag" put --target "$NODE" --stats-addr "$STATS" --server-pid "$SERVER" \
        --duration "$DUR" --rate "$rate"
    stop_server
}

# Records for the PUT runs: computed once (cached in perf/out).
"$BIN/loadgen" prepare --records 400000 >/dev/null

CDUR=${CDUR:-3}
ECHO_PID=""
stop_echo() {
    if [ -n "$ECHO_PID" ]; then
        kill "$ECHO_PID" 2>/dev/null || true
        wait "$ECHO_PID" 2>/dev/null || true
        ECHO_PID=""
    fi
}
trap 'cleanup; stop_echo' EXIT

for RUN in $(seq 1 "$RUNS"); do
    echo "== run $RUN of $RUNS (load average $(cut -d' ' -f1 /proc/loadavg))"
    if want client; then
        # Node and echo server up together; the client measures one then the other (the order
        # alternates with the run number), so both see the same moment of the host's noise.
        "$BIN/echo_baseline" --listen "$ECHO" 2>>"$OUT/echo_baseline.log" &
        ECHO_PID=$!
        start_node
        for f in 1 128; do
            # shellcheck disable=SC2046 # the second run finds the keys loaded
            lg "client-if$f" client --target "$NODE" --stats-addr "$STATS" \
                --server-pid "$SERVER" --echo "$ECHO" --echo-pid "$ECHO_PID" \
                --duration "$CDUR" --in-flight "$f" --sockets 4 $([ "$f" = 1 ] || echo --skip-load)
        done
        stop_server
        stop_echo
    fi
    if want get; then
        start_echo
        for f in 1 16 128; do
            lg "echo-if$f" get --target "$ECHO" --server-pid "$SERVER" --duration "$DUR" \
                --in-flight "$f" --skip-load --no-handshake
        done
        # 128 in flight from one client thread: fewer threads than cores on the server side
        # plus the client, so the tail is the server's, not the scheduler's.
        lg echo-if128-c1 get --target "$ECHO" --server-pid "$SERVER" --duration "$DUR" \
            --in-flight 128 --clients 1 --skip-load --no-handshake
        stop_server
        for f in 1 16 128; do node_get "get-if$f" "$f"; done
        start_node
        lg get-if128-c1 get --target "$NODE" --stats-addr "$STATS" --server-pid "$SERVER" \
            --duration "$DUR" --in-flight 128 --clients 1
        stop_server
        node_get owner256-if1 1 --get-path owner
        node_get owner256-if128 128 --get-path owner
        node_get owner16-if128 128 --get-path owner --owner-threads 16
        node_get owner2-if128 128 --get-path owner --owner-threads 2
        node_get recv16-if128 128 --owner-threads 16
        node_get recv2-if128 128 --owner-threads 2
        node_get recv2-if1 1 --owner-threads 2
        node_get nopin-if1 1 --pin false
        node_get nopin-if128 128 --pin false
        node_get nopin-recv2-if1 1 --pin false --owner-threads 2
    fi
    if want put || want mixed || want flood; then
        for t in 1 2; do
            lg "verify-single-t$t" verify --mode single --threads "$t" --duration "$DUR"
            lg "verify-batch-t$t" verify --mode batch --threads "$t" --duration "$DUR"
        done
        VS=$(field verify-single-t2 verified_per_s)
        VB=$(field verify-batch-t2 verified_per_s)
        VS=${VS:-20000}
        VB=${VB:-30000}
        echo "   verification rate on 2 threads: single $VS/s, batch $VB/s"
    fi
    if want put; then
        r80s=$(awk "BEGIN {print int($VS * 0.8)}")
        r80b=$(awk "BEGIN {print int($VB * 0.8)}")
        r2s=$(awk "BEGIN {print int($VS * 2)}")
        r2b=$(awk "BEGIN {print int($VB * 2)}")
        put_at put-single-o256-r80 "$r80s" --signature-check single
        put_at put-single-o256-x2 "$r2s" --signature-check single
        put_at put-batch-o256-r80 "$r80b" --signature-check batch
        put_at put-batch-o256-x2 "$r2b" --signature-check batch
        put_at put-batch-o16-r80 "$r80b" --signature-check batch --owner-threads 16
        put_at put-batch-o16-x2 "$r2b" --signature-check batch --owner-threads 16
        put_at put-batch-o2-r80 "$r80b" --signature-check batch --owner-threads 2
        put_at put-batch-o2-x2 "$r2b" --signature-check batch --owner-threads 2
        put_at put-single-o2-x2 "$r2s" --signature-check single --owner-threads 2
        put_at put-single-o256-nopin-x2 "$r2s" --signature-check single --pin false
        # Before verification permits and owner priority (every owner at nice 0, all verifying).
        put_at put-single-o256-flat-r80 "$r80s" --signature-check single --owner-nice 0 \
            --verify-permits 256
        put_at put-single-o256-flat-x2 "$r2s" --signature-check single --owner-nice 0 \
            --verify-permits 256
    fi
    if want mixed; then
        start_node
        lg mixed-if16 mixed --target "$NODE" --stats-addr "$STATS" --server-pid "$SERVER" \
            --duration "$DUR" --in-flight 16 --put-rate "$(awk "BEGIN {print int($VS * 0.5)}")"
        stop_server
    fi
    if want flood; then
        # Forged PUTs (valid work, bad signature) at 5x the verification rate, a
        # 16-in-flight GET client beside them: the default engine (batched verification), single
        # verification, and the engine before verification permits and owner priority.
        # Capacity is the verification rate of the variant's own signature check.
        for variant in "default" "single:--signature-check single" \
            "flat:--owner-nice 0 --verify-permits 256 --signature-check single"; do
            name=${variant%%:*}
            flags=""
            capacity=$VS
            [[ $variant == *:* ]] && flags=${variant#*:}
            [[ $name == default ]] && capacity=$VB
            # shellcheck disable=SC2086 # flags is a word list
            start_node $flags
            lg "flood-forged-x5-$name" flood --target "$NODE" --stats-addr "$STATS" \
                --server-pid "$SERVER" --duration "$DUR" --in-flight 16 --clients 1 \
                --capacity "$capacity" --multiplier 5 --kind forged-put
            stop_server
        done
    fi
    if want handoff; then
        for o in 256 16 2; do
            for m in single batch; do
                "$BIN/handoff" --owners "$o" --mode "$m" --rate 100000 --duration "$DUR" |
                    sed "s/^{/{\"tag\":\"handoff-$m-o$o\",\"run\":$RUN,/" >>"$RESULTS"
            done
        done
    fi
done

if want coldstart; then
    echo "== cold start: 5 nodes, real protocol timers"
    "$BIN/node_server" cold-start --nodes 5 --runs "$RUNS" | tee "$OUT/coldstart-$STAMP.jsonl"
fi

if want memory; then
    echo "== memory: a node with $MEMORY_RECORDS records (16-byte keys, 100-byte values)"
    "$BIN/node_server" serve --listen 127.0.0.1:7002 --stats-addr 127.0.0.1:7998 \
        --owner-threads 256 --preload "$MEMORY_RECORDS" --exit-after-preload \
        2>>"$OUT/node_server.log" | tee "$OUT/memory-$STAMP.json"
fi

if [ -s "$RESULTS" ]; then
    "$BIN/loadgen" summarize "$RESULTS" \
        --ratio client-if128:node_ops_per_s/client-if128:echo_ops_per_s \
        --ratio client-if1:node_ops_per_s/client-if1:echo_ops_per_s \
        --ratio get-if128/echo-if128 --ratio get-if128-c1/echo-if128-c1 --ratio get-if16/echo-if16 --ratio get-if1/echo-if1 \
        --ratio owner256-if128/get-if128 --ratio owner16-if128/get-if128 \
        --ratio owner2-if128/get-if128 --ratio owner256-if1/get-if1 \
        --ratio recv16-if128/get-if128 --ratio recv2-if128/get-if128 \
        --ratio nopin-if128/get-if128 --ratio nopin-if1/get-if1 --ratio recv2-if1/get-if1 \
        --ratio nopin-recv2-if1/get-if1 \
        --ratio flood-forged-x5-default:get_ratio/flood-forged-x5-flat:get_ratio \
        --ratio flood-forged-x5-single:get_ratio/flood-forged-x5-flat:get_ratio \
        --ratio put-single-o256-r80:stored_per_s/put-single-o256-flat-r80:stored_per_s \
        --ratio put-single-o256-r80:stored_per_s/verify-single-t2:verified_per_s \
        --ratio put-batch-o256-r80:stored_per_s/verify-batch-t2:verified_per_s \
        --ratio handoff-batch-o256:cpu_ns_per_delivered/handoff-single-o256:cpu_ns_per_delivered \
        --ratio handoff-batch-o16:cpu_ns_per_delivered/handoff-single-o16:cpu_ns_per_delivered \
        --ratio handoff-batch-o2:cpu_ns_per_delivered/handoff-single-o2:cpu_ns_per_delivered \
        --ratio put-single-o256-x2:cpu_us_per_stored/verify-single-t2:cpu_us_per_dat \
        --ratio put-batch-o256-x2:cpu_us_per_stored/verify-batch-t2:cpu_us_per_dat \
        --ratio put-batch-o2-x2:cpu_us_per_stored/verify-batch-t2:cpu_us_per_dat \
        --ratio put-single-o256-x2:stored_per_s/verify-single-t2:verified_per_s \
        --ratio put-batch-o256-x2:stored_per_s/verify-batch-t2:verified_per_s \
        --ratio put-batch-o16-x2:stored_per_s/verify-batch-t2:verified_per_s \
        --ratio put-batch-o2-x2:stored_per_s/verify-batch-t2:verified_per_s \
        --ratio put-single-o2-x2:stored_per_s/verify-single-t2:verified_per_s \
        --ratio put-single-o256-nopin-x2:stored_per_s/verify-single-t2:verified_per_s \
        --ratio verify-batch-t2:verified_per_s/verify-single-t2:verified_per_s |
        tee "$SUMMARY"
    echo "results: $RESULTS"
    echo "summary: $SUMMARY"
fi
