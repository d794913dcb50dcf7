#!/usr/bin/env bash
# The web UI in a real browser: starts `weir serve` on a free loopback port
# with a fresh workspace, publishes the digits example for tenant alice,
# and runs tests/ui/test_ui.py (Playwright from PyPI driving Debian's
# headless Chromium). Screenshots of each page go to target/ui-screenshots.
set -euo pipefail
cd "$(dirname "$0")/../.."

weir=${WEIR:-target/debug/weir}
venv=target/ui-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import playwright' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "playwright==1.65.2"
fi
if ! command -v chromium >/dev/null 2>&1; then
    echo "tests/ui: Chromium is missing: \`apt-get install chromium\` (make setup does it as root)" >&2
    exit 1
fi

. tests/serve.sh

mkdir -p "$work/ws"
"$weir" token create --tenant alice --workspace "$work/ws" >"$work/alice"
"$weir" token create --tenant bob --workspace "$work/ws" >"$work/bob"
serve_on_loopback
"$weir" publish examples/digits/pipeline.toml --server "$base" --token "$(cat "$work/alice")" >/dev/null

if ! "$venv/bin/python" tests/ui/test_ui.py "$base" "$(cat "$work/alice")" "$(cat "$work/bob")" target/ui-screenshots; then
    echo "--- weir serve's log ---" >&2
    cat "$work/serve.log" >&2
    exit 1
fi
