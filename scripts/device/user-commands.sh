#!/usr/bin/env bash
# The xllama commands a user would run on a GPU machine, on the real fixture checkpoints and on dummies.
# Prints each command and what it gave; exits non-zero if an expectation fails.
set -u
cd "$(dirname "$0")/../.."
x() { echo "\$ xllama $*"; node bin/xllama.js "$@"; local rc=$?; echo "[exit $rc]"; return $rc; }
fail=0
x info --gpus || fail=1
x info fixtures/models/stories260K-gptq-4bit-g64-actorder || fail=1

# (llama2.c's greedy story on cuda is checked by check-generate.mjs, the `generate` step.)
x generate -m fixtures/models/stories260K-gptq-4bit-g64-actorder -p "One day, a little fox" -n 80 --seed 7 --backend cuda || fail=1
x bench -m fixtures/models/stories260K-gptq-4bit-g32 --backend cuda --prompt 128,512 --context 0,256 || fail=1
x bench --dummy llama-7b --max-seq-len 2048 --prompt 512 --context 128,1024 || fail=1
# Out of memory must be one line and exit 2, not a crash.
x bench --dummy llama-70b --max-seq-len 4000000 --prompt 16 --context 0 --gen 4 2>&1 | tee /tmp/oom.txt
if grep -qE "^xllama: .*(GiB|GB)" /tmp/oom.txt && [ "$(grep -c . /tmp/oom.txt)" -le 3 ]; then echo "OOM: one-line message"; else echo "OOM: unexpected output"; fail=1; fi
exit $fail
