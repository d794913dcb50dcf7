#!/usr/bin/env bash
# What the digits example's steps cost when they execute: its pipeline run
# cold, in a fresh workspace, ROUNDS times with each weir binary given
# (default target/release/weir), the binaries alternated round by round.
# Prints, per binary, the file-system metadata system calls of a whole cold
# run (`strace -f -c`, when strace is installed), then per round the wall
# time and, for `train`, `evaluate` and `score` (all its map entries), the
# step's duration and the engine's share of it (staging and ingestion).
# DIR (default: a temporary directory under TMPDIR) holds the workspaces.
# Needs the example's modules: `make examples`.
# Usage: bench/digits_steps.sh [WEIR...]   (ROUNDS=5 DIR=... to change)
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/weir)
[ -f examples/digits/build/train.wasm ] || { echo "build the example's modules first: make examples" >&2; exit 1; }
dir=${DIR:-$(mktemp -d)}
mkdir -p "$dir"
pipeline=examples/digits/pipeline.toml

metadata='openat|openat2|statx|newfstatat|getdents64|mkdirat|unlinkat|renameat|renameat2|linkat|fchmodat|fchmod'
runs=0
if command -v strace > /dev/null; then
    for bin in "${bins[@]}"; do
        runs=$((runs + 1))
        strace -f -c -o "$dir/strace.txt" "$bin" run "$pipeline" --workspace "$dir/ws-$runs" --json > /dev/null
        printf '%s: metadata calls of a cold run: ' "$bin"
        awk -v names="^($metadata)\$" '$NF ~ names { calls[$NF] = $4; total += $4 }
            END { printf "%d (", total; for (c in calls) printf " %s %d", c, calls[c]; print " )" }' "$dir/strace.txt"
    done
fi
for ((round = 1; round <= ROUNDS; round++)); do
    for bin in "${bins[@]}"; do
        runs=$((runs + 1))
        start=$(date +%s%N)
        "$bin" run "$pipeline" --workspace "$dir/ws-$runs" --json > "$dir/run.json"
        end=$(date +%s%N)
        printf 'round %d  %s: %d ms;' "$round" "$bin" $(((end - start) / 1000000))
        python3 - "$dir/run.json" <<'EOF'
import json, sys
steps = {s["step"]: s for s in json.load(open(sys.argv[1]))["steps"]}
parts = []
for name in ("train", "evaluate", "score"):
    step, phases = steps[name], steps[name]["phases"]
    engine = phases["stage_ms"] + phases["ingest_ms"]
    parts.append(f" {name} {step['duration_ms']:.2f} ms (stage+ingest {engine:.3f})")
print(";".join(parts))
EOF
    done
done
rm -rf "$dir"/ws-*
