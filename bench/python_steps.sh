#!/usr/bin/env bash
# What a Python step costs, measured with the digits example in both
# languages side by side (same data, same split, same epochs), each in a
# fresh workspace:
# - building the five Python steps (`weir build`, componentize-py) and the
#   size of one built component and of its compiled native code;
# - the first run (each component compiled to native code, then cached on
#   disk) and ROUNDS later runs of every step (`--rerun`), per step: the
#   median time to instantiate and the median step time;
# - the same runs of the Rust steps.
# Usage: bench/python_steps.sh   (ROUNDS=5 to change; needs componentize-py
# from `make setup`, a release weir and the Rust digits steps built in
# target/guests, as `cargo test` builds them)
set -euo pipefail

ROUNDS=${ROUNDS:-5}
WEIR=$(realpath "${WEIR:-target/release/weir}")
RUST_STEPS=${RUST_STEPS:-target/guests/wasm32-wasip2/release}
export WEIR_COMPONENTIZE_PY=${WEIR_COMPONENTIZE_PY:-$PWD/target/python-venv/bin/componentize-py}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp -r examples/digits "$dir/digits"
cp -r examples/digits-py "$dir/digits-py"
rm -rf "$dir"/digits*/.weir "$dir"/digits*/results
mkdir -p "$dir/digits/build"
for step in validate prep train evaluate score; do cp "$RUST_STEPS/$step.wasm" "$dir/digits/build/"; done

now() { date +%s.%N; }
# The JSON summary of a run on stdin: each step's phases, one line per step.
phases() {
    python3 -c '
import json, sys
for step in json.load(sys.stdin)["steps"]:
    if step["status"] == "ran" and step["phases"]:
        print(step["step"], step["phases"]["instantiate_ms"], step["duration_ms"])'
}

echo "weir $("$WEIR" --version), componentize-py $("$WEIR_COMPONENTIZE_PY" --version)"
start=$(now)
"$WEIR" build "$dir/digits-py/pipeline.toml" --workspace "$dir/py" > /dev/null 2>&1
printf 'build of the 5 Python steps: %.1f s\n' "$(echo "$(now) - $start" | bc)"
component=$(cat "$(ls "$dir"/py/builds/python/* | head -n 1)")
printf 'one component: %s bytes\n' "$("$WEIR" cat "blake3:$component" --workspace "$dir/py" | wc -c)"

for lang in py rust; do
    manifest="$dir/digits-py/pipeline.toml"
    [ "$lang" = rust ] && manifest="$dir/digits/pipeline.toml"
    start=$(now)
    "$WEIR" run "$manifest" --workspace "$dir/$lang" --json > "$dir/$lang-first.json"
    printf '%-4s first run (compiles each step): %.2f s\n' "$lang" "$(echo "$(now) - $start" | bc)"
    [ "$lang" = py ] && printf 'compiled code of one Python step: %s bytes\n' \
        "$(ls -l "$dir"/py/compiled/*/*.cwasm | head -n 1 | awk '{print $5}')"
    for round in $(seq "$ROUNDS"); do
        "$WEIR" run "$manifest" --workspace "$dir/$lang" --json \
            --rerun data/validate --rerun data/split --rerun train --rerun evaluate --rerun score | phases
    done > "$dir/$lang-rounds.txt"
done
python3 - "$dir" <<'EOF'
import statistics, sys
from collections import defaultdict
times = {}
for lang in ("py", "rust"):
    steps = defaultdict(lambda: ([], []))
    for line in open(f"{sys.argv[1]}/{lang}-rounds.txt"):
        name, instantiate, duration = line.split()
        steps[name][0].append(float(instantiate))
        steps[name][1].append(float(duration))
    times[lang] = {name: (statistics.median(i), statistics.median(d)) for name, (i, d) in steps.items()}
print("| step | Python: instantiate | Python: step | Rust: instantiate | Rust: step | Python / Rust |")
print("|---|---|---|---|---|---|")
for name in sorted(times["py"]):
    (pi, pd), (ri, rd) = times["py"][name], times["rust"][name]
    print(f"| {name} | {pi:.1f} ms | {pd:.1f} ms | {ri:.2f} ms | {rd:.1f} ms | {pd / rd:.1f} × |")
EOF
