#!/usr/bin/env bash
# A map step of N entries (default 100) on Slurm, submitted as one job array
# (the default) and as N separate jobs (`arrays = false`), alternated over
# ROUNDS rounds: wall time of the run, and the requests the controller got
# (`sdiag`'s counts of batch submissions and job queries, reset before each
# run; needs root or SlurmUser). Usage: bench/slurm_array.sh [N] [ROUNDS]
# (needs a cluster: scripts/slurm-cluster.sh up; builds nothing).
set -euo pipefail

N=${1:-100}
ROUNDS=${2:-2}
JOBS=$(( N < 256 ? N : 256 ))  # weir runs at most 256 steps (or array tasks' submissions) at once
WEIR=$(realpath "${WEIR:-target/release/weir}")
TOOL=${TOOL:-target/guests/wasm32-wasip1/release/tool.wasm}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp "$TOOL" "$dir/tool.wasm"
mkdir -p "$dir/batch"
printf 'name = "fan"\n[inputs]\nbatch = "batch"\n[steps.each]\nmodule = "tool.wasm"\nargs = ["copy", "batch", "result"]\nmap = "batch"\ninputs = { batch = "inputs.batch" }\noutputs = { result = "file" }\n' > "$dir/pipeline.toml"

rpc() { sdiag | grep -E "^[[:space:]]+$1 " | sed -n 's/.*count:\([0-9]*\).*/\1/p' | head -n 1; }
echo "a map step of $N entries (-j $JOBS) on $(sinfo --noheader --Node --format=%N | paste -sd, -); weir $("$WEIR" --version)"
for round in $(seq "$ROUNDS"); do
    for arrays in true false; do
        ws="$dir/ws-$arrays"
        mkdir -p "$ws"
        printf '[executor]\nkind = "slurm"\n[executor.slurm]\narrays = %s\n' "$arrays" > "$ws/config.toml"
        rm -f "$dir"/batch/*
        if [ ! -e "$ws/slurm/probed" ]; then
            # The probe job, once per workspace, is not timed.
            echo "warm-up $arrays" > "$dir/batch/0.txt"
            (cd "$dir" && "$WEIR" run pipeline.toml --workspace "$ws" > /dev/null)
            rm -f "$dir"/batch/*
        fi
        for i in $(seq "$N"); do echo "round $round entry $i $arrays" > "$dir/batch/$i.txt"; done
        sdiag -r > /dev/null
        start=$(date +%s.%N)
        (cd "$dir" && "$WEIR" run pipeline.toml --workspace "$ws" -j "$JOBS" > /dev/null)
        end=$(date +%s.%N)
        printf 'round %d, arrays = %-5s: %6.1f s, %4s batch submissions, %4s job queries\n' "$round" "$arrays" \
            "$(echo "$end - $start" | bc)" "$(rpc REQUEST_SUBMIT_BATCH_JOB)" "$(rpc REQUEST_JOB_INFO)"
    done
done
