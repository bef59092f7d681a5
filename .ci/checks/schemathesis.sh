#!/usr/bin/env bash
# The OpenAPI document is the contract: `openapi-spec-validator` must accept it, and
# schemathesis (all checks) against a live node must find no failure. Both come from PyPI
# into a virtualenv (target/ci-venv/schemathesis). The node runs with 1 s blocking waits so
# the fuzzer's blocking queries answer quickly; the run is bounded by --max-examples.
# A second, shorter run against a node with an ACL file, as a token that may only read and
# write `orders`, checks that the 401/403 answers are declared and conform to the schema
# (status_code_conformance and the response checks: refusals of schema-valid requests are
# the point there, so positive_data_acceptance is left out). It runs the fuzzing phase only,
# which is quick here because most requests are refused at once: the examples, coverage and
# stateful phases already ran in the first run.
# Watch streams never end, so each streamed case lasts the request timeout: 5 s (blocking
# queries end within the node's 1 s max wait; other requests take milliseconds) instead of
# 10 s halves the run. Measured here (2 cores shared with other builds): 3 min 46 s in all,
# the first run 184 s (examples 30 s, coverage 89 s, fuzzing 58 s, stateful 7 s), the ACL
# run's fuzzing 29 s; both without failures.
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
  --max-examples "${SCHEMATHESIS_EXAMPLES:-15}" --no-color --request-timeout 5 \
  || { echo "FAIL - schemathesis found failures (see above)" >&2; exit 1; }
echo "OK - schemathesis: no failures"

acl="$NODE_DIR/acl.json"
secret=$("$DIRECTORY_BIN" acl token create --acl-file "$acl" --name fuzzer \
  --rule read:orders --rule write:orders | grep -o 'dirtok_[A-Za-z0-9_-]*' | head -1)
[ -n "$secret" ] || { echo "FAIL - directory acl token create printed no secret" >&2; exit 1; }
start_node schemathesis-acl --default-wait 1s --max-wait 1s --acl-file "$acl"
"$bin/schemathesis" run "http://$NODE_HTTP/openapi.json" -H "Authorization: Bearer $secret" \
  --checks status_code_conformance,not_a_server_error,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --phases fuzzing --max-examples "${SCHEMATHESIS_ACL_EXAMPLES:-10}" --no-color --request-timeout 5 \
  || { echo "FAIL - schemathesis under ACLs found failures (see above)" >&2; exit 1; }
echo "OK - schemathesis under ACLs: every 401/403 declared and conforming"
