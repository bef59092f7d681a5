#!/usr/bin/env bash
# py-consul (PyPI, pinned) against a real `directory` node: register with a TTL check, pass it,
# catalog.services, health.service(passing=True) with a blocking index woken by a change,
# deregister, expiry when the check is not passed (.ci/checks/py_consul.py).
# Needs target/debug/directory (built by `cargo test`); installs py-consul in a virtualenv.
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/lib.sh

bin=target/debug/directory
[ -x "$bin" ] || cargo build -q -p directory --bin directory
venv=$(need_venv py-consul "py-consul==1.8.0") || skip_or_fail "cannot install py-consul from PyPI"

log=$(mktemp)
"$bin" serve --http-addr 127.0.0.1:0 --node-name py-consul >"$log" 2>&1 &
node=$!
trap 'kill "$node" 2>/dev/null || true; wait "$node" 2>/dev/null || true; rm -f "$log"' EXIT

addr=""
for _ in $(seq 1 100); do
  addr=$(sed -n 's/.*directory node listening http_addr=\([0-9.]*:[0-9]*\).*/\1/p' "$log" | head -1)
  [ -n "$addr" ] && break
  kill -0 "$node" 2>/dev/null || { cat "$log" >&2; echo "FAIL - directory exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { cat "$log" >&2; echo "FAIL - directory did not log its address" >&2; exit 1; }

timeout 120 "$venv/python" .ci/checks/py_consul.py "${addr%:*}" "${addr##*:}"
