#!/bin/sh
# Writes the seed corpus for the `parse` fuzz target: one file per message vector in
# tests/data/vectors.json, into fuzz/corpus/parse (gitignored). Run from anywhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/corpus/parse"
mkdir -p "$out"
python3 - "$here/../tests/data/vectors.json" "$out" <<'PY'
import json, pathlib, sys
vectors, out = sys.argv[1], pathlib.Path(sys.argv[2])
messages = json.load(open(vectors))["messages"]
for m in messages:
    (out / m["name"]).write_bytes(bytes.fromhex(m["hex"]))
print(f"wrote {len(messages)} seeds to {out}")
PY
