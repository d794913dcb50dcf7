#!/usr/bin/env bash
# The team's shared cache, measured: an N-step chain (each step upper-cases
# its predecessor's output and appends its own name, so every step has its
# own key and its own bytes) computed in one workspace, which sends every result
# to a `weir serve` on loopback; then the same pipeline run in an empty
# workspace that pulls every step from it; then run again there, offline
# (every step reused locally). Prints process start-to-exit times and the
# bytes moved. Usage: bench/shared_cache.sh [N]   (default 1000; builds nothing:
# run `cargo build --release -p weir-cli` and `make test` or `cargo test` first).
# RATE=1000 measures under `weir serve`'s default rate limit per token.
set -euo pipefail
. "$(dirname "$0")/chain.sh"

N=${1:-1000}
WEIR=${WEIR:-target/release/weir}
TOOL=${TOOL:-target/guests/wasm32-wasip1/release/tool.wasm}
needs_release_and_tool
scratch_with_server

WEIR=$(realpath "$WEIR")
cp "$TOOL" "$dir/tool.wasm"
echo "the shared cache" > "$dir/seed.txt"
write_chain "$dir" "$N"

"$WEIR" --workspace "$dir/server" token create --tenant team > "$dir/token"
serve_on_loopback "$dir/server" --rate-limit "${RATE:-100000}"
remote=(--remote "$url" --token "$(cat "$dir/token")")

timed() {
    local label=$1
    shift
    local start end
    start=$(date +%s.%N)
    (cd "$dir" && "$@") > "$dir/out.json" 2> "$dir/err.txt"
    end=$(date +%s.%N)
    printf '%-44s %8.0f ms   %s\n' "$label" "$(echo "($end - $start) * 1000" | bc)" \
        "$(grep -h -o -e '^shared cache .*' -e '^sent .*' "$dir/err.txt" "$dir/out.json" || echo '-')"
}

echo "chain of $N steps; weir $("$WEIR" --version); the server allows ${RATE:-100000} requests/s per token"
timed "compute, no shared cache (baseline)" "$WEIR" run pipeline.toml --json --workspace "$dir/local"
timed "compute, send every result"       "$WEIR" run pipeline.toml --json --workspace "$dir/a" "${remote[@]}"
timed "empty workspace, pull every step" "$WEIR" run pipeline.toml --json --workspace "$dir/b" "${remote[@]}"
timed "the same workspace again, offline" "$WEIR" run pipeline.toml --json --workspace "$dir/b" --offline
timed "push the first run again (all known)" "$WEIR" --workspace "$dir/a" push last "${remote[@]}"
