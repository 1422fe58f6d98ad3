#!/usr/bin/env bash
# kiln's main job, end to end: build kiln, build hello.go into a static binary
# and a single-layer image, run the binary, then load the image into podman
# and run it. Installs what a fresh machine lacks first (.ci/deps).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"

bash "$repo/.ci/deps" --demo
# Without the remote-execution client (gRPC: tonic, tokio): the demo does
# not use it, and it is the slowest part to compile after wasmtime. The
# test command builds kiln with it.
echo "building kiln (the first time takes 6 to 8 minutes on 2 cores; cargo shows its progress)" >&2
cargo build --manifest-path "$repo/Cargo.toml" -p kiln --no-default-features
kiln="$repo/target/debug/kiln"

cd "$repo/examples/hello"
"$kiln" build hello image

echo "--- ./result-hello/bin/hello"
./result-hello/bin/hello

echo "--- podman load + run"
export CONTAINERS_CONF="$repo/tests/podman/containers.conf"
podman load --quiet -i result-image/image.tar
podman run --rm hello:kiln
