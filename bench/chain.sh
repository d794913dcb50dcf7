# Sourced by the bench scripts: what they share.

# Writes DIR/pipeline.toml, an N-step chain of
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

# Writes DIR/NAME (default wide.toml): N independent copies of the test
# tool's `upper` step, each reading DIR/seed.txt and appending its own name.
# Usage: write_wide DIR N [NAME]
write_wide() {
    local dir=$1 n=$2 name=${3:-wide.toml} i
    {
        printf 'name = "wide"\n[inputs]\nseed = "seed.txt"\n'
        for ((i = 0; i < n; i++)); do
            printf '[steps.s%d]\nmodule = "tool.wasm"\nargs = ["upper", "s%d"]\ninputs = { text = "inputs.seed" }\noutputs = { result = "file" }\n' "$i" "$i"
        done
    } > "$dir/$name"
}

# The median of the numbers on stdin.
median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.1f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Exits, saying how to build them, unless the release weir ($WEIR) and the
# test tool ($TOOL) are built.
needs_release_and_tool() {
    [ -x "$WEIR" ] || { echo "no $WEIR: cargo build --release -p weir-cli" >&2; exit 2; }
    [ -f "$TOOL" ] || { echo "no $TOOL: build the test guests (cargo test -p weir-tests)" >&2; exit 2; }
}

# A scratch directory `dir`, removed on exit with the server of
# `serve_on_loopback`, if one was started.
scratch_with_server() {
    dir=$(mktemp -d)
    server=
    trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
}

# Starts `weir serve` for workspace WS on a free loopback port (ARGS passed
# on), its output in $dir/serve.out and serve.err; sets `server` (its pid)
# and `url`. Usage: serve_on_loopback WS [ARGS...]
serve_on_loopback() {
    local ws=$1
    shift
    "$WEIR" --workspace "$ws" serve --listen 127.0.0.1:0 "$@" > "$dir/serve.out" 2> "$dir/serve.err" &
    server=$!
    for _ in $(seq 100); do grep -q '^listening on ' "$dir/serve.out" 2>/dev/null && break; sleep 0.05; done
    url=$(sed -n 's/^listening on //p' "$dir/serve.out")
}

# Sets up a comparison of weir binaries on an $N-step chain: `bins` holds
# the binaries given (default target/release/weir), each checked, and `dir`
# ($DIR, or a temporary directory removed on exit) the test tool ($TOOL),
# seed.txt holding SEED, and the chain's pipeline.toml.
# Usage: chain_bench SEED [WEIR...]
chain_bench() {
    local seed=$1 bin
    shift
    TOOL=${TOOL:-target/guests/wasm32-wasip1/release/tool.wasm}
    bins=("$@")
    [ ${#bins[@]} -gt 0 ] || bins=(target/release/weir)
    for bin in "${bins[@]}"; do
        [ -x "$bin" ] || { echo "no $bin: cargo build --release -p weir-cli" >&2; exit 2; }
    done
    [ -f "$TOOL" ] || { echo "no $TOOL: build the test guests (cargo test -p weir-tests)" >&2; exit 2; }
    dir=${DIR:-$(mktemp -d)}
    mkdir -p "$dir"
    [ -n "${DIR:-}" ] || trap 'rm -rf "$dir"' EXIT
    cp "$TOOL" "$dir/tool.wasm"
    echo "$seed" > "$dir/seed.txt"
    write_chain "$dir" "$N"
}
