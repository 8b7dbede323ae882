#!/usr/bin/env python3
"""perf/plot_putcap.py: PUTs stored against PUTs offered, from perf/put_capacity.sh's JSONL.

Needs matplotlib (python3 -m pip install matplotlib). Reads one or more results files (each
`perf/out/putcap-<stamp>.jsonl`, its servers tagged `put-<rev>-<fraction>`, its baselines
`verify-*`) and draws, per file and server, the median over rounds of stored / baseline
against offered / baseline, with the lowest and highest round as error bars, and the target
line (0.8). Each ratio divides by the higher of its round's two baselines, as the script does.

Usage: perf/plot_putcap.py OUT.svg LABEL=FILE.jsonl [LABEL=FILE.jsonl ...]
       (LABEL names the file's runs in the legend, e.g. "GSO 32=perf/issue14-results-...jsonl")
"""

import json
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

# Fixed hashes in the SVG, so re-running on the same data changes no byte.
plt.rcParams["svg.hashsalt"] = "dave-putcap"
plt.rcParams["svg.fonttype"] = "none"

TARGET = 0.8


def curves(path):
    """{server: {fraction: [stored / baseline per round]}} of one results file."""
    rows = [json.loads(line) for line in open(path) if line.strip()]
    baseline = {}
    for r in rows:
        if r.get("tag", "").startswith("verify-"):
            baseline[r["run"]] = max(baseline.get(r["run"], 0), r["verified_per_s"])
    out = defaultdict(lambda: defaultdict(list))
    for r in rows:
        tag = r.get("tag", "")
        if not tag.startswith("put-") or r["run"] not in baseline:
            continue
        server, fraction = tag[len("put-"):].rsplit("-", 1)
        out[server][float(fraction)].append(r["stored_per_s"] / baseline[r["run"]])
    return out


def main():
    if len(sys.argv) < 3 or any("=" not in a for a in sys.argv[2:]):
        sys.exit(__doc__)
    out_path = sys.argv[1]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for arg in sys.argv[2:]:
        label, path = arg.split("=", 1)
        for server, by_fraction in sorted(curves(path).items()):
            xs = sorted(by_fraction)
            med = [statistics.median(by_fraction[x]) for x in xs]
            lo = [m - min(by_fraction[x]) for x, m in zip(xs, med)]
            hi = [max(by_fraction[x]) - m for x, m in zip(xs, med)]
            ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3,
                        label=f"{label}: {server}")
    ax.axhline(TARGET, color="grey", linestyle="--", linewidth=1, label="target 0.8")
    ax.plot([0.5, 1.25], [0.5, 1.25], color="lightgrey", linewidth=1, label="all stored")
    ax.set_xlim(0.55, 1.25)
    ax.set_ylim(0.4, 1.0)
    ax.set_xlabel("PUTs offered / batched verification rate (both vCPUs)")
    ax.set_ylabel("PUTs stored / batched verification rate")
    ax.set_title("PUT capacity, 2-vCPU guest, generator on the same vCPUs (median, min-max of rounds)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path)
    print(out_path)


if __name__ == "__main__":
    main()
