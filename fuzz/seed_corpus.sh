#!/bin/sh
# Writes the seed corpora: for the `parse` fuzz target one file per message vector in
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
# The v2 record vectors, for the `record2` target.
out2="$here/corpus/record2"
mkdir -p "$out2"
python3 - "$here/../tests/data/record2_vectors.json" "$out2" <<'PY'
import json, pathlib, sys
v, out = json.load(open(sys.argv[1])), pathlib.Path(sys.argv[2])
n = 0
for r in v["records"]:
    for field in ("dat2_hex", "put2_hex"):
        (out / f"{r['name']}-{field}").write_bytes(bytes.fromhex(r[field])); n += 1
for name, hexed in v["messages"].items():
    if name.endswith("_hex") and name != "commit_sig_hex":
        (out / name).write_bytes(bytes.fromhex(hexed)); n += 1
print(f"wrote {n} seeds to {out}")
PY
# The backup target: the version-1 log fixture as a raw file, and its entries plus the v2 record
# vectors re-chunked for the framed reading (see fuzz_targets/backup.rs).
out3="$here/corpus/backup"
mkdir -p "$out3"
python3 - "$here/../tests/data/backup_v1.log" "$here/../tests/data/record2_vectors.json" "$out3" <<'PY'
import json, pathlib, struct, sys
log, out = open(sys.argv[1], "rb").read(), pathlib.Path(sys.argv[3])
(out / "backup_v1-raw").write_bytes(b"\x00" + log)
chunks, at = [], 24
while at + 12 <= len(log):
    (n,) = struct.unpack_from("<I", log, at)
    body = log[at + 12 : at + 12 + n]
    chunks.append(bytes([body[0]]) + struct.pack("<H", n - 1) + body[1:])
    at += 12 + n
for r in json.load(open(sys.argv[2]))["records"]:
    dat2 = bytes.fromhex(r["dat2_hex"])
    chunks.append(b"\x03" + struct.pack("<H", len(dat2)) + dat2)
(out / "framed-all").write_bytes(b"\x01" + bytes(8) + b"".join(chunks))
for i, c in enumerate(chunks):
    (out / f"framed-{i}").write_bytes(b"\x01" + bytes(8) + c)
print(f"wrote {len(chunks) + 2} seeds to {out}")
PY
