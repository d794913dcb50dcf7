#!/usr/bin/env bash
# What weir adds to Slurm's own cost per job: an N-step chain (each step
# needs the one before, so jobs run one after another) run with
# `--executor slurm`, against N batch jobs of a trivial command submitted one
# after another, each as soon as the previous one's output file appeared
# (polled every 10 ms: what weir does), and against `srun` (an interactive
# step, which skips batch scheduling) and `sbatch --wait` (which polls), on
# the same cluster, alternated over ROUNDS rounds. Usage: bench/slurm_overhead.sh [N] [ROUNDS]
# (needs a cluster: scripts/slurm-cluster.sh up; builds nothing: run
# `cargo build --release -p weir-cli` and build the test guests first).
set -euo pipefail
. "$(dirname "$0")/chain.sh"

N=${1:-10}
ROUNDS=${2:-3}
WEIR=$(realpath "${WEIR:-target/release/weir}")
TOOL=${TOOL:-target/guests/wasm32-wasip1/release/tool.wasm}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp "$TOOL" "$dir/tool.wasm"
write_chain "$dir" "$N"

ms() { echo "($2 - $1) * 1000" | bc; }
# One probe job first, so that no timing below includes it.
echo "warm-up" > "$dir/seed.txt"
(cd "$dir" && "$WEIR" run pipeline.toml --executor slurm --workspace "$dir/ws" > /dev/null)

echo "chain of $N steps on $(sinfo --noheader --Node --format=%N | paste -sd, -); weir $("$WEIR" --version)"
for round in $(seq "$ROUNDS"); do
    start=$(date +%s.%N)
    for _ in $(seq "$N"); do srun --ntasks=1 --mem=256M true; done
    end=$(date +%s.%N)
    srun_ms=$(ms "$start" "$end")
    start=$(date +%s.%N)
    for _ in $(seq "$N"); do sbatch --wait --quiet --mem=256M --output=/dev/null --wrap true; done
    end=$(date +%s.%N)
    sbatch_ms=$(ms "$start" "$end")
    start=$(date +%s.%N)
    for i in $(seq "$N"); do
        sbatch --quiet --mem=256M --output=/dev/null --wrap "touch $dir/done.$round.$i"
        while [ ! -e "$dir/done.$round.$i" ]; do sleep 0.01; done
    done
    end=$(date +%s.%N)
    batch_ms=$(ms "$start" "$end")
    echo "round $round $(date +%N)" > "$dir/seed.txt"
    start=$(date +%s.%N)
    (cd "$dir" && "$WEIR" run pipeline.toml --executor slurm --workspace "$dir/ws" > /dev/null)
    end=$(date +%s.%N)
    weir_ms=$(ms "$start" "$end")
    printf 'round %d, per job: batch job %5.0f ms  weir --executor slurm %5.0f ms  (weir/batch %.2f)   srun %4.0f ms  sbatch --wait %5.0f ms\n' \
        "$round" "$(echo "$batch_ms / $N" | bc -l)" "$(echo "$weir_ms / $N" | bc -l)" "$(echo "$weir_ms / $batch_ms" | bc -l)" \
        "$(echo "$srun_ms / $N" | bc -l)" "$(echo "$sbatch_ms / $N" | bc -l)"
done
