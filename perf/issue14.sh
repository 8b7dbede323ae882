#!/usr/bin/env bash
# perf/issue14.sh: every figure of issue 14 with one command, then a table and the SVG plots.
#
# Builds the release examples once and copies them to perf/out/bin14 (a concurrent build cannot
# swap a binary mid-run). Then RUNS rounds, each with every scenario once (interleaved, so the
# host's noise hits all alike; ratios are taken within one round):
#   client-if1, client-if128   loadgen `client` (one thread, 4 proven sockets, fixed window),
#                              node and echo_baseline in the same invocation, DUR s each
#   client-rp-if128            the same against a node whose receivers' SO_REUSEPORT sockets
#                              get datagrams by the kernel's hash (the layout before issue 14;
#                              the default now is one socket shared by the receivers)
#   client-random-if128        per-receiver SO_REUSEPORT sockets, datagrams spread at random
#   client-spin50-if1/-if128   the same against a node whose receivers poll 50 µs after traffic
#                              before they sleep (Config::receiver_spin_us)
#   client-nopin-if1/-if128    the same against a node whose receivers are not pinned to cores
#                              (the one client thread shares a core with a pinned receiver)
#   steal-B-if1/-if128         receivers that take up to B batches in a row queued on each
#                              other's sockets (Config::receiver_steal_batches; B in STEALS,
#                              default "1 4 0": the default, four batches, none), same round
#                              (ONLY=steal)
#   scale-N-if1/-if128         a node preloaded with N records (N in SIZES), same client
#   put-N                      PUTs at 2x the batched verification rate into that node
#   put-stage-true/-false      the same into an empty node, PUTs screened by the verification
#                              stage / by the shard owners (the default) (ONLY=put)
#   put-owners-N               PUTs at 2x the batched verification rate into an empty node with
#                              N shard-owner threads (N in OWNERS, default "256 16 2"; the design
#                              card's engine has 256) (ONLY=owners)
#   peers-S-if128              S proven client sockets (S in PEERS) from the one client thread
#   table-P-idle               the node's CPU (cores) over IDLE_S seconds (default 8) with P
#                              active peers and no load, once the swarm reports them all
#                              active (/proc/PID/stat), and the swarm's
#   table-P-if1/-if128/-put    the client at 1 and 128 in flight, then PUTs at 2x the batched
#                              verification rate, against a node with P active peers in its
#                              table (P in TABLE_PEERS, default "0 100 1000": `loadgen swarm`,
#                              v1-style peers on their own loopback addresses that ping it every
#                              second, answer its PINGs, and drop in the kernel what it
#                              replicates to them) (ONLY=table; TABLE_BEFORE=PATH adds
#                              table-before-P-... against that node_server binary, same round;
#                              TABLE_ELSEWHERE=1 adds table-elsewhere-P-...: the swarm fills a
#                              second node's table while the client measures a node with none,
#                              the same liveness work on the machine outside the node measured)
#   flood-x5                   GETs (16 in flight) during forged PUTs at 5x verification capacity
#   flood-echo-x5              the same against echo_baseline answering GETs only (the floor:
#                              what any server keeps of its GETs during that flood on this
#                              machine), node and echo in alternating order
#   flood-before-x5            with FLOOD_BEFORE=PATH: the same against that node_server binary
#                              (an earlier build), in the same rounds; FLOOD_BEFORE_ARGS:
#                              flags for it (e.g. FLOOD_BEFORE=perf/out/bin14/node_server
#                              FLOOD_BEFORE_ARGS="--put-lane false": this build without a lane)
#                              (FLOOD_CAPACITY=N: floods at 5 x N PUTs/s instead of 5x the
#                              round's batched verification rate; FLOOD_KIND=fresh-forged-put:
#                              a new forgery in every datagram instead of 8,192 cycled;
#                              FLOOD_GSO=N: the flood sent N datagrams per UDP GSO send, so it
#                              costs the shared machine less, as a flood from elsewhere would)
#   rx-R-if1/-if128/-put/-flood  the client, PUT and flood scenarios against a node with R
#                              receiver threads (R in RECEIVERS, default "1 2"; 0 = the node's
#                              default), every receiver fed, same round (ONLY=receivers)
#   spin-U-if1/-if128/-put/-flood  the client, PUT and flood scenarios against a node whose
#                              receivers poll U µs before they sleep while requests come that
#                              close together (U in SPINS, default "0 20 50"), same round
#                              (ONLY=spin)
#   od-B-if1/-if128/-put/-flood  the same against the default node with receivers on demand
#                              (Config::receivers_on_demand) B = true and false (ONLY=ondemand)
#   client-before-if1/-if128   with ONLY=ab and CLIENT_BEFORE=PATH: the client pair against this
#                              build and against that node_server binary (an earlier build),
#                              alternating order, same rounds (CLIENT_BEFORE_ARGS: flags for
#                              it, e.g. this build's binary with "--put-lane false")
#   verify-batch-t2            the batched verification rate on both cores (PUT ceiling)
# and once at the end: memory at MEMORY_RECORDS records (RSS per record).
# ECHO_ARGS: flags for the echo server of the client scenarios (default none: plain sendmmsg;
# "--segmentation true" answers with UDP GSO as the node does by default).
# SPLIT=1 gives the servers (node, echo) one whole core and the load generator the other: servers
# under `taskset -c 0` (their threads, pinning and permits then see one core), every loadgen
# run under `taskset -c 1`, and the verification rate (verify-batch-t1 instead of -t2) is one
# thread's on core 0. The default runs everything on both cores, as the issue asks.
# Writes perf/out/issue14-<stamp>.jsonl (one line per measurement), the machine description,
# the summary table (stdout and perf/out/issue14-<stamp>.md), and plots with perf/plot14.py
# into perf/out/ (COMMIT_PLOTS=1 also copies them to perf/issue14-*.svg).
# Every process it starts is killed on exit; every loadgen run is bounded by --duration.
#
# Usage: perf/issue14.sh                      # RUNS=5 DUR=3 SIZES="1000 100000 1000000"
#        RUNS=1 DUR=1 SIZES="1000" PEERS="4" ONLY="client scale" perf/issue14.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
DUR=${DUR:-3}
SIZES=${SIZES:-"1000 100000 1000000"}
PEERS=${PEERS:-"4 16 64"}
TABLE_PEERS=${TABLE_PEERS:-"0 100 1000"}
IDLE_S=${IDLE_S:-8}
STEALS=${STEALS:-"1 4 0"}
OWNERS=${OWNERS:-"256 16 2"}
RECEIVERS=${RECEIVERS:-"1 2"}
SPINS=${SPINS:-"0 20 50"}
ONLY=${ONLY:-"client scale peers table flood memory"}
if [[ " $ONLY " == *" ab "* ]] && [ -z "${CLIENT_BEFORE:-}" ]; then
    echo "ONLY=ab needs CLIENT_BEFORE=PATH (a node_server binary)" >&2
    exit 2
fi
MEMORY_RECORDS=${MEMORY_RECORDS:-1000000}
# shellcheck source=perf/split_cores.sh
source perf/split_cores.sh
VERIFY_TAG=verify-batch-t$VERIFY_THREADS
OUT=perf/out
BIN=$OUT/bin14
NODE=127.0.0.1:7000
STATS=127.0.0.1:7999
OTHER_NODE=127.0.0.1:7100
OTHER_STATS=127.0.0.1:7199
ECHO=127.0.0.1:7001
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$OUT/issue14-$STAMP.jsonl
SUMMARY=$OUT/issue14-$STAMP.md
NODE_PID=""
ECHO_PID=""
SWARM_PID=""

stop() {
    for p in $SWARM_PID $NODE_PID $ECHO_PID ${OTHER_PID:-}; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    NODE_PID=""
    ECHO_PID=""
    SWARM_PID=""
    OTHER_PID=""
}
trap stop EXIT
trap 'exit 130' INT TERM
want() { [[ " $ONLY " == *" $1 "* ]]; }

mkdir -p "$BIN"
cargo build --release --example loadgen --example node_server --example echo_baseline
cp target/release/examples/loadgen target/release/examples/node_server \
    target/release/examples/echo_baseline "$BIN/"

{
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src perf || echo ' (uncommitted changes)')"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
    echo "nproc: $(nproc)"
    echo "kernel: $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "runs: $RUNS, seconds per measurement: $DUR, sizes: $SIZES, peers: $PEERS, table peers: $TABLE_PEERS, split cores: $SPLIT"
} | tee "$OUT/issue14-machine-$STAMP.txt"

# up NODE_FLAGS...: a fresh node (and an echo server beside it).
up() {
    # shellcheck disable=SC2086 # ECHO_ARGS is a list of flags
    "${SERVER_CPU[@]}" "$BIN/echo_baseline" --listen "$ECHO" ${ECHO_ARGS:-} 2>>"$OUT/echo_baseline.log" &
    ECHO_PID=$!
    "${SERVER_CPU[@]}" "${NODE_BIN:-$BIN/node_server}" serve --listen "$NODE" --stats-addr "$STATS" \
        --max-seconds 600 "$@" >>"$OUT/node_server.log" 2>&1 &
    NODE_PID=$!
    "$BIN/loadgen" stats --stats-addr "$STATS" --wait 120 >/dev/null
}

lg() {
    local tag=$1
    shift
    "${CLIENT_CPU[@]}" "$BIN/loadgen" --json --tag "$tag" --run "$RUN" "$@" >>"$RESULTS" \
        2>>"$OUT/loadgen.log" ||
        echo "run $RUN $tag: failed (see $OUT/loadgen.log)" >&2
}

# client TAG IN_FLIGHT [loadgen client flags...]
client() {
    local tag=$1 inflight=$2
    shift 2
    lg "$tag" client --target "$NODE" --stats-addr "$STATS" --server-pid "$NODE_PID" \
        --echo "$ECHO" --echo-pid "$ECHO_PID" --duration "$DUR" --in-flight "$inflight" "$@"
}

# client_pair TAG NODE_FLAGS...: the client at 1 and 128 in flight (TAG-if1, TAG-if128) against
# a fresh node started with NODE_FLAGS.
client_pair() {
    local tag=$1
    shift
    up "$@"
    client "$tag-if1" 1
    client "$tag-if128" 128 --skip-load
    stop
}

# node_set TAG NODE_FLAGS...: against a node started with NODE_FLAGS, the client at 1 and 128
# in flight and GETs during a 5x forged-PUT flood (TAG-if1, -if128, -flood), then PUTs at 2x the
# batched verification rate into a fresh one (TAG-put). Needs VB.
node_set() {
    local tag=$1
    shift
    up "$@"
    client "$tag-if1" 1
    client "$tag-if128" 128 --skip-load
    lg "$tag-flood" flood --target "$NODE" --stats-addr "$STATS" --server-pid "$NODE_PID" \
        --duration "$DUR" --in-flight 16 --clients 1 --capacity "$VB" --multiplier 5 \
        --kind forged-put
    stop
    up "$@"
    lg "$tag-put" put --target "$NODE" --stats-addr "$STATS" --server-pid "$NODE_PID" \
        --duration "$DUR" --rate "$(awk "BEGIN {print int($VB * 2)}")" --offset 8192
    stop
}

# cpu_ticks PID: user + system CPU time of PID, in clock ticks (/proc/PID/stat fields 14, 15;
# the command name, field 2, may hold spaces, so count from the last ')').
cpu_ticks() {
    sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# idle_cpu TAG NODE_PID SWARM_PID: the node's and the swarm's CPU, in cores, over IDLE_S seconds
# with no load.
idle_cpu() {
    local tag=$1 node_pid=$2 swarm_pid=$3 hz
    hz=$(getconf CLK_TCK)
    local n0 s0 n1 s1
    n0=$(cpu_ticks "$node_pid")
    s0=$(cpu_ticks "$swarm_pid")
    sleep "$IDLE_S"
    n1=$(cpu_ticks "$node_pid")
    s1=$(cpu_ticks "$swarm_pid")
    awk -v tag="$tag" -v run="$RUN" -v n=$((n1 - n0)) -v s=$((s1 - s0)) -v hz="$hz" \
        -v secs="$IDLE_S" 'BEGIN {
            printf "{\"tag\":\"%s\",\"run\":%d,\"node_cpu_cores\":%.4f,\"swarm_cpu_cores\":%.4f,\"seconds\":%d}\n",
                tag, run, n / hz / secs, s / hz / secs, secs
        }' >>"$RESULTS"
}

field() {
    grep "\"tag\":\"$1\"" "$RESULTS" | grep "\"run\":$RUN," | tail -1 |
        grep -o "\"$2\":[0-9.]*" | head -1 | cut -d: -f2
}

# Records for the PUT runs, computed once (cached in perf/out).
"$BIN/loadgen" prepare --records 400000 >/dev/null

for RUN in $(seq 1 "$RUNS"); do
    echo "== run $RUN of $RUNS (load average $(cut -d' ' -f1 /proc/loadavg))"
    "${SERVER_CPU[@]}" "$BIN/loadgen" --json --tag "$VERIFY_TAG" --run "$RUN" verify \
        --mode batch --threads "$VERIFY_THREADS" --duration 2 >>"$RESULTS" 2>>"$OUT/loadgen.log"
    VB=$(field "$VERIFY_TAG" verified_per_s)
    VB=${VB:-30000}
    if want client; then
        client_pair client
        up --receiver-sockets hashed
        client client-rp-if128 128
        stop
        up --receiver-sockets random
        client client-random-if128 128
        stop
        client_pair client-spin50 --receiver-spin-us 50
        client_pair client-nopin --pin false
    fi
    if want ab; then
        # This build and CLIENT_BEFORE (a node_server binary) in alternating order.
        # shellcheck disable=SC2086 # CLIENT_BEFORE_ARGS: several flags
        if [ $((RUN % 2)) = 0 ]; then
            client_pair client
            NODE_BIN=$CLIENT_BEFORE client_pair client-before ${CLIENT_BEFORE_ARGS:-}
        else
            NODE_BIN=$CLIENT_BEFORE client_pair client-before ${CLIENT_BEFORE_ARGS:-}
            client_pair client
        fi
    fi
    if want steal; then
        for steal in $STEALS; do
            client_pair "steal-$steal" --receiver-steal-batches "$steal"
        done
    fi
    if want scale; then
        for n in $SIZES; do
            up --preload "$n"
            client "scale-$n-if1" 1
            client "scale-$n-if128" 128 --skip-load
            lg "put-$n" put --target "$NODE" --stats-addr "$STATS" --server-pid "$NODE_PID" \
                --duration "$DUR" --rate "$(awk "BEGIN {print int($VB * 2)}")" --offset 8192
            stop
        done
    fi
    if want put; then
        # PUTs at 2x the batched verification rate, screened by the verification stage and, in
        # the same round, by the owners (the default).
        for stage in true false; do
            up --put-verify-stage "$stage"
            lg "put-stage-$stage" put --target "$NODE" --stats-addr "$STATS" \
                --server-pid "$NODE_PID" --duration "$DUR" \
                --rate "$(awk "BEGIN {print int($VB * 2)}")" --offset 8192
            stop
        done
    fi
    if want owners; then
        for o in $OWNERS; do
            up --owner-threads "$o"
            lg "put-owners-$o" put --target "$NODE" --stats-addr "$STATS" \
                --server-pid "$NODE_PID" --duration "$DUR" \
                --rate "$(awk "BEGIN {print int($VB * 2)}")" --offset 8192
            stop
        done
    fi
    if want table; then
        # With TABLE_BEFORE=PATH (a node_server binary), the same against it in the same round
        # (tags table-before-P-...), in alternating order.
        # With TABLE_ELSEWHERE=1, also table-elsewhere-P-...: the swarm fills a second node's
        # table (OTHER_NODE) while the client measures a node with no peers, so the machine
        # carries the same liveness work outside the node measured.
        order="node${TABLE_BEFORE:+ before}${TABLE_ELSEWHERE:+ elsewhere}"
        [ $((RUN % 2)) = 0 ] || order="${TABLE_ELSEWHERE:+elsewhere }${TABLE_BEFORE:+before }node"
        for which in $order; do
            for p in $TABLE_PEERS; do
                tag=table-$p
                swarm_target=$NODE
                swarm_stats=$STATS
                if [ "$which" = node ]; then
                    up
                elif [ "$which" = before ]; then
                    tag=table-before-$p
                    NODE_BIN="$TABLE_BEFORE" up
                else
                    [ "$p" != 0 ] || continue
                    tag=table-elsewhere-$p
                    up
                    "${SERVER_CPU[@]}" "$BIN/node_server" serve --listen "$OTHER_NODE" \
                        --stats-addr "$OTHER_STATS" --max-seconds 600 >>"$OUT/node_server.log" 2>&1 &
                    OTHER_PID=$!
                    "$BIN/loadgen" stats --stats-addr "$OTHER_STATS" --wait 120 >/dev/null
                    swarm_target=$OTHER_NODE
                    swarm_stats=$OTHER_STATS
                fi
                if [ "$p" != 0 ]; then
                    # The swarm's first line says when the node reports every peer active.
                    swarm_out=$OUT/swarm-$STAMP-$RUN-$tag.jsonl
                    "${CLIENT_CPU[@]}" "$BIN/loadgen" --json --tag "$tag-swarm" --run "$RUN" \
                        swarm --target "$swarm_target" --stats-addr "$swarm_stats" --peers "$p" \
                        --duration 300 >"$swarm_out" 2>>"$OUT/loadgen.log" &
                    SWARM_PID=$!
                    for _ in $(seq 1 600); do
                        [ -s "$swarm_out" ] && break
                        sleep 0.1
                    done
                    head -1 "$swarm_out" |
                        sed "s/^{/{\"tag\":\"$tag-ready\",\"run\":$RUN,/" >>"$RESULTS"
                    idle_cpu "$tag-idle" "${OTHER_PID:-$NODE_PID}" "$SWARM_PID"
                fi
                client "$tag-if1" 1
                client "$tag-if128" 128 --skip-load
                lg "$tag-put" put --target "$NODE" --stats-addr "$STATS" \
                    --server-pid "$NODE_PID" --duration "$DUR" \
                    --rate "$(awk "BEGIN {print int($VB * 2)}")" --offset 8192
                stop
            done
        done
    fi
    if want peers; then
        up
        first=1
        for s in $PEERS; do
            # shellcheck disable=SC2046 # an empty word list when loading
            client "peers-$s-if128" 128 --sockets "$s" $([ $first = 1 ] || echo --skip-load)
            first=0
        done
        stop
    fi
    if want receivers; then
        for r in $RECEIVERS; do
            node_set "rx-$r" --receiver-threads "$r" --receivers-on-demand false
        done
    fi
    if want spin; then
        for u in $SPINS; do
            node_set "spin-$u" --receiver-spin-us "$u"
        done
    fi
    if want ondemand; then
        for od in true false; do
            node_set "od-$od" --receivers-on-demand "$od"
        done
    fi
    if want flood; then
        order="node echo${FLOOD_BEFORE:+ before}"
        [ $((RUN % 2)) = 0 ] || order="${FLOOD_BEFORE:+before }echo node"
        for which in $order; do
            if [ "$which" != echo ]; then
                tag=flood-x5
                [ "$which" = node ] || tag=flood-before-x5
                if [ "$which" = node ]; then
                    NODE_BIN="$BIN/node_server" up
                else
                    # shellcheck disable=SC2086 # FLOOD_BEFORE_ARGS: several flags
                    NODE_BIN="$FLOOD_BEFORE" up ${FLOOD_BEFORE_ARGS:-}
                fi
                lg $tag flood --target "$NODE" --stats-addr "$STATS" \
                    --server-pid "$NODE_PID" --duration "$DUR" --in-flight 16 --clients 1 \
                    --capacity "${FLOOD_CAPACITY:-$VB}" --multiplier 5 \
                    --kind "${FLOOD_KIND:-forged-put}" --gso-segments "${FLOOD_GSO:-0}"
            else
                "${SERVER_CPU[@]}" "$BIN/echo_baseline" --listen "$ECHO" --answer-only-op 3 \
                    2>>"$OUT/echo_baseline.log" &
                ECHO_PID=$!
                sleep 0.3
                lg flood-echo-x5 flood --target "$ECHO" --server-pid "$ECHO_PID" \
                    --no-handshake --skip-load --duration "$DUR" --in-flight 16 --clients 1 \
                    --capacity "${FLOOD_CAPACITY:-$VB}" --multiplier 5 \
                    --kind "${FLOOD_KIND:-forged-put}" --gso-segments "${FLOOD_GSO:-0}"
            fi
            stop
        done
    fi
done

if want memory; then
    echo "== memory: $MEMORY_RECORDS records (16-byte keys, 100-byte values)"
    "$BIN/node_server" serve --listen 127.0.0.1:7002 --stats-addr 127.0.0.1:7998 \
        --preload "$MEMORY_RECORDS" --exit-after-preload 2>>"$OUT/node_server.log" |
        sed "s/^{/{\"tag\":\"memory-$MEMORY_RECORDS\",\"run\":0,/" >>"$RESULTS"
fi

ratios=(--ratio client-if128:node_ops_per_s/client-if128:echo_ops_per_s
    --ratio client-if1:node_ops_per_s/client-if1:echo_ops_per_s
    --ratio client-rp-if128:node_ops_per_s/client-rp-if128:echo_ops_per_s
    --ratio client-random-if128:node_ops_per_s/client-random-if128:echo_ops_per_s
    --ratio client-spin50-if128:node_ops_per_s/client-spin50-if128:echo_ops_per_s
    --ratio client-spin50-if1:node_ops_per_s/client-spin50-if1:echo_ops_per_s
    --ratio client-nopin-if128:node_ops_per_s/client-nopin-if128:echo_ops_per_s
    --ratio client-nopin-if1:node_ops_per_s/client-nopin-if1:echo_ops_per_s
    --ratio client-before-if128:node_ops_per_s/client-before-if128:echo_ops_per_s
    --ratio client-before-if1:node_ops_per_s/client-before-if1:echo_ops_per_s
    --ratio client-if128:node_ops_per_s/client-before-if128:node_ops_per_s
    --ratio client-if128:node_p99_us/client-before-if128:node_p99_us
    --ratio flood-x5:get_ratio/flood-echo-x5:get_ratio
    --ratio flood-x5:flood_ops_per_s/flood-echo-x5:flood_ops_per_s
    --ratio flood-before-x5:get_ratio/flood-echo-x5:get_ratio
    --ratio flood-x5:get_ratio/flood-before-x5:get_ratio)
for b in $STEALS; do
    ratios+=(--ratio "steal-$b-if128:node_ops_per_s/steal-$b-if128:echo_ops_per_s"
        --ratio "steal-$b-if1:node_ops_per_s/steal-$b-if1:echo_ops_per_s"
        --ratio "steal-$b-if128:node_ops_per_s/steal-0-if128:node_ops_per_s")
done
ratios+=(--ratio "put-stage-true:stored_per_s/$VERIFY_TAG:verified_per_s"
    --ratio "put-stage-false:stored_per_s/$VERIFY_TAG:verified_per_s"
    --ratio "put-stage-true:stored_per_s/put-stage-false:stored_per_s")
for r in $RECEIVERS; do
    ratios+=(--ratio "rx-$r-if128:node_ops_per_s/rx-$r-if128:echo_ops_per_s"
        --ratio "rx-$r-if1:node_ops_per_s/rx-$r-if1:echo_ops_per_s"
        --ratio "rx-$r-put:stored_per_s/$VERIFY_TAG:verified_per_s"
        --ratio "rx-$r-if128:node_ops_per_s/rx-${RECEIVERS##* }-if128:node_ops_per_s")
done
for u in $SPINS; do
    ratios+=(--ratio "spin-$u-if128:node_ops_per_s/spin-$u-if128:echo_ops_per_s"
        --ratio "spin-$u-if1:node_ops_per_s/spin-$u-if1:echo_ops_per_s"
        --ratio "spin-$u-if1:node_p50_us/spin-${SPINS%% *}-if1:node_p50_us"
        --ratio "spin-$u-put:stored_per_s/$VERIFY_TAG:verified_per_s"
        --ratio "spin-$u-flood:flood_ops_per_s/spin-${SPINS%% *}-flood:flood_ops_per_s")
done
for od in true false; do
    ratios+=(--ratio "od-$od-if128:node_ops_per_s/od-$od-if128:echo_ops_per_s"
        --ratio "od-$od-if1:node_ops_per_s/od-$od-if1:echo_ops_per_s"
        --ratio "od-$od-put:stored_per_s/$VERIFY_TAG:verified_per_s"
        --ratio "od-$od-if128:node_ops_per_s/od-false-if128:node_ops_per_s"
        --ratio "od-$od-flood:flood_ops_per_s/od-false-flood:flood_ops_per_s")
done
for o in $OWNERS; do
    ratios+=(--ratio "put-owners-$o:stored_per_s/$VERIFY_TAG:verified_per_s")
done
for p in $TABLE_PEERS; do
    ratios+=(--ratio "table-$p-if128:node_p99_us/table-before-$p-if128:node_p99_us"
        --ratio "table-$p-put:stored_per_s/table-before-$p-put:stored_per_s"
        --ratio "table-$p-idle:node_cpu_cores/table-before-$p-idle:node_cpu_cores"
        --ratio "table-$p-if128:node_p99_us/table-elsewhere-$p-if128:node_p99_us"
        --ratio "table-elsewhere-$p-if128:node_p99_us/table-${TABLE_PEERS%% *}-if128:node_p99_us")
    ratios+=(--ratio "table-$p-if128:node_ops_per_s/table-$p-if128:echo_ops_per_s"
        --ratio "table-$p-if128:node_p99_us/table-${TABLE_PEERS%% *}-if128:node_p99_us"
        --ratio "table-$p-if1:node_p99_us/table-${TABLE_PEERS%% *}-if1:node_p99_us"
        --ratio "table-$p-put:stored_per_s/$VERIFY_TAG:verified_per_s"
        --ratio "table-$p-put:stored_per_s/table-${TABLE_PEERS%% *}-put:stored_per_s")
done
for n in $SIZES; do
    ratios+=(--ratio "put-$n:stored_per_s/$VERIFY_TAG:verified_per_s"
        --ratio "scale-$n-if128:node_p99_us/scale-${SIZES%% *}-if128:node_p99_us")
done
"$BIN/loadgen" summarize "$RESULTS" "${ratios[@]}" | tee "$SUMMARY"
if python3 -c 'import matplotlib' 2>/dev/null; then
    python3 perf/plot14.py "$RESULTS" --out "$OUT" ${COMMIT_PLOTS:+--also perf}
else
    echo "plots skipped: python3 -m pip install matplotlib" >&2
fi
echo "results: $RESULTS"
echo "summary: $SUMMARY"
