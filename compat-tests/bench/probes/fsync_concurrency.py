"""Probe (not part of the bench): how the data directory's disk answers fsyncs of several files
at once, as the broker's flushers of several partitions issue them. Each mode appends 100 B
and syncs in a loop for a few seconds and prints the syncs per second and their latency
percentiles:

  parallel N   N threads, each fdatasync-ing its own preallocated file (the broker today);
  serial N     the same with one fdatasync at a time (a process-wide lock);
  syncfs N     one thread writing to N files, then one syncfs(2) covering all of them;
  written N    as parallel N, but the files' space is written with zeros first instead of
               fallocated, so an append overwrites written blocks (no extent to convert, no
               journal commit in an fdatasync on ext4);
  ranged N     one thread writing to N files, then sync_file_range(2) starting every file's
               writeback before one fdatasync of each in turn (the first one's journal commit
               covers all N; each later one waits for its writeback and sends a cache flush).

    python3 compat-tests/bench/probes/fsync_concurrency.py [DIR] [SECONDS]

DIR defaults to ./target/fsync-probe (the files are removed afterwards).
"""
import ctypes
import os
import sys
import threading
import time

DIR = sys.argv[1] if len(sys.argv) > 1 else "target/fsync-probe"
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
FILES = 3
libc = ctypes.CDLL("libc.so.6", use_errno=True)


def open_file(name, written=False):
    fd = os.open(os.path.join(DIR, name), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    if written:
        zeros = bytes(1 << 20)
        for i in range(64):
            os.pwrite(fd, zeros, i << 20)
    else:
        os.posix_fallocate(fd, 0, 64 << 20)
    os.fsync(fd)
    return fd


def close_file(fd, name):
    os.close(fd)
    os.unlink(os.path.join(DIR, name))


def report(mode, latencies):
    a = sorted(latencies)
    q = lambda f: a[min(len(a) - 1, int(len(a) * f))] * 1e6
    print(f"{mode:<12} {len(a) / SECONDS:>8,.0f} syncs/s  p50 {q(.5):>7,.0f}  "
          f"p99 {q(.99):>7,.0f}  p99.9 {q(.999):>7,.0f} us")


def threads(serial, written=False):
    lock = threading.Lock()
    latencies = [[] for _ in range(FILES)]

    def run(i):
        name = f"t{i}"
        fd = open_file(name, written)
        end, off = time.time() + SECONDS, 0
        while time.time() < end:
            os.pwrite(fd, b"x" * 100, off)
            off += 100
            t = time.perf_counter()
            if serial:
                with lock:
                    os.fdatasync(fd)
            else:
                os.fdatasync(fd)
            latencies[i].append(time.perf_counter() - t)
        close_file(fd, name)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(FILES)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    mode = "written" if written else "serial" if serial else "parallel"
    report(f"{mode} {FILES}", [x for l in latencies for x in l])


def one_thread(mode, sync_all):
    """One thread appending 100 B to each of the files, then `sync_all(fds)` covering them."""
    names = [f"{mode}{i}" for i in range(FILES)]
    fds = [open_file(n) for n in names]
    latencies, end, off = [], time.time() + SECONDS, 0
    while time.time() < end:
        for fd in fds:
            os.pwrite(fd, b"x" * 100, off)
        off += 100
        t = time.perf_counter()
        sync_all(fds)
        latencies.append(time.perf_counter() - t)
    for fd, n in zip(fds, names):
        close_file(fd, n)
    report(f"{mode} {FILES}", latencies)


def syncfs(fds):
    if libc.syncfs(fds[0]) != 0:
        raise OSError(ctypes.get_errno(), "syncfs")


def ranged(fds):
    write_only = 2  # SYNC_FILE_RANGE_WRITE
    for fd in fds:
        if libc.sync_file_range(fd, ctypes.c_longlong(0), ctypes.c_longlong(0), write_only) != 0:
            raise OSError(ctypes.get_errno(), "sync_file_range")
    for fd in fds:
        os.fdatasync(fd)


if __name__ == "__main__":
    os.makedirs(DIR, exist_ok=True)
    for _ in range(2):
        threads(serial=False)
        threads(serial=True)
        one_thread("syncfs", syncfs)
        one_thread("ranged", ranged)
        threads(serial=False, written=True)
