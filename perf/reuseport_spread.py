#!/usr/bin/env python3
"""perf/reuseport_spread.py: how Linux spreads a few senders over a node's SO_REUSEPORT sockets.

Binds RECEIVERS sockets with SO_REUSEPORT on one loopback port (the node's layout before issue
14: one socket per receiver thread), sends one datagram from each of SENDERS sockets on their own
127.0.0.x addresses with fresh ephemeral ports (as loadgen's client does), and counts how many
senders each receiver socket got. Repeats TRIALS times and prints how often each split occurs.
The kernel picks the socket by a hash of the sender's address and port, so the split is a
matter of the ports drawn: independent of load, which is why it is measured this way.

Usage: perf/reuseport_spread.py [--senders 4] [--receivers 2] [--trials 400]
"""

import argparse
import collections
import socket

SO_REUSEPORT = getattr(socket, "SO_REUSEPORT", 15)


def trial(senders, receivers):
    servers = []
    port = 0
    for _ in range(receivers):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", port))
        port = s.getsockname()[1]
        s.setblocking(False)
        servers.append(s)
    clients = []
    for c in range(senders):
        k = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        k.bind((f"127.0.0.{11 + c}", 0))
        k.sendto(b"x", ("127.0.0.1", port))
        clients.append(k)
    per = []
    for s in servers:
        n = 0
        while True:
            try:
                s.recv(16)
                n += 1
            except BlockingIOError:
                break
        per.append(n)
    for x in servers + clients:
        x.close()
    return tuple(sorted(per, reverse=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--receivers", type=int, default=2)
    ap.add_argument("--trials", type=int, default=400)
    a = ap.parse_args()
    if not (1 <= a.senders <= 200 and 1 <= a.receivers <= 64 and 1 <= a.trials <= 100_000):
        raise SystemExit("--senders 1..=200, --receivers 1..=64, --trials 1..=100000")
    counts = collections.Counter(trial(a.senders, a.receivers) for _ in range(a.trials))
    print(f"{a.senders} senders over {a.receivers} SO_REUSEPORT sockets, {a.trials} trials")
    print("senders per socket | trials | share")
    for split, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{split} | {n} | {n / a.trials:.3f}")


if __name__ == "__main__":
    main()
