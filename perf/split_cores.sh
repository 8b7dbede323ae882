# perf/split_cores.sh: sourced by perf/issue14.sh and perf/put_capacity.sh. SPLIT=1 gives the
# server one whole core and the load generator the other: prefix the server's command with
# "${SERVER_CPU[@]}" and loadgen's with "${CLIENT_CPU[@]}"; the verification baseline runs
# VERIFY_THREADS threads (one on core 0 when split, two otherwise). Both arrays are empty by
# default: everything on every core, as issue 14 asks.
SPLIT=${SPLIT:-0}
if [ "$SPLIT" = 1 ]; then
    SERVER_CPU=(taskset -c 0)
    CLIENT_CPU=(taskset -c 1)
    VERIFY_THREADS=1
else
    SERVER_CPU=()
    CLIENT_CPU=()
    VERIFY_THREADS=2
fi
