#!/usr/bin/env bash
# Session 70's last call, for whichever GPU comes: on an H200 the lite figures first (run70-h200-lite.sh, ~200 s),
# then the look-ahead row-layout A/B (run70-ahead-layout.sh, ~100 s) while time is left; elsewhere the A/B only.
# Carry [".device", ".devnm", "dist", ".kc"].
set -u
cd "$(dirname "$0")/../.."
source scripts/device/lib.sh
lite_first_on_h200
if [ "$SECONDS" -lt 240 ]; then bash scripts/device/run70-ahead-layout.sh; else echo "layout A/B skipped at ${SECONDS}s"; fi
