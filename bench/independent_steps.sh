#!/usr/bin/env bash
# The per-step overhead of independent trivial steps (the performance
# issue's 150 µs goal): N copies of one small step in one run, one worker,
# every step executed (`--no-cache`, after a first run has compiled the
# module), timed process start to exit. The same for a run of SMALL copies
# gives the process's fixed cost, so that the cost each step adds is
# (time of N − time of SMALL) / (N − SMALL). ROUNDS rounds of RUNS runs of
# each size, the weir binaries given (default target/release/weir)
# alternated round by round so that a comparison sees the same machine,
# each in its own workspace. Prints, per binary, the medians per round and
# over all rounds: µs per step of the N-step run (start to exit over N) and
# µs each step adds. DIR (default: a temporary directory) holds the
# workspaces: put it on tmpfs (/dev/shm) to leave the disk out.
# Usage: bench/independent_steps.sh [WEIR...]   (N=300 SMALL=30 ROUNDS=5 RUNS=5 DIR=... to change)
set -euo pipefail
. "$(dirname "$0")/chain.sh"

N=${N:-300}
SMALL=${SMALL:-30}
ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-5}
[ "$SMALL" -lt "$N" ] || { echo "SMALL ($SMALL) must be under N ($N)" >&2; exit 2; }
chain_bench "an independent step" "$@"
write_wide "$dir" "$N" wide.toml
write_wide "$dir" "$SMALL" small.toml

for i in "${!bins[@]}"; do
    rm -rf "$dir/ws-$i"
    "${bins[$i]}" run "$dir/wide.toml" --workspace "$dir/ws-$i" -j 1 --json > /dev/null
done

# The median over RUNS executions of PIPELINE (of COUNT steps) by BIN in
# workspace WS, in µs from process start to exit.
run_median() {
    local bin=$1 ws=$2 pipeline=$3 count=$4 run start end times=()
    for ((run = 1; run <= RUNS; run++)); do
        start=$EPOCHREALTIME
        "$bin" run "$dir/$pipeline" --workspace "$ws" -j 1 --no-cache --json > "$dir/summary.json"
        end=$EPOCHREALTIME
        grep -q "\"ran\":$count" "$dir/summary.json" || { echo "$bin: not every step ran" >&2; exit 1; }
        times+=("$(echo "($end - $start) * 1000000" | bc)")
    done
    printf '%s\n' "${times[@]}" | median
}

declare -A per_step added
for ((round = 1; round <= ROUNDS; round++)); do
    for i in "${!bins[@]}"; do
        bin=${bins[$i]}
        wide=$(run_median "$bin" "$dir/ws-$i" wide.toml "$N")
        small=$(run_median "$bin" "$dir/ws-$i" small.toml "$SMALL")
        step=$(echo "scale=1; $wide / $N" | bc)
        more=$(echo "scale=1; ($wide - $small) / ($N - $SMALL)" | bc)
        per_step[$i]+="$step "
        added[$i]+="$more "
        printf 'round %d  %s: %s µs per step of %d, %s µs added per step (medians of %d)\n' \
            "$round" "$bin" "$step" "$N" "$more" "$RUNS"
    done
done
for i in "${!bins[@]}"; do
    printf 'all rounds  %s: %s µs per step of %d, %s µs added per step\n' "${bins[$i]}" \
        "$(printf '%s\n' ${per_step[$i]} | median)" "$N" "$(printf '%s\n' ${added[$i]} | median)"
done
rm -rf "$dir"/ws-*
