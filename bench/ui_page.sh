#!/usr/bin/env bash
# The web UI's run page for an N-step chain (default 1,000): how long the
# server takes to answer it, how many bytes the page loads (HTML, its one
# stylesheet and one script), and, in headless Chromium, the time to first
# contentful paint and to the load event. Usage: bench/ui_page.sh [N]
# (builds nothing: `cargo build --release -p weir-cli`, the test guests, and
# `tests/ui/run.sh` once for the Playwright environment).
set -euo pipefail
. "$(dirname "$0")/chain.sh"

N=${1:-1000}
WEIR=${WEIR:-target/release/weir}
TOOL=${TOOL:-target/guests/wasm32-wasip1/release/tool.wasm}
PYTHON=${PYTHON:-target/ui-venv/bin/python}
needs_release_and_tool
scratch_with_server

WEIR=$(realpath "$WEIR")
cp "$TOOL" "$dir/tool.wasm"
echo "a page" > "$dir/seed.txt"
write_chain "$dir" "$N"
"$WEIR" --workspace "$dir/ws" token create --tenant team > "$dir/token"
serve_on_loopback "$dir/ws"
token=$(cat "$dir/token")
"$WEIR" publish "$dir/pipeline.toml" --server "$url" --token "$token" > /dev/null
id=$(curl -sf -X POST "$url/v1/pipelines/chain/runs" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{}' \
    | sed 's/.*"id":"\([^"]*\)".*/\1/')
curl -sfN "$url/v1/runs/$id/events" -H "Authorization: Bearer $token" > /dev/null
curl -sf -c "$dir/cookies" -o /dev/null --data-urlencode "token=$token" "$url/login"

echo "run page of a $N-step chain; weir $("$WEIR" --version)"
for round in 1 2 3 4 5; do
    curl -sf -b "$dir/cookies" -o /dev/null -w "server answer (curl, round $round): %{time_starttransfer}s to the first byte, %{time_total}s in all, %{size_download} bytes of HTML\n" "$url/runs/$id"
done
curl -sf -b "$dir/cookies" -o "$dir/page.html" "$url/runs/$id"
echo "the HTML gzipped (as a reverse proxy would send it): $(gzip -6 -c "$dir/page.html" | wc -c) bytes"
for asset in ui.css ui.js; do
    curl -sf -o /dev/null -w "$asset: %{size_download} bytes\n" "$url/assets/$asset"
done
if [ -x "$PYTHON" ]; then
    "$PYTHON" - "$url" "$token" "$id" <<'PY'
import sys
from playwright.sync_api import sync_playwright
url, token, run = sys.argv[1:4]
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(url + "/login")
    page.fill("#token", token)
    page.click("form.login button[type=submit]")
    page.wait_for_url(url + "/")
    for round in range(3):
        page.goto(f"{url}/runs/{run}", wait_until="load")
        paint = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")
        nav = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
        import json
        nav = json.loads(nav)
        loaded = sum(entry["transferSize"] for entry in page.evaluate("performance.getEntriesByType('resource').map(e => ({transferSize: e.transferSize}))")) + nav["transferSize"]
        print(f"chromium (round {round + 1}): first contentful paint {paint:.0f} ms, load event {nav['loadEventEnd']:.0f} ms, {loaded} bytes transferred")
    browser.close()
PY
fi
