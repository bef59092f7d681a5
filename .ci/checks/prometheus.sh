#!/usr/bin/env bash
# A real Prometheus (Debian package `prometheus`) discovers the instances registered in a
# node: `http_sd_configs` against GET /v1/sd/prometheus lists them in /api/v1/targets, and the
# one registered at the node's own address is scraped `up` (its /metrics). Then
# `consul_sd_configs` against the node's Consul-compatible API, where this Prometheus build
# has it (Debian's may not: then that part says SKIPPED and the rest still counts).
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/lib.sh
. .ci/node.sh

command -v prometheus >/dev/null 2>&1 || need_apt prometheus \
  || skip_or_fail "prometheus: the Debian package prometheus cannot be installed here"
command -v jq >/dev/null 2>&1 || need_apt jq || skip_or_fail "jq cannot be installed here"

fail() { echo "FAIL - $1" >&2; shift; printf '%s\n' "$@" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_node prom-1
node_port=${NODE_HTTP##*:}
# One instance at the node itself (its /metrics is scrapeable), one where nothing listens.
curl -fsS -X PUT "$NODE_HTTP/v1/services/directory/instances/self" \
  -d "{\"address\":\"$NODE_HTTP\",\"tags\":[\"self\"],\"meta\":{\"zone\":\"a\"},\"ttl\":\"1h\"}" >/dev/null
curl -fsS -X PUT "$NODE_HTTP/v1/services/orders/instances/orders-1" \
  -d '{"address":"127.0.0.1:9","ttl":"1h"}' >/dev/null

consul_job=""
cat >"$NODE_DIR/consul-probe.yml" <<YAML
scrape_configs:
  - job_name: probe
    consul_sd_configs:
      - server: "$NODE_HTTP"
YAML
if promtool check config "$NODE_DIR/consul-probe.yml" >"$NODE_DIR/probe.out" 2>&1; then
  consul_job=yes
  curl -fsS -X PUT "$NODE_HTTP/v1/agent/service/register" \
    -d "{\"Name\":\"viaconsul\",\"ID\":\"viaconsul-1\",\"Address\":\"127.0.0.1\",\"Port\":$node_port}" >/dev/null
else
  echo "SKIPPED (consul_sd_configs) - this Prometheus build rejects it: $(grep -m1 consul_sd_configs "$NODE_DIR/probe.out" | sed "s/^ *//")"
fi

cat >"$NODE_DIR/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: directory-http-sd
    http_sd_configs:
      - url: "http://$NODE_HTTP/v1/sd/prometheus"
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_directory_service]
        target_label: service
      - source_labels: [__meta_directory_instance]
        target_label: instance_id
YAML
if [ -n "$consul_job" ]; then
  cat >>"$NODE_DIR/prometheus.yml" <<YAML
  - job_name: directory-consul-sd
    consul_sd_configs:
      - server: "$NODE_HTTP"
        services: [viaconsul]
        refresh_interval: 1s
YAML
fi
promtool check config "$NODE_DIR/prometheus.yml" >/dev/null || fail "promtool rejects the config" "$(cat "$NODE_DIR/prometheus.yml")"

prom_port=$(free_port)
prometheus --config.file="$NODE_DIR/prometheus.yml" --storage.tsdb.path="$NODE_DIR/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$NODE_DIR/prometheus.log" 2>&1 &
NODE_PIDS+=("$!")
prom="http://127.0.0.1:$prom_port"

targets() { curl -fsS "$prom/api/v1/targets" 2>/dev/null || true; }
health_of() { # job instance-label-or-address
  jq -r --arg job "$1" --arg id "$2" '.data.activeTargets[]
    | select(.labels.job == $job)
    | select(.labels.instance_id == $id or .discoveredLabels.__address__ == $id)
    | .health' 2>/dev/null | head -1
}
ok=""
for _ in $(seq 1 300); do
  body=$(targets)
  self=$(echo "$body" | health_of directory-http-sd self)
  orders=$(echo "$body" | health_of directory-http-sd orders-1)
  consul=up
  [ -n "$consul_job" ] && consul=$(echo "$body" | health_of directory-consul-sd "127.0.0.1:$node_port")
  if [ "$self" = up ] && [ -n "$orders" ] && [ "$consul" = up ]; then ok=yes; break; fi
  sleep 0.2
done
[ -n "$ok" ] || fail "targets not discovered/up within 60 s (self=$self orders=$orders consul=$consul)" \
  "$(targets)" "$(tail -20 "$NODE_DIR/prometheus.log")"
labels=$(echo "$body" | jq -c '.data.activeTargets[] | select(.labels.instance_id == "self") | .discoveredLabels')
echo "$labels" | jq -e '.__meta_directory_service == "directory" and .__meta_directory_tags == ",self,"
  and .__meta_directory_meta_zone == "a" and .__meta_directory_node == "prom-1"' >/dev/null \
  || fail "discovered labels" "$labels"
up=$(curl -fsS "$prom/api/v1/query" --data-urlencode 'query=up{job="directory-http-sd",instance_id="self"}' \
  | jq -r '.data.result[0].value[1] // empty')
for _ in $(seq 1 50); do
  [ "$up" = 1 ] && break
  sleep 0.2
  up=$(curl -fsS "$prom/api/v1/query" --data-urlencode 'query=up{job="directory-http-sd",instance_id="self"}' \
    | jq -r '.data.result[0].value[1] // empty')
done
[ "$up" = 1 ] || fail "up{instance_id=\"self\"} is '$up'"
echo "OK - prometheus http_sd_configs: 2 instances discovered with their labels, the node's own /metrics scraped up (orders-1: $orders)"
[ -n "$consul_job" ] && echo "OK - prometheus consul_sd_configs: the Consul-registered instance scraped up"
exit 0
