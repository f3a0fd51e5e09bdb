#!/usr/bin/env bash
# Helpers the session scripts source (from the repo root): which GPU came, issue 13's H200 figures first where one
# came, and one run of the kernel check's decode loop.

# is_h200: whether GPU 0 is an H200.
is_h200() { nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; }

# lite_first_on_h200: on an H200, issue 13's lite figures (run70-h200-lite.sh), archived as $OUT/lite.tgz so that
# the steps after them keep $OUT's few returned files; returns 1 on any other GPU, running nothing.
lite_first_on_h200() {
  is_h200 || return 1
  bash scripts/device/run70-h200-lite.sh
  tar -czf /tmp/lite.tgz -C "$OUT" . && find "$OUT" -mindepth 1 -delete && mv /tmp/lite.tgz "$OUT/lite.tgz"
  return 0
}

# decode_loop KC [VAR=VALUE...]: the kernel check KC's decode loop (--bench-depths) under those variables, one line
# a model and depth (t/s and ms a token).
decode_loop() {
  local kc=$1; shift
  echo "-- $* at ${SECONDS}s"
  env "$@" timeout 60 "$kc" --bench-depths 2>&1 | grep "^bench\|FAIL" | sed 's/: prompt.*decode/ decode/; s/ | weights.*//'
}
