#!/usr/bin/env bash
# End-to-end checks of the secured directory cluster and example peers on separate container
# hosts.
#
# Builds the image (deploy/build-image.sh, nothing pulled), generates secrets with
# deploy/gen-secrets.sh (keyring, ACL file and tokens, CA and node certificate) into a
# temporary directory, starts deploy/docker-compose.yml with them under a project name of its
# own, and checks (every API call over HTTPS, trusting only the generated CA):
#   1. the three nodes form one cluster, and enforce the same ACL file;
#   2. writes without a token (401) or with a peer's token for another service (403) are
#      refused and change nothing; a registration made on node 1 with the operator token is
#      visible on nodes 2 and 3; the example receiver and sender, each with its own token,
#      register and exchange messages;
#   3. `docker kill` of node 2: the others mark it dead, lookups keep working, the peers
#      keep exchanging messages;
#   4. node 3 cut off with `docker network disconnect` while node 1 changes registrations,
#      then reconnected: both sides converge to the same registrations;
#   5. node 2 started again from an empty store catches up by anti-entropy.
# Also checks the other deploy files statically: the compose file, the Kubernetes manifests
# (.ci/checks/k8s_manifests.py: they parse, and use only the Secrets the README creates) and
# the systemd unit. Prints each check; exits 0 only when every check held. Where no container engine is
# available it skips (exit 0, with a message); under CI (CI=true) on a machine that has a
# container engine, or with E2E_REQUIRED=1 anywhere, a missing tool FAILS the run instead, so
# CI cannot go green by skipping. Each run gets its own compose project, image tag and a
# random free /24, so two runs on one engine cannot collide. Removes everything it started
# (containers, network, image), also on failure.
set -uo pipefail
cd "$(dirname "$0")/.."

say() { printf 'e2e: %s\n' "$*"; }

# --- may this run skip? ---
engine_present() { # a daemon answers, or its socket, host setting or binary is there
  docker info >/dev/null 2>&1 || [ -S /var/run/docker.sock ] || [ -n "${DOCKER_HOST:-}" ] ||
    command -v dockerd >/dev/null 2>&1 || command -v podman >/dev/null 2>&1
}
must_run() {
  [ "${E2E_REQUIRED:-0}" = 1 ] && return 0
  case "${CI:-}" in true | TRUE | 1 | yes) engine_present ;; *) return 1 ;; esac
}
skip() { # skip REASON: exit 0 where skipping is allowed, exit 1 where the e2e must run
  if must_run; then
    say "FAIL - cannot run the end-to-end checks: $* (CI=true or E2E_REQUIRED=1 with a container engine present)"
    exit 1
  fi
  say "SKIPPED: $*"
  exit 0
}

command -v docker >/dev/null 2>&1 || skip "the docker CLI is not installed"
docker info >/dev/null 2>&1 || skip "no container engine reachable (docker info failed)"
if command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  skip "neither docker-compose nor 'docker compose' is installed"
fi
for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
done

# --- names of this run: nothing shared with another run on the same engine ---
run_id=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')
project="brokerless-e2e-$run_id"
own_image=0
if [ -z "${IMAGE:-}" ]; then IMAGE="brokerless:e2e-$run_id"; own_image=1; fi
export IMAGE
fixed_subnet=${SUBNET_PREFIX:-} # a /24 prefix such as 172.31.250 given by the caller, if any

# A random /24 in 172.16.0.0/12 that overlaps no route and no network of the engine. A run
# racing for the same /24 makes `up --no-start` fail, and the next attempt draws again.
pick_subnet() {
  {
    ip -4 route 2>/dev/null | awk '{print $1}'
    docker network ls -q | xargs -r docker network inspect \
      --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' 2>/dev/null
  } | python3 -c '
import ipaddress, random, sys
used = []
for word in sys.stdin.read().split():
    try:
        used.append(ipaddress.ip_network(word, strict=False))
    except ValueError:
        pass
for _ in range(500):
    net = ipaddress.ip_network(f"172.{random.randint(16, 31)}.{random.randint(0, 255)}.0/24")
    if not any(net.overlaps(u) for u in used if u.version == 4):
        print(str(net.network_address).rsplit(".", 1)[0])
        sys.exit(0)
sys.exit(1)'
}

dc() { "${compose[@]}" -p "$project" -f deploy/docker-compose.yml "$@"; }
ip_of() { case $1 in node1) echo "$SUBNET_PREFIX.11" ;; node2) echo "$SUBNET_PREFIX.12" ;; node3) echo "$SUBNET_PREFIX.13" ;; esac; }
# call NODE PATH [CURL ARGS...]: HTTPS to a node by its name (the certificate's), trusting only
# the generated CA, with the token in $token (the operator's unless a caller sets another).
call() {
  local node=$1 path=$2; shift 2
  local auth=()
  [ -n "${token:-}" ] && auth=(-H "Authorization: Bearer $token")
  curl -sS --max-time 2 --cacert "$SECRETS_DIR/ca.pem" --resolve "$node:7700:$(ip_of "$node")" \
    "${auth[@]}" "$@" "https://$node:7700$path"
}

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] || [ "${failed:-0}" -ne 0 ]; then
    say "logs of the failed run:"
    dc logs --no-color --tail 40 2>/dev/null | sed 's/^/    /'
  fi
  dc down -v --remove-orphans -t 3 >/dev/null 2>&1
  [ "$own_image" -eq 1 ] && docker image rm -f "$IMAGE" >/dev/null 2>&1
  [ -n "${secrets_parent:-}" ] && rm -rf "$secrets_parent"
  say "cleaned up project $project"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
check() { # check NAME COMMAND...: runs the command once, records the outcome
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); say "ok   - $name"
  else failed=$((failed + 1)); say "FAIL - $name"; fi
}
eventually() { # eventually SECONDS COMMAND...: retries every 250 ms until it holds
  local limit=$1; shift
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$end" ] && return 1
    sleep 0.25
  done
}

# --- JSON helpers (python3, present wherever this script runs) ---
member_state() { # member_state NODE MEMBER -> alive|suspect|dead|left|absent
  call "$1" /v1/cluster/members -f | python3 -c '
import json, sys
rows = json.load(sys.stdin)["members"]
print(next((m["state"] for m in rows if m["name"] == sys.argv[1]), "absent"))' "$2"
}
instances() { # instances NODE SERVICE -> sorted instance ids, comma-separated
  call "$1" "/v1/services/$2" -f | python3 -c '
import json, sys
print(",".join(sorted(i["instance"] for i in json.load(sys.stdin)["instances"])))'
}
sender_counts() { # -> "acked failed" from the sender's last progress line
  dc logs --no-color sender 2>/dev/null | grep -o 'acked=[0-9]* failed=[0-9]*' | tail -1 |
    sed 's/acked=\([0-9]*\) failed=\([0-9]*\)/\1 \2/'
}

# --- predicates ---
state_is() { [ "$(member_state "$1" "$2")" = "$3" ]; }
all_alive() {
  local n m
  for n in "$@"; do for m in "$@"; do state_is "$n" "$m" alive || return 1; done; done
}
has_instances() { [ "$(instances "$1" "$2")" = "$3" ]; }
same_instances() { # both nodes answer, with the same non-empty list
  local a b
  a=$(instances "$1" "$3") && b=$(instances "$2" "$3") && [ -n "$a" ] && [ "$a" = "$b" ]
}
register() { # register NODE SERVICE INSTANCE
  call "$1" "/v1/services/$2/instances/$3" -f -o /dev/null -X PUT \
    -H 'content-type: application/json' -d '{"address":"10.0.0.1:7000","ttl":"10m"}'
}
write_status() { # write_status NODE SERVICE INSTANCE -> the HTTP status of a registration
  call "$1" "/v1/services/$2/instances/$3" -o /dev/null -w '%{http_code}' -X PUT \
    -H 'content-type: application/json' -d '{"address":"10.0.0.66:7000","ttl":"10m"}'
}
deregister() { call "$1" "/v1/services/$2/instances/$3" -f -o /dev/null -X DELETE; }
deregister_all() { # deregister_all NODE SERVICE INSTANCE...
  local node=$1 service=$2 i; shift 2
  for i in "$@"; do deregister "$node" "$service" "$i" || return 1; done
}
acked_at_least() { local acked; read -r acked _ <<<"$(sender_counts)"; [ "${acked:-0}" -ge "$1" ]; }
sender_progresses() { # acked grows by at least 5 within 15 s, with no failure meanwhile
  local before after fails_before fails_after
  read -r before fails_before <<<"$(sender_counts)"
  eventually 15 acked_at_least $((${before:-0} + 5)) || return 1
  read -r after fails_after <<<"$(sender_counts)"
  say "     sender: acked ${before:-0} -> $after, failed ${fails_before:-0} -> $fails_after"
  [ "${fails_after:-1}" -eq "${fails_before:-0}" ]
}
receiver_listed_on() { local n; for n in "$@"; do has_instances "$n" echo echo-1 || return 1; done; }
lookups_survive() { has_instances node1 e2e inst-1 && has_instances node3 e2e inst-1; }
same_acl_hash() { # every node reports every member with the hash of the generated ACL file
  local want n got
  want=$("target/$target/release/directory" acl hash --acl-file "$SECRETS_DIR/acl.json") || return 1
  for n in node1 node2 node3; do
    got=$(call "$n" /v1/cluster/members -f | python3 -c '
import json, sys
print(" ".join(sorted({m.get("acl_hash", "?") for m in json.load(sys.stdin)["members"]})))') || return 1
    [ "$got" = "$want" ] || { say "     $n sees ACL hashes '$got', the file's is $want"; return 1; }
  done
}
refused() { # refused STATUS TOKEN NODE SERVICE INSTANCE: the write gets STATUS, nothing changes
  local status
  status=$(token=$2 write_status "$3" "$4" "$5")
  [ "$status" = "$1" ] || { say "     got HTTP $status"; return 1; }
  status=$(call "$3" "/v1/services/$4/instances/$5" -o /dev/null -w '%{http_code}')
  [ "$status" = 404 ] || { say "     the refused instance answers HTTP $status, not 404"; return 1; }
}

# --- container steps: each fails when the engine refuses it ---
network="${project//[^a-zA-Z0-9_.-]/}_mesh"
container_of() { local id; id=$(dc ps -q "$1") && [ -n "$id" ] && echo "$id"; }
kill_node() { local id; id=$(container_of "$1") && docker kill "$id" >/dev/null; }
disconnect_node() { local id; id=$(container_of "$1") && docker network disconnect "$network" "$id"; }
connect_node() { local id; id=$(container_of "$1") && docker network connect --ip "$(ip_of "$1")" "$network" "$id"; }
restart_empty() { dc rm -f -s "$1" >/dev/null && dc up -d --no-deps "$1" >/dev/null; }

# --- static checks of the other deploy files ---
k8s_manifests_check() { python3 .ci/checks/k8s_manifests.py --secrets "$SECRETS_DIR"; }
systemd_unit_verifies() { # the unit, pointed at the binary just built and the example env file
  local dir; dir=$(mktemp -d)
  sed -e "s#/usr/local/bin/directory#$PWD/target/$target/release/directory#" \
      -e "s#/etc/directory/directory.env#$PWD/deploy/systemd/directory.env#" \
      deploy/systemd/directory.service >"$dir/directory.service"
  local out; out=$(systemd-analyze verify "$dir/directory.service" 2>&1); local rc=$?
  rm -rf "$dir"; [ -n "$out" ] && say "     $out"
  [ "$rc" -eq 0 ] && [ -z "$out" ]
}

# --- build and start ---
say "building the image $IMAGE"
bash deploy/build-image.sh || { say "FAIL - image build"; exit 1; }
target=${STATIC_TARGET:-$(rustc -vV | sed -n 's/^host: //p')}
secrets_parent=$(mktemp -d)
SECRETS_DIR="$secrets_parent/secrets"
DIRECTORY_BIN="target/$target/release/directory" bash deploy/gen-secrets.sh "$SECRETS_DIR" >/dev/null \
  || { say "FAIL - deploy/gen-secrets.sh"; exit 1; }
set -a
. "$SECRETS_DIR/tokens.env" # DIRECTORY_TOKEN (operator), ECHO_TOKEN, SENDER_TOKEN
set +a
SECRETS_UID=$(id -u) SECRETS_GID=$(id -g)
export SECRETS_DIR SECRETS_UID SECRETS_GID
token=$DIRECTORY_TOKEN # call() sends the operator's token unless told otherwise
check "docker-compose.yml is valid" dc config -q
if python3 -c 'import yaml' 2>/dev/null; then
  check "the Kubernetes manifests parse and use only the documented Secrets" k8s_manifests_check
else
  say "skip - Kubernetes manifests (python3 has no yaml module)"
fi
if command -v systemd-analyze >/dev/null 2>&1; then
  check "the systemd unit passes systemd-analyze verify" systemd_unit_verifies
else
  say "skip - systemd unit (no systemd-analyze)"
fi
created=0
for attempt in 1 2 3; do
  SUBNET_PREFIX=${fixed_subnet:-$(pick_subnet)} || { say "FAIL - no free /24 for the network"; exit 1; }
  export SUBNET_PREFIX
  say "creating project $project on $SUBNET_PREFIX.0/24 (attempt $attempt)"
  if dc up --no-start; then created=1; break; fi
  dc down -v --remove-orphans -t 3 >/dev/null 2>&1
done
[ "$created" -eq 1 ] || { failed=1; say "FAIL - docker-compose could not create the project"; exit 1; }
dc up -d || { failed=1; say "FAIL - docker-compose up"; exit 1; }

# 1. One cluster, one ACL file.
check "the three nodes see each other alive" eventually 30 all_alive node1 node2 node3
check "every node enforces the generated ACL file (same acl_hash)" eventually 10 same_acl_hash

# 2. Access control, replication over HTTPS, the peers with their own tokens.
check "a write without a token is refused with 401 and changes nothing" refused 401 "" node1 e2e intruder
check "the receiver's token cannot write another service (403)" refused 403 "$ECHO_TOKEN" node1 e2e intruder
check "register inst-1 on node 1 with the operator token" register node1 e2e inst-1
check "registration on node 1 is visible on node 2" eventually 10 has_instances node2 e2e inst-1
check "registration on node 1 is visible on node 3" eventually 10 has_instances node3 e2e inst-1
check "the receiver's registration reached every node" eventually 20 receiver_listed_on node1 node2 node3
check "the sender gets answers from the receiver" sender_progresses

# 3. Kill node 2.
check "docker kill node 2" kill_node node2
check "node 1 reports the killed node 2 dead" eventually 20 state_is node1 node2 dead
check "node 3 reports the killed node 2 dead" eventually 20 state_is node3 node2 dead
check "lookups keep working on node 1 and node 3" lookups_survive
check "the peers keep exchanging messages without node 2" sender_progresses

# 4. Partition node 3 and heal.
check "register inst-3 on node 3" register node3 e2e inst-3
check "node 1 lists the registration made on node 3" eventually 10 has_instances node1 e2e inst-1,inst-3
check "docker network disconnect node 3" disconnect_node node3
check "node 1 sees the cut-off node 3 as dead" eventually 20 state_is node1 node3 dead
check "register inst-2 on node 1" register node1 e2e inst-2
check "deregister inst-1 and inst-3 on node 1" deregister_all node1 e2e inst-1 inst-3
check "node 1 changed registrations while node 3 was cut off" has_instances node1 e2e inst-2
check "docker network connect node 3" connect_node node3
check "after the heal node 3 converges to node 1's registrations" eventually 30 has_instances node3 e2e inst-2
check "after the heal both sides hold the same registrations" same_instances node1 node3 e2e
check "node 3 is alive again for node 1" eventually 30 state_is node1 node3 alive

# 5. Node 2 restarted from an empty store.
check "node 2 removed and started again empty" restart_empty node2
check "restarted node 2 rejoins and is alive for node 1" eventually 30 state_is node1 node2 alive
check "restarted node 2 caught up by anti-entropy" eventually 30 same_instances node1 node2 e2e
check "restarted node 2 lists the receiver" eventually 30 has_instances node2 echo echo-1

echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
