# Sourced by the bench scripts: writes DIR/pipeline.toml, an N-step chain of
# the test tool in which each step upper-cases its predecessor's output and
# appends its own name (so every step has its own key and bytes), fed by
# DIR/seed.txt. Usage: write_chain DIR N
write_chain() {
    local dir=$1 n=$2 i
    {
        printf 'name = "chain"\n[inputs]\nseed = "seed.txt"\n'
        printf '[steps.s0]\nmodule = "tool.wasm"\nargs = ["upper", "s0"]\ninputs = { text = "inputs.seed" }\noutputs = { result = "file" }\n'
        for ((i = 1; i < n; i++)); do
            printf '[steps.s%d]\nmodule = "tool.wasm"\nargs = ["upper", "s%d"]\ninputs = { text = "s%d.result" }\noutputs = { result = "file" }\n' "$i" "$i" $((i - 1))
        done
    } > "$dir/pipeline.toml"
}
