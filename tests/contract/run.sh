#!/usr/bin/env bash
# Contract fuzzing: start `weir serve` on a free loopback port with a fresh
# workspace and an admin token, and let schemathesis (PyPI) test every
# operation of /openapi.json: no 5xx, every status, content type, header and
# body as documented, schema-valid requests accepted and invalid ones
# refused. Bounded in time (WEIR_CONTRACT_SECONDS, default 60).
set -euo pipefail
cd "$(dirname "$0")/../.."

weir=${WEIR:-target/debug/weir}
venv=target/schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==4.32.5"
fi

work=$(mktemp -d)
server=
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# alice is a listed tenant, so tenants the fuzzer adds (PUT /v1/tenants) do not lock her out.
mkdir -p "$work/ws"
printf '[tenants.alice]\n' >"$work/ws/tenants.toml"
token=$("$weir" token create --tenant alice --admin --workspace "$work/ws")
"$weir" serve --workspace "$work/ws" --listen 127.0.0.1:0 >"$work/address" 2>"$work/serve.log" &
server=$!
for _ in $(seq 100); do
    grep -q "listening on" "$work/address" 2>/dev/null && break
    sleep 0.1
done
base=$(sed -n 's/^listening on //p' "$work/address")
[ -n "$base" ] || { cat "$work/serve.log"; echo "weir serve did not start"; exit 1; }

"$venv/bin/schemathesis" --config-file tests/contract/schemathesis.toml run "$base/openapi.json" \
    -H "Authorization: Bearer $token" \
    --phases examples,coverage,fuzzing --max-time "${WEIR_CONTRACT_SECONDS:-60}" \
    --seed 1 --workers 2
