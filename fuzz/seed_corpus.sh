#!/bin/sh
# Writes the seed corpus for the `parse` fuzz target: one file per message vector in
# tests/data/vectors.json and tests/data/route_vectors.json, into fuzz/corpus/parse (gitignored). Run from anywhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/corpus/parse"
mkdir -p "$out"
python3 - "$here/../tests/data/vectors.json" "$out" "$here/../tests/data/route_vectors.json" <<'PY'
import json, pathlib, sys
vectors, out = sys.argv[1], pathlib.Path(sys.argv[2])
messages = json.load(open(vectors))["messages"] + json.load(open(sys.argv[3]))["messages"]
for m in messages:
    (out / m["name"]).write_bytes(bytes.fromhex(m["hex"]))
print(f"wrote {len(messages)} seeds to {out}")
PY
