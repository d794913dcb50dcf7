#!/usr/bin/env bash
# Renders the HTML report of a digits run in headless Chromium and saves a
# screenshot, to check by eye that the page renders (graph, table, charts).
# Usage: scripts/report-screenshot.sh [OUT_DIR]   (default: target/report-check)
# Needs Debian's chromium (installed here if missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/report-check}
mkdir -p "$out"

if ! command -v chromium >/dev/null 2>&1; then
    apt-get update && apt-get install -y chromium
fi

make build examples >/dev/null
workspace="$out/.weir"
target/debug/weir run examples/digits/pipeline.toml --workspace "$workspace" >/dev/null
target/debug/weir report last -o "$out/report.html" --workspace "$workspace"

chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d)" --window-size=1400,1800 \
    --screenshot="$out/report.png" "file://$(realpath "$out/report.html")" 2>/dev/null
echo "screenshot: $out/report.png"
