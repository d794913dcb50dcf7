#!/usr/bin/env bash
# weir and Snakemake side by side on the same two pipelines, run the same way:
#   1. a 3-step text pipeline (upper-case a text, copy it, concatenate both);
#   2. a chain of 200 trivial steps (each upper-cases its predecessor's output
#      and appends its own number, so that every step has different work).
# For each: a cold run (nothing cached, fresh directory) and a fully cached
# re-run, process start to exit; medians, and Snakemake/weir as ratios.
#
# weir's steps are the test tool (WASI modules); Snakemake's are the shell
# equivalents (tr, cp, cat). Snakemake is installed from PyPI into a virtual
# environment under $WORK. Not part of `make test`: run `bench/peers.sh`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/weir-peers.XXXXXX)}
COLD_RUNS=${COLD_RUNS:-3}
CACHED_RUNS=${CACHED_RUNS:-7}
CHAIN=${CHAIN:-200}
mkdir -p "$WORK"

if [ ! -x "$WORK/venv/bin/snakemake" ]; then
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install --quiet snakemake
fi
SNAKEMAKE="$WORK/venv/bin/snakemake"

cargo build --quiet --release -p weir-cli --manifest-path "$ROOT/Cargo.toml"
cargo build --quiet --release --target wasm32-wasip1 --manifest-path "$ROOT/tests/guests/tool/Cargo.toml" \
    --target-dir "$ROOT/target/guests"
WEIR="$ROOT/target/release/weir"
TOOL="$ROOT/target/guests/wasm32-wasip1/release/tool.wasm"

# Seconds (with ms) that the command takes, its output discarded.
seconds() {
    local start end
    start=$(date +%s%N)
    "$@" > /dev/null 2>&1
    end=$(date +%s%N)
    awk -v ns="$((end - start))" 'BEGIN { printf "%.3f\n", ns / 1e9 }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# Writes the two pipelines for both tools into directory $1.
write_text_pipeline() {
    local dir=$1
    mkdir -p "$dir"
    printf 'the quick brown fox\njumps over the lazy dog\n' > "$dir/text.txt"
    cat > "$dir/pipeline.toml" <<TOML
name = "text"
[inputs]
text = "text.txt"
[steps.upper]
module = "$TOOL"
args = ["upper"]
inputs = { text = "inputs.text" }
outputs = { result = "file" }
[steps.copy]
module = "$TOOL"
args = ["copy", "x", "result"]
inputs = { x = "upper.result" }
outputs = { result = "file" }
[steps.join]
module = "$TOOL"
args = ["concat"]
inputs = { a = "upper.result", b = "copy.result" }
outputs = { result = "file" }
TOML
    cat > "$dir/Snakefile" <<'SMK'
rule all:
    input: "join.txt"
rule upper:
    input: "text.txt"
    output: "upper.txt"
    shell: "tr a-z A-Z < {input} > {output}"
rule copy:
    input: "upper.txt"
    output: "copy.txt"
    shell: "cp {input} {output}"
rule join:
    input: "upper.txt", "copy.txt"
    output: "join.txt"
    shell: "cat {input} > {output}"
SMK
}

write_chain_pipeline() {
    local dir=$1
    mkdir -p "$dir"
    echo seed > "$dir/seed.txt"
    {
        echo 'name = "chain"'
        echo '[inputs]'
        echo 'seed = "seed.txt"'
        for i in $(seq 0 $((CHAIN - 1))); do
            if [ "$i" -eq 0 ]; then source="inputs.seed"; else source="s$((i - 1)).result"; fi
            printf '[steps.s%d]\nmodule = "%s"\nargs = ["upper", "%d"]\ninputs = { text = "%s" }\noutputs = { result = "file" }\n' \
                "$i" "$TOOL" "$i" "$source"
        done
    } > "$dir/pipeline.toml"
    {
        printf 'rule all:\n    input: "s%d.txt"\n' $((CHAIN - 1))
        for i in $(seq 0 $((CHAIN - 1))); do
            if [ "$i" -eq 0 ]; then source="seed.txt"; else source="s$((i - 1)).txt"; fi
            printf 'rule s%d:\n    input: "%s"\n    output: "s%d.txt"\n    shell: "{{ tr a-z A-Z < {input}; printf \x27[%d]\x27; }} > {output}"\n' \
                "$i" "$source" "$i" "$i"
        done
    } > "$dir/Snakefile"
}

# Runs one comparison: $1 name, $2 writer function.
compare() {
    local name=$1 writer=$2 cold_weir=() cold_smk=() cached_weir=() cached_smk=()
    for run in $(seq "$COLD_RUNS"); do
        local dir="$WORK/$name-$run"
        rm -rf "$dir"
        "$writer" "$dir"
        cold_weir+=("$(cd "$dir" && seconds "$WEIR" run pipeline.toml --workspace .weir --jobs 2 --json)")
        cold_smk+=("$(cd "$dir" && seconds "$SNAKEMAKE" --cores 2 --quiet all)")
    done
    local dir="$WORK/$name-1"
    for run in $(seq "$CACHED_RUNS"); do
        cached_weir+=("$(cd "$dir" && seconds "$WEIR" run pipeline.toml --workspace .weir --jobs 2 --json)")
        cached_smk+=("$(cd "$dir" && seconds "$SNAKEMAKE" --cores 2 --quiet all)")
    done
    local cw cs hw hs
    cw=$(printf '%s\n' "${cold_weir[@]}" | median)
    cs=$(printf '%s\n' "${cold_smk[@]}" | median)
    hw=$(printf '%s\n' "${cached_weir[@]}" | median)
    hs=$(printf '%s\n' "${cached_smk[@]}" | median)
    printf '| %s | cold | %s s | %s s | %s |\n' "$name" "$cw" "$cs" "$(awk -v a="$cs" -v b="$cw" 'BEGIN { printf "%.1f", a / b }')"
    printf '| %s | fully cached re-run | %s s | %s s | %s |\n' "$name" "$hw" "$hs" "$(awk -v a="$hs" -v b="$hw" 'BEGIN { printf "%.1f", a / b }')"
}

echo "Snakemake $("$SNAKEMAKE" --version), weir $("$WEIR" --version | cut -d' ' -f2); medians of $COLD_RUNS cold and $CACHED_RUNS cached runs"
echo
echo "| pipeline | run | weir | Snakemake | Snakemake / weir |"
echo "|---|---|---:|---:|---:|"
compare "text (3 steps)" write_text_pipeline
compare "chain ($CHAIN steps)" write_chain_pipeline
