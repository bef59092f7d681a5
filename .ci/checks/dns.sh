#!/usr/bin/env bash
# The DNS interface asked by `dig` (Debian package bind9-dnsutils) on a live node: A, AAAA,
# SRV (with the additional addresses), NXDOMAIN for an unknown service, a large SRV answer
# truncated over UDP and complete over TCP, and garbage packets after which the node still
# answers.
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/lib.sh
. .ci/node.sh

command -v dig >/dev/null 2>&1 || need_apt bind9-dnsutils \
  || skip_or_fail "dig: the Debian package bind9-dnsutils cannot be installed here"

start_node dns-1 --dns-addr 127.0.0.1:0
log="$NODE_DIR/dns-1.log"
dns=""
for _ in $(seq 1 50); do
  dns=$(log_field "$log" dns_addr)
  [ -n "$dns" ] && break
  sleep 0.1
done
[ -n "$dns" ] || { echo "FAIL - no dns_addr in the node's log:" >&2; cat "$log" >&2; exit 1; }
host=${dns%:*} port=${dns##*:}

fail() { echo "FAIL - $1" >&2; shift; printf '%s\n' "$@" >&2; exit 1; }
q() { dig @"$host" -p "$port" +time=2 +tries=1 "$@"; }
register() { # service instance address [tag]
  local tags="[]"
  [ $# -ge 4 ] && tags="[\"$4\"]"
  curl -fsS -X PUT "$NODE_HTTP/v1/services/$1/instances/$2" \
    -d "{\"address\":\"$3\",\"tags\":$tags}" >/dev/null
}

register web w1 10.1.0.1:80 v2
register web w2 '[2001:db8::2]:8080'

a=$(q +short web.service.directory A)
[ "$a" = "10.1.0.1" ] || fail "A web.service.directory: got '$a'"
aaaa=$(q +short web.service.directory AAAA)
[ "$aaaa" = "2001:db8::2" ] || fail "AAAA web.service.directory: got '$aaaa'"
srv=$(q +noall +answer +additional _web._tcp.service.directory SRV)
echo "$srv" | grep -Eq 'SRV\s+1 1 80 0a010001\.addr\.directory\.$' || fail "SRV answer" "$srv"
echo "$srv" | grep -Eq '^0a010001\.addr\.directory\.\s+5\s+IN\s+A\s+10\.1\.0\.1$' || fail "SRV additional A" "$srv"
tagged=$(q +short v2.web.service.directory SRV)
[ "$tagged" = "1 1 80 0a010001.addr.directory." ] || fail "tagged SRV: got '$tagged'"
nx=$(q nope.service.directory A)
echo "$nx" | grep -q 'status: NXDOMAIN' || fail "unknown service is not NXDOMAIN" "$nx"
echo "$nx" | grep -Eq 'IN\s+SOA' || fail "NXDOMAIN without SOA" "$nx"

for i in $(seq 0 119); do
  register big "big-$i" "[2001:db8::$(printf %x "$i")]:$((9000 + i))"
done
udp=$(q +noedns +ignore big.service.directory SRV)
echo "$udp" | grep -q 'flags: qr aa tc' || fail "a large answer over UDP is not truncated" "$udp"
tcp_count=$(q +tcp +short big.service.directory SRV | wc -l)
[ "$tcp_count" -eq 120 ] || fail "over TCP: $tcp_count SRV records, expected 120"
fallback=$(q +noedns +short big.service.directory SRV | wc -l)
[ "$fallback" -eq 120 ] || fail "dig's TCP fallback after TC: $fallback SRV records"

# Garbage over UDP and TCP (bash's /dev/udp and /dev/tcp), then the node must still answer.
for payload in '' 'x' 'garbage-garbage-garbage' "$(head -c 600 /dev/urandom | base64)"; do
  printf '%s' "$payload" >/dev/udp/"$host"/"$port" || true
  { printf '\xff\xff%s' "$payload" >/dev/tcp/"$host"/"$port"; } 2>/dev/null || true
done
head -c 512 /dev/urandom >/dev/udp/"$host"/"$port" || true
after=$(q +short web.service.directory A)
[ "$after" = "10.1.0.1" ] || fail "no answer after garbage packets: got '$after'"
after_tcp=$(q +tcp +short web.service.directory A)
[ "$after_tcp" = "10.1.0.1" ] || fail "no TCP answer after garbage packets: got '$after_tcp'"
kill -0 "${NODE_PIDS[0]}" || fail "the node died"
echo "OK - dig: A, AAAA, SRV+additional, NXDOMAIN+SOA, TC over UDP and 120 records over TCP, alive after garbage"
