#!/usr/bin/env bash
# What an executed step costs the file system: an N-step chain whose every
# step executes (each upper-cases its predecessor's output and appends its
# name), run cold in a fresh workspace. Prints, for each weir binary given
# (default target/release/weir), the file-system metadata system calls per
# executed step (`strace -f -c`, when strace is installed) and the wall time
# of ROUNDS cold runs, the binaries alternated round by round so that a
# comparison sees the same disk. DIR (default: a temporary directory under
# TMPDIR) is where the workspaces live: put it on tmpfs or on a disk.
#
# Every run gets a new workspace, and all of them are removed only at the
# end: on an ext4 without a journal, creating a file costs a scan past every
# inode of its block group deleted in the last one to five minutes, so a run
# that followed the removal of the last run's workspace would measure that
# removal (see BENCHMARKS.md, Session 21). FRESH=0 removes the previous
# workspace right before each run instead, to measure exactly that.
# Usage: bench/executed_steps.sh [WEIR...]   (N=1000 ROUNDS=3 FRESH=1 DIR=... to change)
set -euo pipefail
. "$(dirname "$0")/chain.sh"

N=${N:-1000}
ROUNDS=${ROUNDS:-3}
FRESH=${FRESH:-1}
chain_bench "an executed step" "$@"

# A workspace for the next run: a new one, or with FRESH=0 the one before,
# removed first.
runs=0
next_workspace() {
    if [ "$FRESH" = 0 ]; then
        rm -rf "$dir/ws"
        ws=$dir/ws
    else
        runs=$((runs + 1))
        ws=$dir/ws-$runs
    fi
}

metadata='openat|openat2|statx|newfstatat|getdents64|mkdirat|unlinkat|renameat|renameat2|linkat|fchmodat|fchmod'
if command -v strace > /dev/null; then
    for bin in "${bins[@]}"; do
        next_workspace
        strace -f -c -o "$dir/strace.txt" "$bin" run "$dir/pipeline.toml" --workspace "$ws" --json > /dev/null
        printf '%s: metadata calls per executed step: ' "$bin"
        awk -v n="$N" -v names="^($metadata)\$" '$NF ~ names { calls[$NF] = $4; total += $4 }
            END { printf "%.1f (", total / n; for (c in calls) printf " %s %.1f", c, calls[c] / n; print " )" }' "$dir/strace.txt"
    done
fi
for ((round = 1; round <= ROUNDS; round++)); do
    for bin in "${bins[@]}"; do
        next_workspace
        sync
        start=$(date +%s%N)
        "$bin" run "$dir/pipeline.toml" --workspace "$ws" --json > /dev/null
        end=$(date +%s%N)
        printf 'round %d  %s: %d ms\n' "$round" "$bin" $(((end - start) / 1000000))
    done
done
rm -rf "$dir"/ws "$dir"/ws-*
