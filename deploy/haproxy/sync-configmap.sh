#!/usr/bin/env bash
# Copies deploy/haproxy/haproxy.cfg into the ConfigMap of deploy/edge/haproxy.yaml (indented under
# `haproxy.cfg: |`). tests/it/deploy.rs fails when the two differ; run this after editing the file.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp)
awk -v cfg=deploy/haproxy/haproxy.cfg '
  skipping && /^---$/ { skipping = 0 }
  skipping { next }
  { print }
  /^  haproxy.cfg: \|$/ {
    while ((getline line < cfg) > 0) print (line == "" ? "" : "    " line)
    skipping = 1
  }
' deploy/edge/haproxy.yaml >"$out"
mv "$out" deploy/edge/haproxy.yaml
