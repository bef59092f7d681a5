#!/usr/bin/env bash
# The README's "secured three-node cluster" as a check: deploy/gen-secrets.sh makes the
# keyring, the ACL file with its tokens and the CA + node certificate; three
# target/debug/directory processes run on loopback with all of it (gossip keyring, ACLs,
# HTTPS); curl with the CA and the operator token writes on node 1 and reads on node 3, and
# a request without a token is refused with 401. Needs curl and openssl.
set -uo pipefail
cd "$(dirname "$0")/../.."
. .ci/lib.sh

for tool in curl openssl python3; do
  command -v "$tool" >/dev/null 2>&1 || need_apt "$tool" || skip_or_fail "$tool is not installed"
done
bin=${CARGO_TARGET_DIR:-target}/debug/directory
[ -x "$bin" ] || { echo "FAIL - $bin is missing (cargo build first)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

DIRECTORY_BIN=$bin bash deploy/gen-secrets.sh "$work/secrets" >/dev/null 2>&1 \
  || { echo "FAIL - deploy/gen-secrets.sh" >&2; exit 1; }
. "$work/secrets/tokens.env"
s=$work/secrets

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A http gossip
for n in 1 2 3; do http[$n]=$(free_port); gossip[$n]=$(free_port); done
for n in 1 2 3; do
  timeout 120 "$bin" serve --node-name "node$n" --log-filter warn \
    --http-addr "127.0.0.1:${http[$n]}" --gossip-addr "127.0.0.1:${gossip[$n]}" \
    --join "127.0.0.1:${gossip[1]}" --cluster-keyring "$s/keyring" --acl-file "$s/acl.json" \
    --tls-cert "$s/node.pem" --tls-key "$s/node.key" >"$work/node$n.log" 2>&1 &
  pids+=($!)
done

api() { echo "https://localhost:${http[$1]}"; }
call() { curl -sS --max-time 3 --cacert "$s/ca.pem" -H "Authorization: Bearer $DIRECTORY_TOKEN" "$@"; }
eventually() { # eventually SECONDS COMMAND...
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ "$SECONDS" -ge "$end" ] && return 1; sleep 0.25; done
}
alive3() { [ "$(call "$(api "$1")/v1/cluster/members" | grep -o '"state":"alive"' | wc -l)" -eq 3 ]; }
has_orders1() { call "$(api "$1")/v1/services/orders" | grep -q '"instance":"orders-1"'; }
status_without_token() {
  curl -sS -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$s/ca.pem" \
    -X PUT "$(api 1)/v1/services/orders/instances/intruder" -d '{"address":"10.0.0.9:1"}'
}

failed=0
check() { if "${@:2}"; then echo "ok   - $1"; else echo "FAIL - $1"; failed=1; fi; }
check "node 1 answers over HTTPS with the generated CA" eventually 30 \
  "$bin" health --node "$(api 1)" --ca "$s/ca.pem"
check "three nodes alive on the generated keyring" eventually 30 alive3 3
check "the operator token registers on node 1" call -f -X PUT \
  "$(api 1)/v1/services/orders/instances/orders-1" -d '{"address":"10.0.0.1:7000"}' -o /dev/null
check "node 3 serves it to the operator token" eventually 15 has_orders1 3
check "a write without a token gets 401" test "$(status_without_token)" = 401
if [ "$failed" -ne 0 ]; then
  for n in 1 2 3; do sed "s/^/node$n: /" "$work/node$n.log" | tail -5; done
  exit 1
fi
