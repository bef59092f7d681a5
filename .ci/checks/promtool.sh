#!/usr/bin/env bash
# `promtool check metrics` (Debian package `prometheus`) on a live node's /metrics: two nodes
# in one gossip cluster (so the gossip metrics exist) after some API traffic. Every series
# must have HELP and TYPE, counters end in _total, units are in the names.
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/lib.sh
. .ci/node.sh

command -v promtool >/dev/null 2>&1 || need_apt prometheus \
  || skip_or_fail "promtool: the Debian package prometheus cannot be installed here"

key=$("$DIRECTORY_BIN" keygen | tail -1)
start_node promtool-1 --gossip-addr 127.0.0.1:0 --cluster-key "$key"
first=$NODE_HTTP seed=$NODE_GOSSIP
start_node promtool-2 --gossip-addr 127.0.0.1:0 --cluster-key "$key" --join "$seed"

# Traffic: a registration (replicated to the other node), lookups, a miss, a heartbeat.
curl -fsS -X PUT "$first/v1/services/orders/instances/orders-1" -d '{"address":"127.0.0.1:7000"}' >/dev/null
curl -fsS "$first/v1/services/orders" >/dev/null
curl -fsS -X POST "$first/v1/services/orders/instances/orders-1/heartbeat" >/dev/null
curl -sS "$first/v1/no-such-route" >/dev/null

# Wait (bounded) until both nodes see each other and have synced once.
for _ in $(seq 1 150); do
  curl -fsS "$first/metrics" >"$NODE_DIR/metrics.txt"
  grep -q '^directory_gossip_members_alive 2$' "$NODE_DIR/metrics.txt" \
    && grep -q '^directory_gossip_syncs_total' "$NODE_DIR/metrics.txt" && break
  sleep 0.2
done
grep -q '^directory_gossip_syncs_total' "$NODE_DIR/metrics.txt" \
  || { echo "FAIL - no gossip metrics after 30 s:" >&2; cat "$NODE_DIR/metrics.txt" >&2; exit 1; }

if ! problems=$(promtool check metrics <"$NODE_DIR/metrics.txt" 2>&1); then
  echo "FAIL - promtool check metrics:" >&2
  echo "$problems" >&2
  exit 1
fi
[ -z "$problems" ] || { echo "FAIL - promtool check metrics:" >&2; echo "$problems" >&2; exit 1; }
echo "OK - promtool check metrics: $(grep -c '^# TYPE' "$NODE_DIR/metrics.txt") metric families, no problems"

# The peer SDK's metrics as an application's exporter renders them (no peer binary serves
# metrics: the SDK records into the application's recorder).
sdk="$NODE_DIR/peer-sdk-metrics.txt"
PEER_SDK_METRICS_OUT="$sdk" cargo test -q -p peer-sdk --test metrics >/dev/null \
  || { echo "FAIL - peer-sdk metrics test" >&2; exit 1; }
if ! problems=$(promtool check metrics <"$sdk" 2>&1) || [ -n "$problems" ]; then
  echo "FAIL - promtool check metrics (peer SDK):" >&2
  echo "$problems" >&2
  exit 1
fi
echo "OK - promtool check metrics (peer SDK): $(grep -c '^# TYPE' "$sdk") metric families, no problems"
