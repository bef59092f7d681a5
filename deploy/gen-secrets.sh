#!/usr/bin/env bash
# Generates everything a secured directory cluster needs, into one directory:
#
#   keyring      the gossip keyring (--cluster-keyring): one fresh `directory keygen` key
#   acl.json     the ACL file (--acl-file): an operator token (write:* operator) and one token
#                per example peer, scoped to its own service: `echo` (write:echo, read:*) for
#                the receiver, `sender` (write:sender, read:*) for the sender; only SHA-256
#                hashes are stored
#   tokens.env   the three secrets, shown nowhere else: DIRECTORY_TOKEN=... (operator),
#                ECHO_TOKEN=... and SENDER_TOKEN=...
#   ca.pem       a self-signed CA (ca.key stays next to it: keep it offline after this)
#   node.pem     a certificate signed by the CA for every node (--tls-cert), with the SANs
#   node.key     its private key (--tls-key)
#
# Usage: deploy/gen-secrets.sh OUT_DIR [SAN...]
#   SAN: extra names or IPs the nodes are reached at (node1 node2 node3 localhost directory
#   directory-api and 127.0.0.1 are always included). DIRECTORY_BIN picks the binary
#   (default: `directory` on PATH, else target/release/directory, else target/debug/directory).
# Refuses to overwrite an existing OUT_DIR, so secrets are never replaced by accident.
# Private files are mode 0600. Needs openssl.
set -euo pipefail

out=${1:?usage: deploy/gen-secrets.sh OUT_DIR [SAN...]}
shift
[ -e "$out" ] && { echo "gen-secrets: $out exists; refusing to overwrite secrets" >&2; exit 1; }
command -v openssl >/dev/null 2>&1 || { echo "gen-secrets: openssl is not installed" >&2; exit 1; }

root="$(cd "$(dirname "$0")/.." && pwd)"
bin=${DIRECTORY_BIN:-}
if [ -z "$bin" ]; then
  for candidate in "$(command -v directory || true)" "$root/target/release/directory" "$root/target/debug/directory"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] && { bin=$candidate; break; }
  done
fi
[ -n "$bin" ] || { echo "gen-secrets: no directory binary (set DIRECTORY_BIN or cargo build)" >&2; exit 1; }

umask 077
mkdir -p "$out"

# Gossip keyring: first line seals, every line opens (rotation: docs/design.md).
{
  echo "# gossip keyring: the first key seals, every key opens; SIGHUP reloads"
  "$bin" keygen
} >"$out/keyring"

# ACL file and the tokens (secrets printed once by `acl token create`). Each example peer
# may write only its own service, so a leaked peer token cannot redirect another's traffic.
secret_of() { sed -n 's/^secret: *//p'; }
token() { # token NAME RULE... -> the new token's secret
  local name=$1 rules=() rule; shift
  for rule in "$@"; do rules+=(--rule "$rule"); done
  "$bin" acl token create --acl-file "$out/acl.json" --name "$name" "${rules[@]}" 2>/dev/null | secret_of
}
operator=$(token operator 'write:*' operator)
echo_token=$(token echo 'write:echo' 'read:*')
sender_token=$(token sender 'write:sender' 'read:*')
[ -n "$operator" ] && [ -n "$echo_token" ] && [ -n "$sender_token" ] \
  || { echo "gen-secrets: token creation failed" >&2; exit 1; }
printf 'DIRECTORY_TOKEN=%s\nECHO_TOKEN=%s\nSENDER_TOKEN=%s\n' \
  "$operator" "$echo_token" "$sender_token" >"$out/tokens.env"

# CA and one node certificate for every node (ECDSA P-256).
sans="DNS:node1,DNS:node2,DNS:node3,DNS:localhost,DNS:directory,DNS:directory-api,IP:127.0.0.1"
for san in "$@"; do
  if [[ $san =~ ^[0-9.]+$ || $san == *:* ]]; then sans="$sans,IP:$san"; else sans="$sans,DNS:$san"; fi
done
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$out/ca.key" -out "$out/ca.pem" -days 3650 -subj "/CN=directory cluster CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$out/node.key" -out "$out/node.csr" -subj "/CN=directory" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' \
  "$sans" >"$out/node.ext"
openssl x509 -req -in "$out/node.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
  -CAcreateserial -out "$out/node.pem" -days 825 -extfile "$out/node.ext" 2>/dev/null
rm -f "$out/node.csr" "$out/node.ext" "$out/ca.srl"
chmod 0644 "$out/ca.pem" "$out/node.pem"

echo "gen-secrets: wrote keyring, acl.json, tokens.env, ca.pem, ca.key, node.pem, node.key to $out"
echo "gen-secrets: tokens.env holds the only copy of the token secrets; ca.key can go offline"
