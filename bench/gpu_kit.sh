#!/usr/bin/env bash
# Builds what bench/gpu_check.sh needs into one directory, for a machine with
# an NVIDIA GPU but no Rust toolchain: `weir` and the bridge bench built with
# `--features cuda` (stripped and gzipped), the SDK test guest and the digits
# steps.
#
#   bench/gpu_kit.sh [KIT]        # default KIT: .gpu (git-ignored)
#
# Then, on the GPU machine, from the repository root:
#   bench/gpu_check.sh KIT OUT
set -euo pipefail
cd "$(dirname "$0")/.."
kit=${1:-.gpu}
mkdir -p "$kit/guests" "$kit/digits"

cargo build --release -p weir-cli --features cuda
cp target/release/weir "$kit/weir"
bench=$(cargo bench -p weir-tests --features cuda --bench bridge --no-run --message-format json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "bridge" and m.get("executable"):
        print(m["executable"])')
cp "$bench" "$kit/bridge"
strip "$kit/weir" "$kit/bridge"
# Both would not travel within the 64 MiB a lent GPU machine takes; gpu_check.sh unpacks them.
gzip -9f "$kit/weir" "$kit/bridge"

# The guests as the tests and `make examples` build them.
CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS="-C target-feature=+simd128" cargo build --quiet --release \
    --target wasm32-wasip2 --manifest-path tests/guests/sdk-tool/Cargo.toml --target-dir target/guests
cargo build --quiet --release --target wasm32-wasip2 --manifest-path examples/digits/steps/Cargo.toml \
    --target-dir target/examples
mkdir -p "$kit/guests/wasm32-wasip2/release"
cp target/guests/wasm32-wasip2/release/sdk-tool.wasm "$kit/guests/wasm32-wasip2/release/"
for step in validate prep train evaluate score; do
    cp "target/examples/wasm32-wasip2/release/$step.wasm" "$kit/digits/"
done
du -sh "$kit"
