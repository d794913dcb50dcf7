#!/usr/bin/env bash
# What a fully reused N-step chain costs, process start to exit: the chain
# of `write_chain` run once to fill the cache, then ROUNDS rounds in which
# each weir binary given (default target/release/weir) runs it RUNS times,
# the binaries alternated round by round so a comparison sees the same
# machine; each binary has its own workspace (they may differ in schema),
# filled by its own first run. Prints each binary's median wall and CPU
# (user + system) time per round, and the medians over all rounds. DIR
# (default: a temporary directory) holds the workspaces: put it on tmpfs
# (/dev/shm) to leave the disk out.
# Usage: bench/reused_chain.sh [WEIR...]   (N=1000 ROUNDS=5 RUNS=9 DIR=... to change)
set -euo pipefail
. "$(dirname "$0")/chain.sh"

N=${N:-1000}
ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-9}
chain_bench "a reused step" "$@"

# Fill each binary's cache, then let the seed's file stamp settle (a file
# changed in the last 2 s is hashed again on every run).
for i in "${!bins[@]}"; do
    rm -rf "$dir/ws-$i"
    "${bins[$i]}" run "$dir/pipeline.toml" --workspace "$dir/ws-$i" --json > /dev/null
done
sleep 2.1

declare -A walls cpus
TIMEFORMAT='%3R %3U %3S'
for ((round = 1; round <= ROUNDS; round++)); do
    for i in "${!bins[@]}"; do
        bin=${bins[$i]}
        wall=() cpu=()
        for ((run = 1; run <= RUNS; run++)); do
            start=$EPOCHREALTIME
            { time "$bin" run "$dir/pipeline.toml" --workspace "$dir/ws-$i" --json > "$dir/summary.json" 2> /dev/null; } \
                2> "$dir/time.txt"
            end=$EPOCHREALTIME
            grep -q '"ran":0' "$dir/summary.json" || { echo "$bin: a step ran; the chain was not fully reused" >&2; exit 1; }
            read -r _ u s < "$dir/time.txt"
            wall+=("$(echo "scale=1; ($end - $start) * 1000 / 1" | bc)") cpu+=("$(echo "($u + $s) * 1000" | bc)")
        done
        walls[$i]+="${wall[*]} " cpus[$i]+="${cpu[*]} "
        printf 'round %d  %s: wall %s ms, cpu %s ms (medians of %d)\n' "$round" "$bin" \
            "$(printf '%s\n' "${wall[@]}" | median)" "$(printf '%s\n' "${cpu[@]}" | median)" "$RUNS"
    done
done
for i in "${!bins[@]}"; do
    printf 'all rounds  %s: wall %s ms, cpu %s ms\n' "${bins[$i]}" \
        "$(printf '%s\n' ${walls[$i]} | median)" "$(printf '%s\n' ${cpus[$i]} | median)"
done
