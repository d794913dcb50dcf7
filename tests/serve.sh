# Sourced by tests/contract/run.sh and tests/ui/run.sh: a scratch directory
# `work` (removed on exit, with the server) and `weir serve` started in it.

work=$(mktemp -d)
server=
stop_server_and_clean() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap stop_server_and_clean EXIT

# Starts `$weir serve` for workspace $work/ws on a free loopback port; sets
# `server` (its pid) and `base` (its URL), or exits showing its log.
serve_on_loopback() {
    "$weir" serve --workspace "$work/ws" --listen 127.0.0.1:0 >"$work/address" 2>"$work/serve.log" &
    server=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$work/address" 2>/dev/null && break
        sleep 0.1
    done
    base=$(sed -n 's/^listening on //p' "$work/address")
    [ -n "$base" ] || { cat "$work/serve.log"; echo "weir serve did not start"; exit 1; }
}
