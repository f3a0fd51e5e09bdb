#!/usr/bin/env bash
# Session 70's last call, for whichever GPU comes: on an H200 the lite figures first (run70-h200-lite.sh, ~200 s),
# then the look-ahead row-layout A/B (run70-ahead-layout.sh, ~100 s) while time is left; elsewhere the A/B only.
# Carry [".device", ".devnm", "dist", ".kc"].
set -u
cd "$(dirname "$0")/../.."
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  bash scripts/device/run70-h200-lite.sh
  tar -czf /tmp/lite.tgz -C "$OUT" . && find "$OUT" -mindepth 1 -delete && mv /tmp/lite.tgz "$OUT/lite.tgz"
fi
if [ "$SECONDS" -lt 240 ]; then bash scripts/device/run70-ahead-layout.sh; else echo "layout A/B skipped at ${SECONDS}s"; fi
