# Sourced by the checks in .ci/checks/ that need live directory nodes (after .ci/lib.sh).
#
#   start_node NAME ARGS...: starts `$DIRECTORY_BIN serve --http-addr 127.0.0.1:0
#                            --log-format json ARGS...` with its log in $NODE_DIR/NAME.log,
#                            waits (bounded) for its "listening" line and sets
#                            NODE_HTTP=127.0.0.1:PORT (and NODE_GOSSIP when it gossips).
#                            Every node started is killed when the script exits.
#   log_field FILE FIELD   : the value of the first "FIELD":"..." in FILE, or nothing.

DIRECTORY_BIN=${DIRECTORY_BIN:-${CARGO_TARGET_DIR:-target}/debug/directory}
NODE_DIR=$(mktemp -d)
NODE_PIDS=()

stop_nodes() {
  for pid in "${NODE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${NODE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$NODE_DIR"
}
trap stop_nodes EXIT

log_field() {
  { grep -o "\"$2\":\"[^\"]*\"" "$1" 2>/dev/null || true; } | head -1 | cut -d'"' -f4
}

start_node() {
  local name=$1; shift
  [ -x "$DIRECTORY_BIN" ] || { echo "FAIL - $DIRECTORY_BIN is missing: cargo build -p directory" >&2; exit 1; }
  local log="$NODE_DIR/$name.log"
  "$DIRECTORY_BIN" serve --http-addr 127.0.0.1:0 --log-format json --node-name "$name" "$@" >"$log" 2>&1 &
  NODE_PIDS+=("$!")
  NODE_HTTP=""
  for _ in $(seq 1 100); do
    NODE_HTTP=$(log_field "$log" http_addr)
    [ -n "$NODE_HTTP" ] && break
    kill -0 "$!" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$NODE_HTTP" ] || { echo "FAIL - node $name did not start:" >&2; cat "$log" >&2; exit 1; }
  NODE_GOSSIP=$(log_field "$log" gossip_addr)
}
