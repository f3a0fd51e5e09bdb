#!/usr/bin/env bash
# Session 70 on whichever GPU comes: on an H200, session 65's breakdown of today's main first (bench at depths 0 and
# 2048, the look-ahead off / on, the prompt ablation, the timeline, ncu); then, on any GPU, the look-ahead row-layout
# A/B (run70-ahead-layout.sh) while time is left. Carry [".device", ".devnm", "dist", ".kc"] (.kc/layout.gz).
set -u
cd "$(dirname "$0")/../.."
NCU_BY=330 bash scripts/device/run65-breakdown.sh
if [ "$SECONDS" -lt 470 ]; then bash scripts/device/run70-ahead-layout.sh; else echo "layout A/B skipped at ${SECONDS}s"; fi
