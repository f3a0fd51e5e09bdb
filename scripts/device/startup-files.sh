#!/usr/bin/env bash
# What a GPU load reads from the disk besides the checkpoint, from a cold page cache: the shared libraries the
# process loads (the dynamic loader's own log, LD_DEBUG=files), their sizes, the driver's firmware files and
# whether the GPU is in persistence mode (without it, the kernel driver loads its firmware when a process opens
# the GPU). Session 59 found the CUDA driver's cold start growing with the checkpoint read-ahead's window
# (0.32 s with none, 0.57 s at 256 MiB, 2.6 s at 4 GiB): this names what it waits for.
#   source scripts/device/setup.sh && bash scripts/device/startup-files.sh MODEL_DIR
set -u
m=${1:?usage: startup-files.sh MODEL_DIR}
nvidia-smi --query-gpu=name,persistence_mode,driver_version --format=csv
sync; echo 3 > /proc/sys/vm/drop_caches
LD_DEBUG=files LD_DEBUG_OUTPUT=/tmp/ld-debug node bin/xllama.js bench -m "$m" --prompt 16 --depth 0 --gen 4 --repeats 1 \
  --json --verbose 2>&1 >/dev/null | grep -E 'GPU query|load: .* in [0-9.]+ s'
echo "--- shared libraries loaded (the model process and its helpers), by size:"
cat /tmp/ld-debug.* 2>/dev/null | grep -oE 'calling init: [^ ]+' | sed 's/calling init: //' | sort -u | xargs -r ls -lL 2>/dev/null | sort -k5 -n -r |
  awk '{ printf "%8.1f MB  %s\n", $5 / 1e6, $9 }' | head -30
rm -f /tmp/ld-debug.*
echo "--- the driver's firmware:"
ls -l /lib/firmware/nvidia/"$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)"/ 2>/dev/null | head
