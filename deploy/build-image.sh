#!/usr/bin/env bash
# Builds the container image `${IMAGE:-brokerless:local}` from binaries compiled on this
# machine, without pulling any base image: statically linked (glibc, crt-static) builds of
# the `directory` binary and of the `receiver` / `sender` examples, copied into `FROM scratch`.
#
# Usage: deploy/build-image.sh            (from anywhere inside the repository)
set -euo pipefail
cd "$(dirname "$0")/.."
image=${IMAGE:-brokerless:local}
target=${STATIC_TARGET:-$(rustc -vV | sed -n 's/^host: //p')}

echo "building static binaries for $target"
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target" \
  --bin directory --example receiver --example sender

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
out="target/$target/release"
cp "$out/directory" "$out/examples/receiver" "$out/examples/sender" "$context/"
# The release profile keeps line tables for backtraces; the image does not need them.
if command -v strip >/dev/null 2>&1; then
  strip "$context/directory" "$context/receiver" "$context/sender"
fi
cp deploy/docker/Dockerfile.local "$context/Dockerfile"
docker build --quiet --tag "$image" "$context" >/dev/null
echo "built image $image"
