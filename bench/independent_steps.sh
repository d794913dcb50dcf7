#!/usr/bin/env bash
# The per-step overhead of independent trivial steps (the performance
# issue's 150 µs goal): N copies of one small step in one run, one worker,
# every step executed (`--no-cache`, after a first run has compiled the
# module), timed process start to exit and divided by N. ROUNDS rounds of
# RUNS runs each, the weir binaries given (default target/release/weir)
# alternated round by round so that a comparison sees the same machine,
# each in its own workspace. Prints each binary's median per round and over
# all rounds, in µs per step. DIR (default: a temporary directory) holds the
# workspaces: put it on tmpfs (/dev/shm) to leave the disk out.
# Usage: bench/independent_steps.sh [WEIR...]   (N=300 ROUNDS=5 RUNS=5 DIR=... to change)
set -euo pipefail
. "$(dirname "$0")/chain.sh"

N=${N:-300}
ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-5}
chain_bench "an independent step" "$@"
write_wide "$dir" "$N"

for i in "${!bins[@]}"; do
    rm -rf "$dir/ws-$i"
    "${bins[$i]}" run "$dir/wide.toml" --workspace "$dir/ws-$i" -j 1 --json > /dev/null
done

declare -A all
for ((round = 1; round <= ROUNDS; round++)); do
    for i in "${!bins[@]}"; do
        bin=${bins[$i]}
        per_step=()
        for ((run = 1; run <= RUNS; run++)); do
            start=$EPOCHREALTIME
            "$bin" run "$dir/wide.toml" --workspace "$dir/ws-$i" -j 1 --no-cache --json > "$dir/summary.json"
            end=$EPOCHREALTIME
            grep -q "\"ran\":$N" "$dir/summary.json" || { echo "$bin: not every step ran" >&2; exit 1; }
            per_step+=("$(echo "scale=1; ($end - $start) * 1000000 / $N" | bc)")
        done
        all[$i]+="${per_step[*]} "
        printf 'round %d  %s: %s µs per step (median of %d)\n' "$round" "$bin" "$(printf '%s\n' "${per_step[@]}" | median)" "$RUNS"
    done
done
for i in "${!bins[@]}"; do
    printf 'all rounds  %s: %s µs per step\n' "${bins[$i]}" "$(printf '%s\n' ${all[$i]} | median)"
done
rm -rf "$dir"/ws-*
