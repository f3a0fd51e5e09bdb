#!/usr/bin/env python3
"""The CUDA driver's cold start (cuInit, the first device's primary context: what `GPU query` times in a load),
alone and while another thread asks the disk for a checkpoint in the ways the load's read-ahead can: every
128 KiB piece of a window at once (posix_fadvise WILLNEED, xllama's default before session 61), or with at most
F MiB asked for and not yet arrived (XLLAMA_READ_AHEAD_IN_FLIGHT_MIB, 32 for a GPU load since), or at once from
the idle I/O class (not in xllama: does the disk's scheduler let the driver's reads pass?). Each trial starts
from a dropped page cache (root).

  python3 scripts/device/driver-start.py FILE [ROUNDS]

Session 59 found the start at 0.32 s with no read-ahead, 0.57 s with 256 MiB asked for at once and 2.6 s with
4 GiB (a cold 7B load on an H200): this separates the driver's own wait from the load's other steps."""
import ctypes
import os
import subprocess
import sys
import threading
import time

PIECE = 128 << 10


def drop_caches():
    os.sync()
    with open('/proc/sys/vm/drop_caches', 'w') as f:
        f.write('3\n')


def idle_io_class():
    """Puts the calling thread in the idle I/O class (ioprio_set): the block layer tags the reads it starts with
    it, and a scheduler that keeps classes apart (mq-deadline, bfq; not `none`) serves other readers first."""
    libc = ctypes.CDLL(None, use_errno=True)
    SYS_ioprio_set, IOPRIO_WHO_PROCESS, IOPRIO_CLASS_IDLE = 251, 1, 3  # x86-64; who 0 = this thread
    if libc.syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_CLASS_IDLE << 13) != 0:
        print(f'driver-start: ioprio_set failed (errno {ctypes.get_errno()})', flush=True)


def ask(path, window, in_flight, done, idle=False):
    """Advises [0, window) of path piece by piece; with in_flight, waits for the piece in_flight bytes back;
    idle: from the idle I/O class."""
    if idle:
        idle_io_class()
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    end = min(size, window)
    off = 0
    while off < end:
        n = min(PIECE, end - off)
        os.posix_fadvise(fd, off, n, os.POSIX_FADV_WILLNEED)
        off += n
        if in_flight and off > in_flight:
            os.pread(fd, 1, off - in_flight - 1)  # blocks until that page has arrived
    done.append(time.perf_counter())
    os.close(fd)


# The child starts Python first (its own files, read before the clock starts), says so, and waits for the word to
# start the driver, so that the checkpoint's reads begin just before the driver's own, as in a load.
CHILD = ('import ctypes, sys, time\n'
         'print("ready", flush=True); sys.stdin.readline()\n'
         't = time.perf_counter()\n'
         'cu = ctypes.CDLL("libcuda.so.1")\n'
         'assert cu.cuInit(0) == 0\n'
         'd = ctypes.c_int(); assert cu.cuDeviceGet(ctypes.byref(d), 0) == 0\n'
         'c = ctypes.c_void_p(); assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(c), d) == 0\n'
         'print(time.perf_counter() - t, flush=True)\n')


def driver_start(before_go=None):
    """Seconds for cuInit, cuDeviceGet(0) and cuDevicePrimaryCtxRetain in a fresh process (the driver starts
    once a process); before_go() runs once that process is ready, just before it starts the driver."""
    child = subprocess.Popen([sys.executable, '-c', CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    ready = child.stdout.readline()
    if ready.strip() == 'ready':
        if before_go:
            before_go()
        child.stdin.write('go\n')
        child.stdin.flush()
    out, err = child.communicate()
    if child.returncode != 0 or not out.strip():
        lines = err.strip().splitlines()
        sys.exit('driver-start: the CUDA driver did not start: ' + (lines[-1] if lines else f'exit {child.returncode}'))
    return float(out)


def trial(path, window, in_flight, idle=False):
    drop_caches()
    done = []
    t0 = []
    reader = threading.Thread(target=ask, args=(path, window, in_flight, done, idle)) if window else None

    def go():
        t0.append(time.perf_counter())
        if reader:
            reader.start()
    start = driver_start(go)
    if reader:
        reader.join()
    asked = f', all asked for in {done[0] - t0[0]:.2f} s' if done else ''
    return f'{start:.3f} s{asked}'


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    variants = [('nothing read', 0, 0), ('256 MiB at once', 256 << 20, 0), ('4 GiB at once', 4 << 30, 0),
                ('4 GiB, at most 32 MiB in flight', 4 << 30, 32 << 20),
                ('4 GiB, at most 8 MiB in flight', 4 << 30, 8 << 20),
                ('4 GiB at once, idle I/O class', 4 << 30, 0, True)]
    print(f'driver start, warm: {driver_start():.3f} s')
    for r in range(1, rounds + 1):
        for name, *how in variants:
            print(f'round {r}, cold, {name}: driver start {trial(path, *how)}', flush=True)


if __name__ == '__main__':
    main()
