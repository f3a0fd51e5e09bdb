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
x bench -m fixtures/models/stories260K-gptq-4bit-g32 --backend cuda -p 128,512 -d 0,256 || fail=1
x bench --dummy llama-7b --max-seq-len 2048 -p 512 -d 128,1024 -r 3 || fail=1
# Out of memory must be a row saying so (exit 1), not a crash.
echo '$ xllama bench --dummy llama-70b --max-seq-len 4000000 -p 16 -n 4 -o csv'
node bin/xllama.js bench --dummy llama-70b --max-seq-len 4000000 -p 16 -n 4 -o csv > /tmp/oom.csv 2> /tmp/oom.err
rc=$?; echo "[exit $rc]"; cat /tmp/oom.csv /tmp/oom.err
if [ $rc = 1 ] && [ "$(grep -cE '^llama-70b \(dummy\),.*,failed,.*(GiB|GB)' /tmp/oom.csv)" = 2 ] && ! grep -q '^ *at ' /tmp/oom.err
then echo "OOM: a row saying so"; else echo "OOM: unexpected output"; fail=1; fi
exit $fail
