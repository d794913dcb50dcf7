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

. tests/serve.sh

# alice is a listed tenant, so tenants the fuzzer adds (PUT /v1/tenants) do not lock her out.
mkdir -p "$work/ws"
printf '[tenants.alice]\n' >"$work/ws/tenants.toml"
token=$("$weir" token create --tenant alice --admin --workspace "$work/ws")
serve_on_loopback

"$venv/bin/schemathesis" --config-file tests/contract/schemathesis.toml run "$base/openapi.json" \
    -H "Authorization: Bearer $token" \
    --phases examples,coverage,fuzzing --max-time "${WEIR_CONTRACT_SECONDS:-60}" \
    --seed 1 --workers 2
