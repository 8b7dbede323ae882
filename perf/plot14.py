#!/usr/bin/env python3
"""perf/plot14.py: the SVG plots of issue 14, drawn from the JSONL that perf/issue14.sh writes.

Needs matplotlib (python3 -m pip install matplotlib). Reads one results file and writes:
  issue14-cdf-client.svg   GET latency CDFs, node against echo server, 1 and 128 in flight
  issue14-cdf-scale.svg    GET latency CDFs of the node at each store size, 128 in flight
  issue14-scale.svg        GET rate, GET p50/p99 and PUT stored/s against store size
  issue14-peers.svg        GET rate and p99 against the number of proven client sockets
  issue14-table.svg        GET rate, GET latency and PUTs stored against the active peers in
                           the node's table (the `table` scenario's `loadgen swarm`; with
                           TABLE_ELSEWHERE=1, the p99 when the swarm fills another node's table)
Each CDF is that of the run whose node rate is the median of its scenario's runs; each rate is
the median of the runs, with the lowest and highest run as error bars.

Usage: perf/plot14.py perf/out/issue14-<stamp>.jsonl [--out perf/out] [--also perf]
"""

import argparse
import json
import os
import re
import shutil
import statistics
from collections import defaultdict

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

# Fixed hashes in the SVGs, so re-running on the same data changes no byte.
plt.rcParams["svg.hashsalt"] = "dave-issue14"
plt.rcParams["svg.fonttype"] = "none"


def load(path):
    by_tag = defaultdict(list)
    with open(path) as f:
        for line in f:
            try:
                v = json.loads(line)
            except json.JSONDecodeError:
                continue
            by_tag[v.get("tag", "")].append(v)
    return by_tag


def get(v, *path):
    for p in path:
        if not isinstance(v, dict) or p not in v:
            return None
        v = v[p]
    return v


def median_run(runs, *path):
    """The run whose value at path is the median (the lower middle for an even count)."""
    runs = [r for r in runs if get(r, *path) is not None]
    if not runs:
        return None
    runs.sort(key=lambda r: get(r, *path))
    return runs[(len(runs) - 1) // 2]


def spread(runs, *path):
    xs = [get(r, *path) for r in runs if get(r, *path) is not None]
    if not xs:
        return None
    return statistics.median(xs), min(xs), max(xs)


def cdf_line(ax, report, label, style):
    pts = get(report, "cdf_us") or []
    if not pts:
        return
    qs = [q for q, _ in pts]
    us = [max(u, 0.1) for _, u in pts]
    ax.plot(us, qs, label=label, linestyle=style)


def plot_cdf_client(by_tag, out):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, inflight in zip(axes, (1, 128)):
        tag = f"client-if{inflight}"
        r = median_run(by_tag.get(tag, []), "node", "ops_per_s")
        if r is None:
            ax.set_visible(False)
            continue
        cdf_line(ax, r.get("node"), f"dave node ({r['node']['ops_per_s'] / 1e3:.0f}k GET/s)", "-")
        cdf_line(ax, r.get("echo"), f"echo server ({r['echo']['ops_per_s'] / 1e3:.0f}k/s)", "--")
        rp = median_run(by_tag.get("client-rp-if128", []), "node", "ops_per_s")
        if inflight == 128 and rp is not None:
            cdf_line(ax, rp.get("node"),
                     f"node, sockets by hash (before; {rp['node']['ops_per_s'] / 1e3:.0f}k/s)", ":")
        spin = median_run(by_tag.get(f"client-spin50-if{inflight}", []), "node", "ops_per_s")
        if spin is not None:
            cdf_line(ax, spin.get("node"),
                     f"node, receivers poll 50 µs ({spin['node']['ops_per_s'] / 1e3:.0f}k/s)", "-.")
        ax.set_xscale("log")
        ax.set_xlabel("GET latency (µs, log scale)")
        ax.set_ylabel("fraction of GETs")
        ax.set_title(f"{inflight} in flight, one client thread, 4 proven sockets (run {r.get('run')})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "issue14-cdf-client.svg"))
    plt.close(fig)


def sizes_of(by_tag):
    return sorted({int(m.group(1)) for t in by_tag for m in [re.match(r"scale-(\d+)-if128$", t)] if m})


def plot_cdf_scale(by_tag, out):
    sizes = sizes_of(by_tag)
    if not sizes:
        return
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for n, style in zip(sizes, ["-", "--", ":", "-."] * 4):
        r = median_run(by_tag[f"scale-{n}-if128"], "node", "ops_per_s")
        if r is not None:
            cdf_line(ax, r.get("node"), f"{n:,} records ({r['node']['ops_per_s'] / 1e3:.0f}k/s)", style)
    ax.set_xscale("log")
    ax.set_xlabel("GET latency (µs, log scale)")
    ax.set_ylabel("fraction of GETs")
    ax.set_title("dave node, 128 GETs in flight, by store size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "issue14-cdf-scale.svg"))
    plt.close(fig)


def errorbar(ax, xs, stats, label, fmt):
    pts = [(x, s) for x, s in zip(xs, stats) if s is not None]
    if not pts:
        return
    x = [p[0] for p in pts]
    m = [p[1][0] for p in pts]
    lo = [p[1][0] - p[1][1] for p in pts]
    hi = [p[1][2] - p[1][0] for p in pts]
    ax.errorbar(x, m, yerr=[lo, hi], fmt=fmt, capsize=3, label=label)


def plot_scale(by_tag, out):
    sizes = sizes_of(by_tag)
    if not sizes:
        return
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ax = axes[0]
    errorbar(ax, sizes, [spread(by_tag[f"scale-{n}-if128"], "node", "ops_per_s") for n in sizes],
             "node, 128 in flight", "o-")
    errorbar(ax, sizes, [spread(by_tag[f"scale-{n}-if128"], "echo", "ops_per_s") for n in sizes],
             "echo server, same runs", "s--")
    ax.set_ylabel("GETs per second")
    ax.set_title("GET rate")
    ax = axes[1]
    for inflight, q, fmt in ((1, "p50_us", "o-"), (1, "p99_us", "o--"), (128, "p50_us", "s-"),
                             (128, "p99_us", "s--")):
        errorbar(ax, sizes, [spread(by_tag.get(f"scale-{n}-if{inflight}", []), "node", q) for n in sizes],
                 f"{q[:3]}, {inflight} in flight", fmt)
    ax.set_yscale("log")
    ax.set_ylabel("µs (log scale)")
    ax.set_title("GET latency")
    ax = axes[2]
    errorbar(ax, sizes, [spread(by_tag.get(f"put-{n}", []), "stored_per_s") for n in sizes],
             "PUTs stored/s (offered 2x verification rate)", "o-")
    v = spread(by_tag.get("verify-batch-t2", []), "verified_per_s")
    if v is not None:
        ax.axhline(v[0], linestyle=":", color="gray", label="batched verification, 2 threads")
    ax.set_ylabel("per second")
    ax.set_title("PUTs stored")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("records in the store (log scale)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_ylim(bottom=0 if ax.get_yscale() == "linear" else None)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "issue14-scale.svg"))
    plt.close(fig)


def plot_peers(by_tag, out):
    peers = sorted({int(m.group(1)) for t in by_tag for m in [re.match(r"peers-(\d+)-if128$", t)] if m})
    if not peers:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    errorbar(axes[0], peers, [spread(by_tag[f"peers-{s}-if128"], "node", "ops_per_s") for s in peers],
             "node", "o-")
    errorbar(axes[0], peers, [spread(by_tag[f"peers-{s}-if128"], "echo", "ops_per_s") for s in peers],
             "echo server", "s--")
    axes[0].set_ylabel("GETs per second")
    errorbar(axes[1], peers, [spread(by_tag[f"peers-{s}-if128"], "node", "p99_us") for s in peers],
             "node p99", "o-")
    errorbar(axes[1], peers, [spread(by_tag[f"peers-{s}-if128"], "echo", "p99_us") for s in peers],
             "echo p99", "s--")
    axes[1].set_ylabel("µs")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("proven client sockets (peers), one thread, 128 in flight")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "issue14-peers.svg"))
    plt.close(fig)


def plot_table(by_tag, out):
    """GET rate, GET p99 and PUTs stored against the active peers in the node's table."""
    peers = sorted({int(m.group(1)) for t in by_tag for m in [re.match(r"table-(\d+)-if128$", t)] if m})
    if not peers:
        return
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    errorbar(axes[0], peers, [spread(by_tag[f"table-{p}-if128"], "node", "ops_per_s") for p in peers],
             "node, 128 in flight", "o-")
    errorbar(axes[0], peers, [spread(by_tag[f"table-{p}-if128"], "echo", "ops_per_s") for p in peers],
             "echo server, same runs", "s--")
    axes[0].set_ylabel("GETs per second")
    axes[0].set_title("GET rate")
    for inflight, q, fmt in ((1, "p50_us", "o-"), (1, "p99_us", "o--"), (128, "p50_us", "s-"),
                             (128, "p99_us", "s--")):
        errorbar(axes[1], peers, [spread(by_tag.get(f"table-{p}-if{inflight}", []), "node", q) for p in peers],
                 f"{q[:3]}, {inflight} in flight", fmt)
    # TABLE_ELSEWHERE=1: the same liveness work on the machine, the peers in another node's table.
    elsewhere = [p for p in peers if f"table-elsewhere-{p}-if128" in by_tag]
    if elsewhere:
        errorbar(axes[1], elsewhere,
                 [spread(by_tag[f"table-elsewhere-{p}-if128"], "node", "p99_us") for p in elsewhere],
                 "p99, 128 in flight, peers in another node", "^:")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("µs (log scale)")
    axes[1].set_title("GET latency")
    errorbar(axes[2], peers, [spread(by_tag.get(f"table-{p}-put", []), "stored_per_s") for p in peers],
             "PUTs stored/s (offered 2x verification rate)", "o-")
    axes[2].set_ylabel("per second")
    axes[2].set_title("PUTs stored (each sent on to 3 peers)")
    for ax in axes:
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(-1, max(peers) * 1.5)
        ax.set_xlabel("active peers in the node's table (loadgen swarm)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        if ax.get_yscale() == "linear":
            ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "issue14-table.svg"))
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--out", default="perf/out")
    ap.add_argument("--also", help="copy the SVGs to this folder too (perf/ for the committed ones)")
    a = ap.parse_args()
    by_tag = load(a.results)
    os.makedirs(a.out, exist_ok=True)
    plot_cdf_client(by_tag, a.out)
    plot_cdf_scale(by_tag, a.out)
    plot_scale(by_tag, a.out)
    plot_peers(by_tag, a.out)
    plot_table(by_tag, a.out)
    for name in sorted(os.listdir(a.out)):
        if name.startswith("issue14-") and name.endswith(".svg"):
            print(os.path.join(a.out, name))
            if a.also:
                shutil.copy(os.path.join(a.out, name), os.path.join(a.also, name))


if __name__ == "__main__":
    main()
