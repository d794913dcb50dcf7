#!/usr/bin/env bash
# What a fully reused run of the Python digits example costs, process start
# to exit: each weir binary given (default target/release/weir) runs
# examples/digits-py once in a workspace of its own (building and compiling
# its five components), then ROUNDS more times, the binaries alternated
# round by round. Prints every round's wall time and each binary's median.
# Usage: bench/reused_python.sh [WEIR...]   (ROUNDS=6 to change; needs
# componentize-py from `make setup`)
set -euo pipefail

ROUNDS=${ROUNDS:-6}
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/weir)
for bin in "${bins[@]}"; do
    [ -x "$bin" ] || { echo "no $bin: cargo build --release -p weir-cli" >&2; exit 2; }
done
export WEIR_COMPONENTIZE_PY=${WEIR_COMPONENTIZE_PY:-$PWD/target/python-venv/bin/componentize-py}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/examples"
cp -r examples/digits examples/digits-py "$dir/examples/"
manifest=$dir/examples/digits-py/pipeline.toml

for i in "${!bins[@]}"; do
    "${bins[$i]}" run "$manifest" --workspace "$dir/ws-$i" --json > /dev/null 2>&1
done

declare -A walls
for ((round = 1; round <= ROUNDS; round++)); do
    for i in "${!bins[@]}"; do
        start=$EPOCHREALTIME
        "${bins[$i]}" run "$manifest" --workspace "$dir/ws-$i" --json > "$dir/summary.json" 2> /dev/null
        end=$EPOCHREALTIME
        grep -q '"ran":0' "$dir/summary.json" || { echo "${bins[$i]}: a step ran; the run was not fully reused" >&2; exit 1; }
        wall=$(echo "scale=1; ($end - $start) * 1000 / 1" | bc)
        walls[$i]+="$wall "
        printf 'round %d  %s: %s ms\n' "$round" "${bins[$i]}" "$wall"
    done
done
for i in "${!bins[@]}"; do
    printf 'median  %s: %s ms\n' "${bins[$i]}" \
        "$(printf '%s\n' ${walls[$i]} | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
done
