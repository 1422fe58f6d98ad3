#!/usr/bin/env bash
# Build the Python recipe into a component: template.wasm beside this file.
# Needs componentize-py (`pip install componentize-py`; .ci/deps installs it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/template.wasm}"
PATH="$PATH:$HOME/.local/bin"
componentize-py -d "$here/../../wit" -w recipe componentize -p "$here" app -o "$out"
