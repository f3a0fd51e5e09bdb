#!/usr/bin/env bash
# What a GPU load reads from the disk besides the checkpoint, from a cold page cache: the shared libraries the
# process loads (the dynamic loader's own log, LD_DEBUG=files), their sizes, the driver's firmware files and
# whether the GPU is in persistence mode (without it, the kernel driver loads its firmware when a process opens
# the GPU). Session 59 found the CUDA driver's cold start growing with the checkpoint read-ahead's window
# (0.32 s with none, 0.57 s at 256 MiB, 2.6 s at 4 GiB): this names what it waits for, what the disk under the
# folder is (its scheduler and queue), and times the driver's start alone and beside the read-ahead's patterns
# (driver-start.py).
#   source scripts/device/setup.sh && bash scripts/device/startup-files.sh MODEL_DIR [ROUNDS]
set -u
m=${1:?usage: startup-files.sh MODEL_DIR [ROUNDS]}
nvidia-smi --query-gpu=name,persistence_mode,driver_version --format=csv
echo "--- the disk under $m:"
dev=$(df --output=source "$m" | tail -1); echo "$dev ($(findmnt -no FSTYPE -T "$m" 2>/dev/null))"
blk=$(basename "$(readlink -f "/sys/class/block/$(basename "$dev")")" 2>/dev/null)
[ -e "/sys/class/block/$blk/partition" ] && blk=$(basename "$(dirname "$(readlink -f "/sys/class/block/$blk")")")
for q in scheduler nr_requests read_ahead_kb max_sectors_kb rotational; do
  echo "  $q: $(cat "/sys/block/$blk/queue/$q" 2>/dev/null || echo '?')"
done
sync; echo 3 > /proc/sys/vm/drop_caches
LD_DEBUG=files LD_DEBUG_OUTPUT=/tmp/ld-debug node bin/xllama.js bench -m "$m" --prompt 16 --depth 0 --gen 4 --repeats 1 \
  --json --verbose 2>&1 >/dev/null | grep -E 'GPU query|load: .* in [0-9.]+ s'
echo "--- shared libraries loaded (the model process and its helpers), by size:"
libs=$(cat /tmp/ld-debug.* 2>/dev/null | grep -oE 'calling init: [^ ]+' | sed 's/calling init: //' | sort -u)
ls -lL $libs 2>/dev/null | sort -k5 -n -r | awk '{ printf "%8.1f MB  %s\n", $5 / 1e6, $9 }' | head -30
rm -f /tmp/ld-debug.*
fw=/lib/firmware/nvidia/$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)
echo "--- the driver's firmware ($fw):"
ls -l "$fw"/ 2>/dev/null | head
if command -v fincore >/dev/null; then  # what of them the cold load brought into the page cache
  echo "--- in the page cache after the cold load (fincore):"
  fincore "$(command -v node)" $libs "$fw"/* 2>/dev/null | sort -h -r | head -20
fi
echo "--- the CUDA driver's start, alone and beside the read-ahead's patterns:"
python3 scripts/device/driver-start.py "$(ls "$m"/*.safetensors | head -1)" "${2:-2}"
