#!/usr/bin/env bash
# The Kubernetes manifests against the README's `kubectl create secret` commands, with no
# cluster: deploy/gen-secrets.sh writes a fresh set of secrets, and k8s_manifests.py checks
# that the manifests parse and reference only Secrets, ConfigMaps, keys and files those
# commands create from them (see its docstring). Needs python3 with PyYAML (a virtualenv
# when the system's python has none) and openssl.
set -uo pipefail
cd "$(dirname "$0")/../.."
. .ci/lib.sh

command -v openssl >/dev/null 2>&1 || need_apt openssl || skip_or_fail "openssl is not installed"
python=python3
if ! python3 -c 'import yaml' 2>/dev/null; then
  venv=$(need_venv k8s pyyaml) || skip_or_fail "no python3 with PyYAML"
  python=$venv/python
fi
bin=${CARGO_TARGET_DIR:-target}/debug/directory
[ -x "$bin" ] || { echo "FAIL - $bin is missing (cargo build first)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
DIRECTORY_BIN=$bin bash deploy/gen-secrets.sh "$work/secrets" >/dev/null 2>&1 \
  || { echo "FAIL - deploy/gen-secrets.sh" >&2; exit 1; }
"$python" .ci/checks/k8s_manifests.py --secrets "$work/secrets"
