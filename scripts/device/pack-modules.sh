#!/usr/bin/env bash
# Prepares .devnm/node_modules (git-ignored): the production dependencies only, without type
# declarations, source maps and docs, small enough to travel to the GPU machine with .device/.
# On the GPU machine: `ln -sfn .devnm/node_modules node_modules` (scripts/device/setup.sh does it).
set -euo pipefail
root="$(git rev-parse --show-toplevel)"
cd "$root"
grep -qx '/.devnm/' .git/info/exclude 2>/dev/null || echo '/.devnm/' >> .git/info/exclude
tmp="$(mktemp -d)"
cp package.json package-lock.json "$tmp/"
(cd "$tmp" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null)
find "$tmp/node_modules" \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -name '*.md' \) -delete
rm -rf .devnm && mkdir -p .devnm && mv "$tmp/node_modules" .devnm/node_modules && rm -rf "$tmp"
echo "ready: $(du -sh .devnm | cut -f1) in .devnm/"
