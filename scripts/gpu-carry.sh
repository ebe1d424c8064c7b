#!/usr/bin/env bash
# Packs what the GPU check needs for its JavaScript part on a GPU machine without
# Node.js into gpu-carry/ (git-ignored, ~25 MiB): this machine's node binary (xz) and a
# tarball of dist/ plus the few packages the built library and the addon build import.
# Copy the tree with gpu-carry/ to the GPU machine; scripts/test-gpu.sh unpacks it there
# when no node is on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f dist/lib/index.js ]] || npx tsc -p tsconfig.json
rm -rf gpu-carry
mkdir -p gpu-carry
xz -T0 -6 -c "$(readlink -f "$(command -v node)")" > gpu-carry/node.xz
tar -czf gpu-carry/js.tar.gz dist node_modules/node-addon-api node_modules/node-api-headers \
  node_modules/@huggingface node_modules/commander node_modules/cli-progress
du -sh gpu-carry/*
