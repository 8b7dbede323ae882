#!/usr/bin/env bash
# perf/sim_races.sh: v2 compare-and-swap races in the simulator under datagram loss, and what
# the lookups cost v1 GETs under churn and loss (perf/README.md, "v2 records in the simulator").
#
# For each seed: `dave sim --v2 --cas --race --loss 2` (60 nodes, 20 virtual minutes, 300
# records, every put from two writers at once) and a v1 run with 60 %/h churn and 2 % loss.
# Prints per seed the double wins, the split records, the strict gets that read a race's loser
# and the v1 GET latencies, then medians.
#
# Usage: perf/sim_races.sh                 # builds target/release/dave, SEEDS="1 2 3 4 5"
#        DAVE=/path/to/dave SEEDS="1 2" perf/sim_races.sh   # another build, other seeds
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"1 2 3 4 5"}
if [ -z "${DAVE:-}" ]; then
    cargo build --release --bin dave
    DAVE=target/release/dave
fi
OUT=perf/out/sim-races-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
for seed in $SEEDS; do
    "$DAVE" sim --nodes 60 --minutes 20 --records 300 --gets 300 --fast-crypto \
        --v2 --cas --race --loss 2 --seed "$seed" >"$OUT/race-$seed.txt"
    "$DAVE" sim --nodes 60 --minutes 20 --churn 60 --loss 2 --records 300 --gets 300 \
        --fast-crypto --seed "$seed" >"$OUT/v1-$seed.txt"
done
python3 - "$OUT" $SEEDS <<'PY'
import re, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
rows = []
for seed in seeds:
    race = open(f"{out}/race-{seed}.txt").read()
    v1 = open(f"{out}/v1-{seed}.txt").read()
    m = re.search(r"racing writers (\d+), records split between replicas (\d+), gets that read a loser (\d+)", race)
    g = re.search(r"^gets\s+(\d+) of (\d+) fresh.*?\n\s+latency p50 (\d+) ms, p90 (\d+) ms, p99 (\d+) ms", v1, re.M)
    f = re.search(r"^final check\s+(\d+) of (\d+)", v1, re.M)
    rows.append((int(m[1]), int(m[2]), int(g[3]), int(g[4]), int(g[5]), int(m[3])))
    print(f"seed {seed}: double wins {m[1]}, split records {m[2]}, loser reads {m[3]}; v1 GET p50/p90/p99 "
          f"{g[3]}/{g[4]}/{g[5]} ms, final check {f[1]} of {f[2]}")
med = lambda i: statistics.median(r[i] for r in rows)
print(f"medians: double wins {med(0)}, split records {med(1)}, loser reads {med(5)}; v1 GET p50/p90/p99 "
      f"{med(2)}/{med(3)}/{med(4)} ms   (reports in {out})")
PY
