#!/usr/bin/env bash
# The OpenAPI document is the contract: `openapi-spec-validator` must accept it, and
# schemathesis (all checks) against a live node must find no failure. Both come from PyPI
# into a virtualenv (target/ci-venv/schemathesis). The node runs with 1 s blocking waits so
# the fuzzer's blocking queries answer quickly; the run is bounded by --max-examples.
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/lib.sh
. .ci/node.sh

bin=$(need_venv schemathesis schemathesis openapi-spec-validator) \
  || skip_or_fail "schemathesis/openapi-spec-validator cannot be installed in a virtualenv"

start_node schemathesis-1 --default-wait 1s --max-wait 1s
curl -fsS "http://$NODE_HTTP/openapi.json" >"$NODE_DIR/openapi.json"
"$bin/openapi-spec-validator" "$NODE_DIR/openapi.json" \
  || { echo "FAIL - openapi-spec-validator rejects GET /openapi.json" >&2; exit 1; }
echo "OK - openapi-spec-validator accepts the document"

"$bin/schemathesis" run "http://$NODE_HTTP/openapi.json" --checks all \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" --no-color --request-timeout 10 \
  || { echo "FAIL - schemathesis found failures (see above)" >&2; exit 1; }
echo "OK - schemathesis: no failures"
