#!/usr/bin/env python3
"""Sluice benchmark: fixed scenarios, printed next to this machine's limits.

Run through compat-tests/bench/run.sh, which builds everything and passes
the paths. Per run (default 3, interleaved: every run measures the limits and
every scenario again, so drift on a shared machine hits both sides):

  limits      disk (append 1 MiB + fdatasync; 4 KiB + fdatasync latency),
              loopback TCP (iperf3 and our own blaster), and min_server (the
              least work per byte of a durable acknowledging log server,
              driven with scenario 2's request size and a pipeline of 5;
              with the latency scenario also at its fixed rate of 100 B
              requests, for the machine's floor of fsync'd-ack latency).
  scenarios   see SCENARIOS below.

For each scenario the broker's CPU time (utime+stime from /proc/<pid>/stat),
peak RSS (VmHWM from /proc/<pid>/status, reset before each scenario through
/proc/<pid>/clear_refs) and wire bytes (from its Prometheus metrics) are
taken around the client run. Results: a table per scenario (medians), the
same as JSON in compat-tests/bench/results/<timestamp>.json and as markdown
in <timestamp>.md. Nothing here asserts speed: a failed *run* (a client
error, a timeout) fails the script, a slow one does not.
"""

import argparse
import contextlib
import datetime
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))

# Scenario names, in the order they run. `--scenario` takes these.
SCENARIOS = [
    "produce-100b",  # 1: 1,000,000 x 100 B, acks=all, 3 partitions, linger 5 ms
    "produce-1k",  # 2: 200,000 x 1 KiB, acks=all, 3 partitions
    "compression",  # 3: 200,000 x 1 KiB JSON-like, none / lz4 / zstd
    "consume",  # 4: catch-up read of the topics of 1 and 2 from the earliest offset
    "latency",  # 5: fixed 10,000 msg/s x 100 B, acks=all, 20 s
    "many-partitions",  # 6: 1,000 partitions, produce then consume
    "fanout",  # 7: 4 consumer groups reading topic 2 at once (--no-groups: manual assignment)
    "cluster",  # 8: scenario 2 on a 3-node cluster, RF=3, min.insync.replicas=2, then read back
    "soak",  # 9: 5 minutes of fixed-rate produce + consume with retention; RSS sampled throughout
]

FULL = {
    "s1_count": 1_000_000,
    "s2_count": 200_000,
    "s3_count": 200_000,
    "replay_requests": 900,
    "replay_rate": 300,
    "counted_requests": 60,
    "lat_rate": 10_000,
    "lat_seconds": 20,
    "many_partitions": 1000,
    "many_count": 200_000,
    "fanout_consumers": 4,
    "disk_seq_mib": 256,
    "disk_small_count": 2000,
    "loopback_s": 3,
    "timeout_s": 300,
    "soak_seconds": 300,
    "soak_rate": 5000,
}
SMOKE = {
    "s1_count": 20_000,
    "s2_count": 5_000,
    "s3_count": 5_000,
    "replay_requests": 20,
    "replay_rate": 100,
    "counted_requests": 3,
    "lat_rate": 1000,
    "lat_seconds": 3,
    "many_partitions": 50,
    "many_count": 5_000,
    "fanout_consumers": 4,
    "disk_seq_mib": 8,
    "disk_small_count": 100,
    "loopback_s": 0.5,
    "timeout_s": 60,
    "soak_seconds": 8,
    "soak_rate": 1000,
}

# librdkafka's batch.size: what a produce request approaches under load when
# scenario 2 did not run in this run to tell us the real average.
DEFAULT_REQUEST_BYTES = 1_000_000

# produce_replay's request size: between the lz4 and zstd runs' average requests.
REPLAY_REQUEST_BYTES = 384 * 1024

# Requests replayed under callgrind before the count starts (buffers grown, segments open).
COUNTED_WARM_UP_REQUESTS = 10


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settle(seconds=1.0):
    """Writes back what earlier scenarios left dirty, then waits a moment: on this VM the
    writeback of a previous scenario's gigabytes stalls a later one's fsyncs for 25-35 ms
    (measured: ack p99.9 26-28 ms right after `disk_limit`, 1.5-2.1 ms after a sync)."""
    os.sync()
    time.sleep(seconds)


def cpu_steal_ticks():
    """(steal, total) ticks of all CPUs from /proc/stat: time the hypervisor ran something
    else while this VM's virtual CPUs wanted to run."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[7] if len(v) > 7 else 0), sum(v)


def cpu_busy_fraction(seconds=1.0):
    """Share of all CPUs busy over `seconds` (from /proc/stat): taken between runs, when
    nothing of ours is running, so it measures other work on the machine."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait

    t0, i0 = snap()
    time.sleep(seconds)
    t1, i1 = snap()
    return round(1 - (i1 - i0) / max(1, t1 - t0), 3)


def pretouch_memory(max_gib):
    """Writes every page of a large anonymous allocation once, in a child that then exits.

    In a VM whose memory the host backs lazily, the guest's first write to a physical
    page costs a host fault: about 2.5 CPU-seconds per GB on the machine these figures
    were taken on, charged to whichever process first touches it, usually inside the
    kernel's copy into the page cache. A produce scenario that happens to get fresh
    pages then looks several times more expensive per byte than the same scenario on
    reused pages (and the min_server yardstick the same). Touching the memory once
    before the runs puts it on the guest's free lists already backed, so every scenario
    sees the same, steady-state cost. Returns (GiB touched, seconds)."""
    try:
        with open("/proc/meminfo") as f:
            avail_kib = next(int(l.split()[1]) for l in f if l.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return 0, 0.0
    gib = min(max_gib, avail_kib / (1 << 20) * 0.4)
    n = int(gib * (1 << 30)) // 4096 * 4096
    if n <= 0:
        return 0, 0.0
    t0 = time.time()
    code = f"n={n}\nb=bytearray(n)\nb[::4096]=bytes(len(range(0,n,4096)))\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)
    return round(n / (1 << 30), 2), round(time.time() - t0, 1)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class ChildProcesses:
    """Every long-lived process we start, so each is stopped (by pid) on exit."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, **kw):
        proc = subprocess.Popen(cmd, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc, sig=signal.SIGTERM, wait_s=20):
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self):
        for proc in list(self.procs):
            self.stop(proc, wait_s=5)


CHILDREN = ChildProcesses()


def run_json(cmd, timeout_s, what):
    """Runs a benchmark binary that prints one JSON object; fails loudly."""
    log(f"{what}: {' '.join(cmd[:2])} ...")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what}: timed out after {timeout_s} s")
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed ({out.returncode}): {out.stderr.strip()[-2000:]}\n{out.stdout[-1000:]}")
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"{what}: no JSON in output: {out.stdout[-1000:]} {out.stderr[-1000:]}")
    return json.loads(lines[-1])


def block_device(path):
    """The /proc/diskstats name of the block device `path` lives on, or None (tmpfs, overlay)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    sys_dev = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    return os.path.basename(os.path.realpath(sys_dev)) if os.path.exists(sys_dev) else None


def disk_read_bytes(device):
    """Bytes read from `device` since boot (/proc/diskstats, sectors of 512 bytes), or None."""
    if not device:
        return None
    with open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 5 and fields[2] == device:
                return int(fields[5]) * 512
    return None


class ProcStats:
    """CPU time and peak RSS of one process, from /proc."""

    def __init__(self, pid):
        self.pid = pid

    def cpu_s(self):
        with open(f"/proc/{self.pid}/stat") as f:
            # Fields after the command (which may hold spaces) start at ')'.
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / CLK_TCK  # utime, stime

    def thread_cpu_ns(self):
        """On-CPU nanoseconds of each live thread (/proc/<pid>/task/*/schedstat): far finer
        than the 10 ms ticks of /proc/<pid>/stat, which the sub-second scenarios need."""
        out = {}
        base = f"/proc/{self.pid}/task"
        try:
            tids = os.listdir(base)
        except OSError:
            return out
        for tid in tids:
            try:
                with open(f"{base}/{tid}/schedstat") as f:
                    out[tid] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        return out

    def status_kib(self, key):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return None

    def reset_peak_rss(self):
        # "5" resets VmHWM to the current RSS (Linux >= 4.0).
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False


class Broker:
    """A release `sluice` on free ports with a fresh data dir."""

    def __init__(self, binary, data_dir, extra_sets, extra_args=(), port=None, wrapper=(), start_s=30):
        self.port = port or free_port()
        self.metrics_port = free_port()
        self.data_dir = data_dir
        shutil.rmtree(data_dir, ignore_errors=True)
        os.makedirs(data_dir)
        # Where a consume that does not find its segments in the page cache reads them from.
        self.device = block_device(data_dir)
        self.log_path = data_dir.rstrip("/") + ".log"
        cmd = [
            *wrapper,
            binary,
            "--listen", f"127.0.0.1:{self.port}",
            "--data-dir", data_dir,
            "--log-level", "warn",
            "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
            "--set", "num.partitions=3",
        ]
        for s in extra_sets:
            cmd += ["--set", s]
        cmd += list(extra_args)
        self.log_file = open(self.log_path, "w")
        self.proc = CHILDREN.start(cmd, stdout=self.log_file, stderr=subprocess.STDOUT)
        self.stats = ProcStats(self.proc.pid)
        deadline = time.time() + start_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice exited at start-up: {open(self.log_path).read()[-2000:]}")
            try:
                self.metrics()
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"sluice did not start within {start_s} s")
                time.sleep(0.1)

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def metrics(self):
        """Sums of the counters we use: bytes in/out, produce requests."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        sums = {"bytes_in": 0.0, "bytes_out": 0.0, "produce_requests": 0.0, "fetch_requests": 0.0,
                "fsyncs": 0.0}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            try:
                v = float(value)
            except ValueError:
                continue
            if name.startswith("sluice_bytes_in_total"):
                sums["bytes_in"] += v
            elif name.startswith("sluice_bytes_out_total"):
                sums["bytes_out"] += v
            elif name == 'sluice_requests_total{api="Produce"}':
                sums["produce_requests"] += v
            elif name == 'sluice_requests_total{api="Fetch"}':
                sums["fetch_requests"] += v
            elif name.startswith("sluice_fsync_duration_seconds_count"):
                sums["fsyncs"] += v
            elif name.startswith("sluice_fsync_duration_seconds_bucket"):
                # Every bucket, cumulative (`fsyncs_within`, `slow_fsync_seconds`).
                le = re.search(r'le="([^"]+)"', name)
                if le:
                    sums[f"fsync_le:{le[1]}"] = sums.get(f"fsync_le:{le[1]}", 0.0) + v
        return sums

    def stop(self):
        CHILDREN.stop(self.proc)
        self.log_file.close()


class Cluster:
    """Three `sluice` nodes (controller + broker each) on loopback, used like one Broker:
    `bootstrap` lists all three; figures are summed over the nodes (peak RSS: the largest)."""

    def __init__(self, binary, data_root, extra_sets, nodes=3):
        ports = [free_port() for _ in range(nodes)]
        cports = [free_port() for _ in range(nodes)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(cports))
        self.nodes = []
        for i in range(nodes):
            args = ["--node-id", str(i + 1), "--controller-listen", f"127.0.0.1:{cports[i]}",
                    "--controller-voters", voters]
            self.nodes.append(Broker(binary, os.path.join(data_root, f"cluster-{i + 1}"), extra_sets,
                                     extra_args=args, port=ports[i]))
        self.stats = self  # Measured calls stats.reset_peak_rss/cpu_s/status_kib
        self.device = self.nodes[0].device  # the nodes' data dirs share one data root
        deadline = time.time() + 60
        while not self._all_registered(nodes):
            if time.time() > deadline:
                raise RuntimeError("the benchmark cluster did not form within 60 s")
            time.sleep(0.2)

    def _all_registered(self, n):
        try:
            out = subprocess.run(["kcat", "-b", self.bootstrap, "-L", "-m", "3"], capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return False
        m = re.search(r"(\d+) brokers:", out.stdout)
        return bool(m) and int(m.group(1)) >= n

    @property
    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.nodes)

    def metrics(self):
        total = {}
        for n in self.nodes:
            for k, v in n.metrics().items():
                total[k] = total.get(k, 0.0) + v
        return total

    def reset_peak_rss(self):
        for n in self.nodes:
            n.stats.reset_peak_rss()

    def cpu_s(self):
        return sum(n.stats.cpu_s() for n in self.nodes)

    def thread_cpu_ns(self):
        """The nodes' threads, keyed by node and thread id."""
        return {f"{i}/{tid}": ns for i, n in enumerate(self.nodes)
                for tid, ns in n.stats.thread_cpu_ns().items()}

    def status_kib(self, key):
        return max((n.stats.status_kib(key) or 0) for n in self.nodes)

    def stop(self):
        for n in self.nodes:
            n.stop()


class Measured:
    """Broker CPU, peak RSS and metric deltas around a block."""

    def __init__(self, broker):
        self.broker = broker

    def __enter__(self):
        settle()
        self.broker.stats.reset_peak_rss()
        self.m0 = self.broker.metrics()
        self.cpu0 = self.broker.stats.cpu_s()
        self.disk_read0 = disk_read_bytes(self.broker.device)
        self.threads0 = self.broker.stats.thread_cpu_ns()
        self.steal0 = cpu_steal_ticks()
        self.peak_anon_kib = 0
        self._sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample_anon, daemon=True)
        self._sampler.start()
        self.t0 = time.time()
        return self

    def _sample_anon(self):
        """Peak RssAnon (the broker's own memory; /proc has no high-water mark for it),
        sampled every 50 ms. VmHWM also counts the page cache the broker has mapped
        (RssFile: its kept segment mappings), which the kernel can reclaim."""
        while not self._sampling.is_set():
            with contextlib.suppress(OSError, ValueError):
                self.peak_anon_kib = max(self.peak_anon_kib, self.broker.stats.status_kib("RssAnon") or 0)
            self._sampling.wait(0.05)

    def __exit__(self, *exc):
        self.wall_s = time.time() - self.t0
        steal1 = cpu_steal_ticks()
        self.steal_pct = round(100 * (steal1[0] - self.steal0[0]) / max(1, steal1[1] - self.steal0[1]), 1)
        threads1 = self.broker.stats.thread_cpu_ns()
        ticks_s = self.broker.stats.cpu_s() - self.cpu0
        if self.threads0 and threads1 and all(t in threads1 for t in self.threads0):
            # Every thread is still there: the per-thread sum is exact (new threads count whole).
            self.cpu_s = sum(ns - self.threads0.get(t, 0) for t, ns in threads1.items()) / 1e9
            self.cpu_source = "schedstat"
        else:
            self.cpu_s = ticks_s  # a thread exited meanwhile; its time is only in the ticks
            self.cpu_source = "ticks"
        self._sampling.set()
        self._sampler.join()
        self.peak_rss_mib = (self.broker.stats.status_kib("VmHWM") or 0) / 1024
        self.peak_anon_mib = max(self.peak_anon_kib, self.broker.stats.status_kib("RssAnon") or 0) / 1024
        self.rss_file_mib = (self.broker.stats.status_kib("RssFile") or 0) / 1024
        read1 = disk_read_bytes(self.broker.device)
        self.disk_read_mb = (round((read1 - self.disk_read0) / 1e6, 1)
                             if read1 is not None and self.disk_read0 is not None else None)
        m1 = self.broker.metrics()
        self.delta = {k: m1[k] - self.m0[k] for k in m1}
        return False

    def figures(self, direction):
        """Broker-side figures; `direction` is 'in' (produce) or 'out' (consume)."""
        wire = self.delta["bytes_in" if direction == "in" else "bytes_out"]
        f = {
            "broker_cpu_s": round(self.cpu_s, 3),
            "wire_bytes": int(wire),
            "cpu_s_per_gb": round(self.cpu_s / (wire / 1e9), 3) if wire > 0 else None,
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "peak_anon_mib": round(self.peak_anon_mib, 1),
            "rss_file_mib_end": round(self.rss_file_mib, 1),
            "broker_window_s": round(self.wall_s, 3),
            "cpu_steal_pct": self.steal_pct,
        }
        if direction == "out" and self.disk_read_mb is not None:
            # Anything read from the disk meanwhile (by anyone): a read not served from memory.
            f["disk_read_mb"] = self.disk_read_mb
        if direction == "in" and self.delta["produce_requests"] > 0:
            f["produce_requests"] = int(self.delta["produce_requests"])
            f["avg_request_bytes"] = int(wire / self.delta["produce_requests"])
            f["fsyncs"] = int(self.delta["fsyncs"])
            # The bucket that ends at 102.4 ms (50 us x 2^11): what is above it is a stall of the
            # disk, not of the broker.
            f["fsyncs_over_100ms"] = int(self.delta["fsyncs"] - fsyncs_within(self.delta, 0.1024))
            # The bucket that ends at 1.6 ms (50 us x 2^5): one sync over it alone takes an
            # acknowledgement past the 2 ms the latency target allows.
            f["fsyncs_over_1_6ms"] = int(self.delta["fsyncs"] - fsyncs_within(self.delta, 0.0016))
            slow_s = slow_fsync_seconds(self.delta, 0.0016)
            if slow_s is not None and self.wall_s > 0:
                f["slow_fsync_time_pct"] = round(100 * slow_s / self.wall_s, 2)
        return f


def fsync_buckets(delta):
    """(upper bound in seconds, cumulative count) of the broker's fsync histogram buckets in
    `delta` (`fsync_le:<bound>`), `+Inf` left out, by bound."""
    return sorted((float(k.split(":", 1)[1]), v) for k, v in delta.items()
                  if k.startswith("fsync_le:") and k != "fsync_le:+Inf")


def fsyncs_within(delta, bound):
    """How many of the broker's fsyncs took at most `bound` seconds (a bucket's bound)."""
    return sum(v for b, v in fsync_buckets(delta) if abs(b - bound) < 1e-9)


def slow_fsync_seconds(delta, from_s):
    """At least how long the fsyncs over `from_s` took, from the deltas of the broker's fsync
    histogram buckets (`fsync_le:<bound>`): each counts as its bucket's lower bound, and one
    past the last bound as that bound. A message sent while such a sync runs waits for the
    rest of it and then for a sync of its own. (With a flusher per partition, syncs of
    several partitions may overlap and are each counted.)"""
    bounds = fsync_buckets(delta)
    if not bounds:
        return None
    inf = delta.get("fsync_le:+Inf", bounds[-1][1])
    total, below, prev_bound = 0.0, 0.0, 0.0
    for bound, cumulative in bounds + [(float("inf"), inf)]:
        count = cumulative - below
        if prev_bound >= from_s:
            total += count * prev_bound
        below, prev_bound = cumulative, bound
    return total


def per_message(figures, msgs):
    """The broker's CPU (µs) and fsyncs per message of a latency run, from `Measured.figures`."""
    if not msgs or "fsyncs" not in figures:
        return {}
    return {"broker_cpu_us_per_msg": round(figures["broker_cpu_s"] * 1e6 / msgs, 1),
            "fsyncs_per_msg": round(figures["fsyncs"] / msgs, 2)}


class Bench:
    def __init__(self, args, params):
        self.args = args
        self.p = params
        self.bins = args.bin_dir
        self.rdperf = args.rdkafka_performance if args.client == "rdkafka_performance" else None
        self.timeout = params["timeout_s"]

    def bin(self, name):
        return os.path.join(self.bins, name)

    # ---- clients ----

    def produce(self, broker, topic, count, size, *, payload="random", compression="none", linger_ms=5,
                use_rdperf=True, extra=(), rate=None):
        """Produces and returns client figures (msgs/s, MB/s of payload)."""
        if self.rdperf and use_rdperf and compression == "none" and rate is None:
            cmd = [self.rdperf, "-P", "-t", topic, "-b", broker.bootstrap, "-s", str(size), "-c", str(count),
                   "-a", "-1", "-X", f"linger.ms={linger_ms}", "-X", "broker.address.family=v4"]
            for kv in extra:
                cmd += ["-X", kv]
            log(f"rdkafka_performance -P {topic} {count} x {size} B")
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
            m = None
            for line in out.stdout.splitlines():
                mm = re.match(r"% (\d+) messages produced \((\d+) bytes\), (\d+) delivered .*?(\d+) failed\) in (\d+)ms", line)
                if mm:
                    m = mm
            if out.returncode != 0 or not m:
                raise RuntimeError(f"rdkafka_performance produce failed: {out.stdout[-1500:]} {out.stderr[-1500:]}")
            delivered, failed, ms = int(m.group(3)), int(m.group(4)), max(int(m.group(5)), 1)
            if delivered != count or failed:
                raise RuntimeError(f"rdkafka_performance: {delivered} of {count} delivered, {failed} failed")
            return {"client": "rdkafka_performance", "msgs": delivered, "seconds": ms / 1000,
                    "msgs_per_s": delivered / (ms / 1000), "mb_per_s": delivered * size / (ms * 1000)}
        r = run_json([self.bin("load_gen"), "produce", "--bootstrap", broker.bootstrap, "--topic", topic,
                      "--count", str(count), "--size", str(size), "--payload", payload,
                      "--compression", compression, "--linger-ms", str(linger_ms),
                      "--max-s", str(self.timeout)] + [a for kv in extra for a in ("--set", kv)]
                     + (["--rate", f"{rate:.1f}"] if rate else []),
                     self.timeout + 30, f"load_gen produce {topic}")
        return {"client": "load_gen", "msgs": r["delivered"], "seconds": r["seconds"],
                "msgs_per_s": r["msgs_per_s"], "mb_per_s": r["mb_per_s"]}

    def run_replay(self, broker, topic, codec, requests, what):
        """`produce_replay`: `requests` pre-built requests of REPLAY_REQUEST_BYTES (scenario 3's
        JSON records, `codec` inside) to the 3 partitions of `topic`, at the bench's pace."""
        return run_json([self.bin("produce_replay"), "--bootstrap", broker.bootstrap, "--topic", topic,
                         "--partitions", "3", "--compression", codec, "--request-bytes", str(REPLAY_REQUEST_BYTES),
                         "--requests", str(requests), "--rate", str(self.p["replay_rate"]),
                         "--max-s", str(self.timeout)],
                        self.timeout + 30, what)

    def produce_replay(self, broker, topic, codec):
        """Pre-built produce requests (scenario 3's JSON records, `codec` inside) replayed at
        a fixed size and pace; broker figures around it."""
        self.create_topic(broker, topic, 3)
        with Measured(broker) as m:
            r = self.run_replay(broker, topic, codec, self.p["replay_requests"], f"produce_replay {codec}")
        return {"client": "produce_replay", "msgs": r["records"], "seconds": r["seconds"],
                "msgs_per_s": r["records"] / r["seconds"], "mb_per_s": r["records"] * 1024 / r["seconds"] / 1e6,
                "records_per_request": r["records_per_request"], **m.figures("in"), "kind": "produce"}

    def replay_instructions(self, data_root):
        """The replayed requests again, each codec on a fresh broker run under callgrind: the
        broker's own instructions per wire byte, which repeat within a few percent run after
        run where its CPU time per byte moves by tens of percent (this VM's memory, see the
        README). User space only; the kernel's share is the same bytes and system calls
        whatever the codec. Counted from after a warm-up of COUNTED_WARM_UP_REQUESTS requests
        (buffers grown, segments open) to the last answer."""
        if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
            log("valgrind not found: no instruction counts")
            return None
        out = {}
        for codec in ("none", "lz4", "zstd"):
            cg_dir = os.path.join(data_root, f"callgrind-{codec}")
            shutil.rmtree(cg_dir, ignore_errors=True)
            os.makedirs(cg_dir)
            broker = Broker(self.args.sluice, os.path.join(data_root, f"counted-{codec}"), self.args.broker_set,
                            wrapper=("valgrind", "--tool=callgrind",
                                     f"--callgrind-out-file={cg_dir}/callgrind.out.%p"),
                            start_s=120)
            try:
                self.create_topic(broker, "counted", 3)
                what = f"produce_replay {codec} under callgrind"
                self.run_replay(broker, "counted", codec, COUNTED_WARM_UP_REQUESTS, what)
                pid = str(broker.proc.pid)
                subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True, timeout=60)
                r = self.run_replay(broker, "counted", codec, self.p["counted_requests"], what)
                subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True, timeout=60)
            finally:
                broker.stop()
            ir = 0
            for name in os.listdir(cg_dir):
                if name.endswith(".1"):
                    with open(os.path.join(cg_dir, name)) as f:
                        ir += sum(int(l.split()[1]) for l in f if l.startswith("summary:"))
            if not ir:
                raise RuntimeError(f"callgrind wrote no count for {codec}")
            out[codec] = {"instructions": ir, "wire_bytes": r["wire_bytes"], "requests": r["requests"],
                          "warm_up_requests": COUNTED_WARM_UP_REQUESTS, "per_wire_byte": ir / r["wire_bytes"]}
        return out

    def consume(self, broker, topic, partitions, count, *, use_rdperf=True):
        if self.rdperf and use_rdperf:
            cmd = [self.rdperf, "-C", "-t", topic, "-b", broker.bootstrap, "-o", "beginning", "-c", str(count),
                   "-X", "broker.address.family=v4"]
            for p in range(partitions):
                cmd += ["-p", str(p)]
            log(f"rdkafka_performance -C {topic} {count}")
            # The client's own CPU (it shares the two cores, and sets the read rate: librdkafka
            # parses every message on one thread per broker).
            out, client_cpu_s = with_child_cpu_s(
                lambda: subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout))
            m = None
            for line in out.stdout.splitlines():
                mm = re.match(r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms", line)
                if mm:
                    m = mm
            if out.returncode != 0 or not m:
                raise RuntimeError(f"rdkafka_performance consume failed: {out.stdout[-1500:]} {out.stderr[-1500:]}")
            msgs, nbytes, ms = int(m.group(1)), int(m.group(2)), max(int(m.group(3)), 1)
            if msgs < count:
                raise RuntimeError(f"rdkafka_performance: consumed {msgs} of {count}")
            return {"client": "rdkafka_performance", "msgs": msgs, "seconds": ms / 1000,
                    "msgs_per_s": msgs / (ms / 1000), "mb_per_s": nbytes / (ms * 1000),
                    "client_cpu_s_per_gb": round(client_cpu_s / (nbytes / 1e9), 3) if nbytes else None}
        r = run_json([self.bin("load_gen"), "consume", "--bootstrap", broker.bootstrap, "--topic", topic,
                      "--partitions", str(partitions), "--count", str(count), "--max-s", str(self.timeout)],
                     self.timeout + 30, f"load_gen consume {topic}")
        return {"client": "load_gen", "msgs": r["msgs"], "seconds": r["seconds"],
                "msgs_per_s": r["msgs_per_s"], "mb_per_s": r["mb_per_s"]}

    def consume_lean(self, broker, topic, partitions, count):
        log(f"fetch_client {topic} {count}")
        r, client_cpu_s = with_child_cpu_s(lambda: run_json(
            [self.bin("fetch_client"), "--bootstrap", broker.bootstrap, "--topic", topic,
             "--partitions", str(partitions), "--count", str(count), "--max-s", str(self.timeout)],
            self.timeout + 30, f"fetch_client {topic}"))
        return {"client": "fetch_client", "msgs": r["msgs"], "seconds": r["seconds"],
                "msgs_per_s": r["msgs_per_s"], "mb_per_s": r["mb_per_s"],
                "client_cpu_s_per_gb": round(client_cpu_s / (r["batch_bytes"] / 1e9), 3) if r["batch_bytes"] else None}

    def create_topic(self, broker, topic, partitions, replication=1, min_isr=None, configs=None):
        cmd = [self.bin("load_gen"), "create-topic", "--bootstrap", broker.bootstrap, "--topic", topic,
               "--partitions", str(partitions), "--replication-factor", str(replication)]
        if min_isr:
            cmd += ["--min-insync-replicas", str(min_isr)]
        if configs:
            cmd += ["--configs", ",".join(f"{k}={v}" for k, v in configs.items())]
        run_json(cmd, 120, f"create {topic} ({partitions} partitions, RF {replication})")

    def free_topics(self, broker, *topics):
        """Deletes topics no later scenario reads, so that their logs' page cache is freed
        before the next scenario. These VMs hand freed memory back to the host and keep only
        some of it in the guest (`/sys/module/page_reporting/parameters`: 1.6 of 4 GiB freed
        stayed unreported; `max_waiting_mib` is 1024); while the logs of every earlier
        scenario stayed in the page cache, a late scenario's writes landed on pages the host
        had taken back, and the first write to each cost a host fault inside the kernel's copy
        into the page cache (the three-node produce then cost 6.3-7.3 CPU-s/GB in a full run
        against 3.0 run alone; see docs/performance.md, "Memory held across scenarios").
        Freeing what is done makes every scenario start from the same memory."""
        names = [t for t in topics if t]
        if not names or self.args.keep_data:
            return
        run_json([self.bin("load_gen"), "delete-topic", "--bootstrap", broker.bootstrap,
                  "--topic", ",".join(names)], 120, f"delete {', '.join(names)}")

    # ---- limits ----

    def disk_limit(self, directory):
        return run_json([self.bin("disk_limit"), "--dir", directory, "--seq-mib", str(self.p["disk_seq_mib"]),
                         "--small-count", str(self.p["disk_small_count"]), "--max-s", "20"], 90, "disk_limit")

    def loopback_limit(self):
        own = run_json([self.bin("loopback_limit"), "--seconds", str(self.p["loopback_s"])], 60, "loopback_limit")
        result = {"own_mb_per_s": own["mb_per_s"], "iperf3_mb_per_s": None}
        iperf = shutil.which("iperf3")
        if iperf:
            port = free_port()
            # No probe connection: iperf3's server treats any connection as a
            # test client. Retry the client while the server starts.
            server = CHILDREN.start([iperf, "-s", "-B", "127.0.0.1", "-p", str(port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                seconds = str(max(1, round(self.p["loopback_s"])))
                for attempt in range(20):
                    time.sleep(0.25)
                    out = subprocess.run([iperf, "-c", "127.0.0.1", "-p", str(port), "-t", seconds, "-J"],
                                         capture_output=True, text=True, timeout=60)
                    try:
                        data = json.loads(out.stdout)
                        result["iperf3_mb_per_s"] = data["end"]["sum_received"]["bits_per_second"] / 8 / 1e6
                        break
                    except (ValueError, KeyError) as e:
                        if attempt == 19:
                            log(f"iperf3 failed ({e}: {out.stdout[-300:]}); using our own loopback figure")
            except subprocess.TimeoutExpired as e:
                log(f"iperf3 timed out ({e}); using our own loopback figure")
            finally:
                CHILDREN.stop(server, wait_s=5)
        result["mb_per_s"] = result["iperf3_mb_per_s"] or result["own_mb_per_s"]
        result["source"] = "iperf3" if result["iperf3_mb_per_s"] else "loopback_limit"
        return result

    @contextlib.contextmanager
    def min_server(self, directory):
        """A min_server writing into `directory`, as (process, address); stopped, and its
        file removed (its page cache freed, as free_topics does), on the way out."""
        os.makedirs(directory, exist_ok=True)
        server = CHILDREN.start([self.bin("min_server"), "--dir", directory, "--lifetime-s", "600"],
                                stdout=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline()
            if not line.startswith("listening "):
                raise RuntimeError(f"min_server did not start: {line!r}")
            yield server, line.split()[1]
        finally:
            CHILDREN.stop(server, wait_s=5)
            if not self.args.keep_data:
                shutil.rmtree(directory, ignore_errors=True)

    def min_server_limit(self, directory, total_bytes, request_bytes):
        with self.min_server(directory) as (server, addr):
            stats = ProcStats(server.pid)
            settle()  # as before every Sluice scenario
            cpu0 = stats.cpu_s()
            r = run_json([self.bin("min_client"), "--connect", addr, "--total-mib", str(total_bytes / 1048576),
                          "--request-bytes", str(request_bytes), "--depth", "5", "--max-s", "120"],
                         180, f"min_client ({request_bytes} B requests)")
            time.sleep(0.2)  # let the server's connection threads finish
            cpu = stats.cpu_s() - cpu0
            # Its own getrusage figure after the connection ended (microseconds, not ticks).
            ready, _, _ = select.select([server.stdout], [], [], 5)
            if ready:
                line = server.stdout.readline()
                try:
                    cpu = json.loads(line)["cpu_s"]
                    r["cpu_source"] = "getrusage"
                except (ValueError, KeyError):
                    log(f"min_server said {line!r}; using /proc ticks")
            r["server_cpu_s"] = round(cpu, 3)
            r["cpu_s_per_gb"] = round(cpu / (r["bytes"] / 1e9), 3)
            r["peak_rss_mib"] = round((stats.status_kib("VmHWM") or 0) / 1024, 1)
            return r

    def min_server_latency(self, directory):
        """min_server's acknowledgement latency at the latency scenario's fixed rate of 100 B
        requests (min_client --rate, timed from each request's due time like latency_gen and
        latency_lean): the least a durable acknowledging server with group commit can take on
        this machine, its cores shared with the client as Sluice's are."""
        with self.min_server(directory) as (server, addr):
            settle()
            seconds = min(self.p["lat_seconds"], 10)
            r = run_json([self.bin("min_client"), "--connect", addr, "--rate", str(self.p["lat_rate"]),
                          "--duration-s", str(seconds), "--request-bytes", "100"],
                         seconds + 60, f"min_client at {self.p['lat_rate']} requests/s")
            # Its CPU per request (getrusage, printed once the connection ended), beside the
            # broker's per message.
            ready, _, _ = select.select([server.stdout], [], [], 5)
            if ready:
                try:
                    cpu = json.loads(server.stdout.readline())["cpu_s"]
                    r["cpu_us_per_request"] = round(cpu * 1e6 / r["requests"], 1)
                except (ValueError, KeyError, ZeroDivisionError):
                    pass
            return r

    # ---- one run ----

    def run_once(self, run_index, selected, last=True):
        data_root = os.path.join(self.args.work_dir, f"run-{run_index}")
        shutil.rmtree(data_root, ignore_errors=True)
        os.makedirs(data_root)
        res = {"run": run_index, "loadavg_start": os.getloadavg()[0], "limits": {}, "scenarios": {}}
        broker = Broker(self.args.sluice, os.path.join(data_root, "sluice-data"), self.args.broker_set)
        produced = set()  # the scenario 1 and 2 topics written so far, freed after their last reader
        try:
            res["limits"]["disk"] = self.disk_limit(data_root)
            res["limits"]["loopback"] = self.loopback_limit()

            def want(name):
                return name in selected

            # Scenario 1 and 2 topics are also the input of 4 and 7; when only
            # those are selected, produce the input unmeasured.
            t1, t2 = "s1-100b", "s2-1k"
            n1, n2 = self.p["s1_count"], self.p["s2_count"]
            if want("produce-100b") or want("consume"):
                with Measured(broker) as m:
                    c = self.produce(broker, t1, n1, 100)
                produced.add(t1)
                if want("produce-100b"):
                    res["scenarios"]["produce-100b"] = {**c, **m.figures("in"), "kind": "produce"}
            if want("produce-1k") or want("consume") or want("fanout"):
                with Measured(broker) as m:
                    c = self.produce(broker, t2, n2, 1024)
                produced.add(t2)
                res["s2_avg_request_bytes"] = m.figures("in").get("avg_request_bytes")
                if want("produce-1k"):
                    res["scenarios"]["produce-1k"] = {**c, **m.figures("in"), "kind": "produce"}

            request_bytes = res.get("s2_avg_request_bytes") or DEFAULT_REQUEST_BYTES
            res["limits"]["min_server"] = self.min_server_limit(
                os.path.join(data_root, "min-server"), n2 * 1024, request_bytes)

            if want("compression"):
                for codec in ("none", "lz4", "zstd"):
                    topic = f"s3-json-{codec}"
                    with Measured(broker) as m:
                        c = self.produce(broker, topic, self.p["s3_count"], 1024, payload="json",
                                         compression=codec, use_rdperf=False)
                    f = m.figures("in")
                    f["compression_ratio"] = round(c["msgs"] * 1024 / f["wire_bytes"], 2) if f["wire_bytes"] else None
                    res["scenarios"][f"produce-json-{codec}"] = {**c, **f, "kind": "produce"}
                    self.free_topics(broker, topic)
                # The same uncompressed load cut into requests as small as each codec's: per
                # request costs (the fsync above all) then weigh the same, so the difference
                # left is what compression itself costs the broker.
                for codec in ("lz4", "zstd"):
                    size = res["scenarios"][f"produce-json-{codec}"].get("avg_request_bytes")
                    if not size:
                        continue
                    topic = f"s3-json-none-at-{codec}-size"
                    with Measured(broker) as m:
                        c = self.produce(broker, topic, self.p["s3_count"], 1024, payload="json",
                                         use_rdperf=False, extra=(f"batch.size={int(size)}",))
                    res["scenarios"][f"produce-json-none-at-{codec}-size"] = {
                        **c, **m.figures("in"), "kind": "produce"}
                    self.free_topics(broker, topic)
                # And at the same request rate too: paced so that its wire bytes per second (and
                # so, with requests of the same size, its requests per second) match the
                # compressed run's, for as long. Then each request meets the same group commit
                # (compressed requests arrive further apart, the client being busy
                # compressing, so fewer share an fsync); what differs is only the bytes.
                none = res["scenarios"].get("produce-json-none")
                for codec in ("lz4", "zstd"):
                    z = res["scenarios"][f"produce-json-{codec}"]
                    size = z.get("avg_request_bytes")
                    if not (size and none and none.get("wire_bytes") and z.get("wire_bytes")):
                        continue
                    wire_per_msg = none["wire_bytes"] / none["msgs"]
                    rate = z["wire_bytes"] / z["broker_window_s"] / wire_per_msg
                    count = max(1000, int(rate * z["broker_window_s"]))
                    topic = f"s3-json-none-as-{codec}"
                    with Measured(broker) as m:
                        # A long linger: at this rate a 5 ms linger would cut requests smaller
                        # than batch.size.
                        c = self.produce(broker, topic, count, 1024, payload="json", use_rdperf=False,
                                         linger_ms=100, extra=(f"batch.size={int(size)}",), rate=rate)
                    res["scenarios"][f"produce-json-none-as-{codec}"] = {
                        **c, **m.figures("in"), "kind": "produce"}
                    self.free_topics(broker, topic)
                # Last, with no client work in the window at all: the same number of pre-built
                # requests of the same size at the same pace, only the codec inside differs
                # (produce_replay). The order rotates every run, so over three runs each codec
                # goes first, second and last once (this VM's cost per byte drifts within a
                # run, and the first row of a run tends to be the cheapest).
                codecs = ("none", "lz4", "zstd")
                shift = (run_index - 1) % len(codecs)
                for codec in codecs[shift:] + codecs[:shift]:
                    res["scenarios"][f"produce-json-replay-{codec}"] = self.produce_replay(
                        broker, f"s3-replay-{codec}", codec)
                    self.free_topics(broker, f"s3-replay-{codec}")

            if want("consume"):
                for name, topic, count in (("consume-100b", t1, n1), ("consume-1k", t2, n2)):
                    with Measured(broker) as m:
                        c = self.consume(broker, topic, 3, count)
                    res["scenarios"][name] = {**c, **m.figures("out"), "kind": "consume"}
                # The same reads with a client that does only what every consumer must (CRC of
                # each batch, a walk of each record): the broker's serving rate, which
                # librdkafka's per-message work on two shared cores hides.
                for name, topic, count in (("consume-100b-lean", t1, n1), ("consume-1k-lean", t2, n2)):
                    with Measured(broker) as m:
                        c = self.consume_lean(broker, topic, 3, count)
                    res["scenarios"][name] = {**c, **m.figures("out"), "kind": "consume"}
            # The 100 B topic is read by nothing after this; the 1 KiB one by the fan-out.
            if t1 in produced:
                self.free_topics(broker, t1)
            if t2 in produced and not want("fanout"):
                self.free_topics(broker, t2)

            if want("latency"):
                # With librdkafka (latency_gen), then with a lean client of our own that only
                # sends, reads answers and long-polls (latency_lean): what the broker adds when
                # the client's own thread hand-offs do not queue for the two cores with it.
                # Which goes first turns round every run.
                clients = ("latency_gen", "latency_lean")
                res["limits"]["min_server_latency"] = self.min_server_latency(
                    os.path.join(data_root, "min-server-latency"))
                for client in clients if run_index % 2 else clients[::-1]:
                    name = "latency" if client == "latency_gen" else "latency-lean"
                    topic = f"s5-{name}"
                    self.create_topic(broker, topic, 3)
                    with Measured(broker) as m:
                        r = run_json([self.bin(client), "--bootstrap", broker.bootstrap, "--topic", topic,
                                      "--partitions", "3", "--rate", str(self.p["lat_rate"]),
                                      "--duration-s", str(self.p["lat_seconds"]), "--size", "100"],
                                     self.p["lat_seconds"] + 90, client)
                    f = m.figures("in")
                    res["scenarios"][name] = {
                        "kind": "latency", "client": client, "msgs": r["acked"],
                        "seconds": self.p["lat_seconds"],
                        "msgs_per_s": r["achieved_rate"], "mb_per_s": r["achieved_rate"] * 100 / 1e6,
                        "produce_ack_us": r["produce_ack_us"], "e2e_us": r["e2e_us"], **f,
                        # Where the tail comes from on two shared cores: the broker's CPU and
                        # its fsyncs per acknowledged message (over the client's whole run).
                        **per_message(f, r["acked"])}
                    self.free_topics(broker, topic)

            if want("many-partitions"):
                topic, parts, count = "s6-many", self.p["many_partitions"], self.p["many_count"]
                self.create_topic(broker, topic, parts)
                # Without a key librdkafka's sticky partitioner fills one
                # partition at a time; sticky linger 0 picks a random partition
                # per message, so every request carries many partitions.
                with Measured(broker) as m:
                    c = self.produce(broker, topic, count, 1024, extra=("sticky.partitioning.linger.ms=0",))
                res["scenarios"]["many-partitions-produce"] = {**c, **m.figures("in"), "kind": "produce",
                                                               "partitions": parts}
                with Measured(broker) as m:
                    c = self.consume(broker, topic, parts, count, use_rdperf=False)
                res["scenarios"]["many-partitions-consume"] = {**c, **m.figures("out"), "kind": "consume",
                                                               "partitions": parts}
                # librdkafka resolves the earliest offset of each assigned partition with a
                # ListOffsets of its own (1,000 of them over about half a second) and fetches
                # the partitions resolved so far meanwhile; a Fetch of drained ones then waits
                # out fetch.wait.max.ms (500 ms) with the data of the rest unrequested, so the
                # row above is mostly the client's start-up. The lean client lists all 1,000
                # partitions in every Fetch from the start: what the broker serves.
                with Measured(broker) as m:
                    c = self.consume_lean(broker, topic, parts, count)
                res["scenarios"]["many-partitions-consume-lean"] = {**c, **m.figures("out"), "kind": "consume",
                                                                    "partitions": parts}
                self.free_topics(broker, topic)

            if want("fanout"):
                res["scenarios"]["fanout"] = self.fanout(broker, t2, n2, run_index)
                self.free_topics(broker, t2)

            if want("cluster"):
                self.cluster(res, data_root, n2)

            # Counted once: instruction counts repeat (not one per interleaved run).
            if want("compression") and last:
                res["instructions"] = self.replay_instructions(data_root)

            # One long run is the measurement (not one per interleaved run).
            if want("soak") and last:
                res["scenarios"]["soak"] = self.soak(data_root)
        finally:
            res["broker_log_tail"] = broker_log_tail(broker)
            broker.stop()
            res["loadavg_end"] = os.getloadavg()[0]
            if not self.args.keep_data:
                shutil.rmtree(data_root, ignore_errors=True)
        return res

    def cluster(self, res, data_root, count):
        """Scenario 2 against a three-node cluster: acks=all waits for the two followers
        (each fsyncs before fetching again), so this is the replicated cost of a durable ack.
        The nodes share the machine's 2 cores with each other and with the client."""
        # The single node of this run is stopped meanwhile by nothing: it stays idle.
        cluster = Cluster(self.args.sluice, data_root, self.args.broker_set)
        try:
            topic = "s8-cluster-1k"
            self.create_topic(cluster, topic, 3, replication=3, min_isr=2)
            with Measured(cluster) as m:
                c = self.produce(cluster, topic, count, 1024)
            res["scenarios"]["cluster-produce-1k-rf3"] = {**c, **m.figures("in"), "kind": "produce",
                                                          "nodes": 3}
            with Measured(cluster) as m:
                c = self.consume(cluster, topic, 3, count)
            res["scenarios"]["cluster-consume-1k-rf3"] = {**c, **m.figures("out"), "kind": "consume",
                                                          "nodes": 3}
        finally:
            cluster.stop()
            if not self.args.keep_data:  # its logs' page cache, as free_topics does
                for node in cluster.nodes:
                    shutil.rmtree(node.data_dir, ignore_errors=True)

    def soak(self, data_root):
        """Memory over a long run: a fresh broker takes a fixed rate of 1 KiB acks=all
        messages that a consumer reads as they arrive (latency_gen), on a topic whose
        small segments roll and are deleted by retention all along, while its RSS is
        sampled every second. Growth = median RSS of the last fifth minus that of the
        fifth after the first 30 s (warm-up: page cache of the maps, allocator pools)."""
        broker = Broker(self.args.sluice, os.path.join(data_root, "soak-data"),
                        list(self.args.broker_set) + ["log.retention.check.interval.ms=2000"])
        seconds, rate = self.p["soak_seconds"], self.p["soak_rate"]
        samples = []  # (seconds since start, RSS MiB)
        stop = threading.Event()

        def sample():
            t0 = time.time()
            while not stop.is_set():
                rss = broker.stats.status_kib("VmRSS")
                if rss:
                    samples.append((time.time() - t0, rss / 1024))
                stop.wait(1.0)

        try:
            topic = "s9-soak"
            self.create_topic(broker, topic, 3, configs={
                "segment.bytes": str(4 << 20), "retention.bytes": str(16 << 20)})
            sampler = threading.Thread(target=sample, daemon=True)
            with Measured(broker) as m:
                sampler.start()
                try:
                    r = run_json([self.bin("latency_gen"), "--bootstrap", broker.bootstrap, "--topic", topic,
                                  "--partitions", "3", "--rate", str(rate), "--duration-s", str(seconds),
                                  "--size", "1024"], seconds + 120, f"latency_gen soak {seconds} s")
                finally:
                    stop.set()
                    sampler.join()
            warm = min(30.0, seconds / 4)
            steady = [(t, v) for t, v in samples if t >= warm]
            fifth = max(1, len(steady) // 5)
            start_rss = median([v for _, v in steady[:fifth]])
            end_rss = median([v for _, v in steady[-fifth:]])
            f = m.figures("in")
            return {"kind": "soak", "client": "latency_gen", "msgs": r["acked"], "seconds": seconds,
                    "msgs_per_s": r["achieved_rate"], "mb_per_s": r["achieved_rate"] * 1024 / 1e6,
                    "produce_ack_us": r["produce_ack_us"], "e2e_us": r["e2e_us"], **f,
                    "rss_start_mib": round(start_rss, 1), "rss_end_mib": round(end_rss, 1),
                    "rss_growth_mib": round(end_rss - start_rss, 1),
                    "rss_max_mib": round(max(v for _, v in samples), 1),
                    "segments_on_disk_end": sum(1 for d, _, files in os.walk(broker.data_dir)
                                                if os.path.basename(d).startswith(topic + "-")
                                                for n in files if n.endswith(".log"))}
        finally:
            broker.stop()

    def fanout(self, broker, topic, count, run_index):
        n = self.p["fanout_consumers"]
        groups = self.args.groups
        procs = []
        with Measured(broker) as m:
            start = time.time()
            for i in range(n):
                cmd = [self.bin("load_gen"), "consume", "--bootstrap", broker.bootstrap, "--topic", topic,
                       "--partitions", "3", "--count", str(count), "--max-s", str(self.timeout)]
                if groups:
                    cmd += ["--group", f"bench-fanout-{run_index}-{i}"]
                procs.append(CHILDREN.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            results = []
            for proc in procs:
                try:
                    out, err = proc.communicate(timeout=self.timeout + 30)
                finally:
                    CHILDREN.stop(proc, wait_s=5)
                if proc.returncode != 0:
                    raise RuntimeError(f"fan-out consumer failed: {err[-1500:]}")
                results.append(json.loads(out.strip().splitlines()[-1]))
            wall = time.time() - start
        total_msgs = sum(r["msgs"] for r in results)
        total_bytes = sum(r["bytes"] for r in results)
        # Aggregate over the slowest consumer's reading time.
        span = max(r["seconds"] for r in results)
        return {"kind": "consume", "client": "load_gen x%d" % n,
                "mode": fanout_mode(groups),
                "msgs": total_msgs, "seconds": span, "msgs_per_s": total_msgs / span,
                "mb_per_s": total_bytes / span / 1e6, "wall_s": round(wall, 3), **m.figures("out")}


def fanout_mode(groups):
    """How the fan-out consumers read, as the row and the run's metadata both name it."""
    return "consumer groups" if groups else "manual assignment"


def broker_log_tail(broker):
    try:
        with open(broker.log_path) as f:
            return f.read()[-2000:]
    except OSError:
        return ""


# ---- summarising ----

def fmt_target(v):
    """A target's figure: ratios with three decimals, so that a median just under its bound
    (0.597 against >= 0.6x) does not print as the bound itself beside "no"."""
    return fmt(v, 3) if isinstance(v, float) and abs(v) < 10 else fmt(v)


def fmt(v, digits=None):
    if v is None:
        return "-"
    if isinstance(v, float):
        if digits is not None:
            return f"{v:.{digits}f}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def with_child_cpu_s(run_child):
    """Runs `run_child` (which waits for the client process it starts) and returns its result and
    the CPU-seconds (user + system, getrusage) of the child processes that ended meanwhile."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run_child()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return result, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def summarise(runs):
    """Medians over runs of every figure, plus per-run ratios to the limits."""
    limits = {}
    keys = {
        "disk_seq_mb_per_s": lambda l: l["disk"]["seq_mb_per_s"],
        "fdatasync_4k_p50_us": lambda l: l["disk"]["small_fdatasync_us"]["p50"],
        "fdatasync_4k_p99_us": lambda l: l["disk"]["small_fdatasync_us"]["p99"],
        "fdatasync_4k_p999_us": lambda l: l["disk"]["small_fdatasync_us"]["p999"],
        "fdatasync_4k_prealloc_p50_us": lambda l: l["disk"]["small_fdatasync_prealloc_us"]["p50"],
        "fdatasync_4k_prealloc_p99_us": lambda l: l["disk"]["small_fdatasync_prealloc_us"]["p99"],
        "fdatasync_4k_prealloc_p999_us": lambda l: l["disk"]["small_fdatasync_prealloc_us"]["p999"],
        "loopback_mb_per_s": lambda l: l["loopback"]["mb_per_s"],
        "loopback_own_mb_per_s": lambda l: l["loopback"]["own_mb_per_s"],
        "min_server_mb_per_s": lambda l: l["min_server"]["mb_per_s"],
        "min_server_cpu_s_per_gb": lambda l: l["min_server"]["cpu_s_per_gb"],
        "min_server_request_bytes": lambda l: l["min_server"]["request_bytes"],
        "min_server_peak_rss_mib": lambda l: l["min_server"]["peak_rss_mib"],
        "min_server_rate": lambda l: l["min_server_latency"]["rate"],
        "min_server_ack_p50_us": lambda l: l["min_server_latency"]["request_latency_us"]["p50"],
        "min_server_ack_p99_us": lambda l: l["min_server_latency"]["request_latency_us"]["p99"],
        "min_server_ack_p999_us": lambda l: l["min_server_latency"]["request_latency_us"]["p999"],
        "min_server_cpu_us_per_request": lambda l: l["min_server_latency"]["cpu_us_per_request"],
    }
    for k, get in keys.items():
        vals = []
        for r in runs:
            try:
                vals.append(get(r["limits"]))
            except (KeyError, TypeError):
                pass
        limits[k] = median(vals)
    # The slowest single fdatasync of any run: a stall of the disk (these VMs' disks stall for
    # hundreds of milliseconds now and then), which holds every fsync'd acknowledgement behind it.
    stalls = [r["limits"]["disk"]["small_fdatasync_us"].get("max") for r in runs
              if isinstance(r.get("limits", {}).get("disk"), dict)]
    limits["fdatasync_4k_max_us"] = max((v for v in stalls if v is not None), default=None)
    limits["loopback_source"] = runs[0]["limits"].get("loopback", {}).get("source") if runs else None

    scenarios = {}
    names = []
    for r in runs:
        for n in r["scenarios"]:
            if n not in names:
                names.append(n)
    for name in names:
        rows = [r["scenarios"][name] for r in runs if name in r["scenarios"]]
        kind = rows[0]["kind"]
        s = {"kind": kind, "client": rows[0].get("client"), "runs": len(rows)}
        for k in ("msgs", "msgs_per_s", "mb_per_s", "cpu_s_per_gb", "peak_rss_mib", "peak_anon_mib",
                  "rss_file_mib_end", "broker_cpu_s",
                  "wire_bytes", "avg_request_bytes", "records_per_request", "compression_ratio", "partitions",
                  "rss_start_mib", "rss_end_mib", "rss_growth_mib", "rss_max_mib", "segments_on_disk_end",
                  "client_cpu_s_per_gb", "fsyncs_over_100ms", "fsyncs_over_1_6ms", "slow_fsync_time_pct", "cpu_steal_pct",
                  "broker_cpu_us_per_msg", "fsyncs_per_msg"):
            vals = [row.get(k) for row in rows]
            if any(v is not None for v in vals):
                s[k] = median(vals)
        s["wire_mb_per_s"] = median([row["wire_bytes"] / 1e6 / row["seconds"] for row in rows
                                     if row.get("seconds") and row.get("wire_bytes")])
        if "mode" in rows[0]:
            s["mode"] = rows[0]["mode"]
        disk_reads = [row["disk_read_mb"] for row in rows if row.get("disk_read_mb") is not None]
        if disk_reads:
            s["disk_read_mb_max"] = max(disk_reads)
        for lat in ("produce_ack_us", "e2e_us"):
            if lat in rows[0]:
                s[lat] = {q: median([row[lat][q] for row in rows]) for q in ("p50", "p99", "p999", "max")}
        # Ratios per run (a run's figure over the same run's limit), then the median.
        ratio_vals = {}
        for row, run in zip(rows, [r for r in runs if name in r["scenarios"]]):
            lim = run["limits"]
            wire_mb_s = row["wire_bytes"] / 1e6 / row["seconds"] if row.get("seconds") else None
            if kind == "produce" and "min_server" in lim:
                ms = lim["min_server"]
                ratio_vals.setdefault("mb_per_s_vs_min_server", []).append(
                    wire_mb_s / ms["mb_per_s"] if wire_mb_s and ms.get("mb_per_s") else None)
                ratio_vals.setdefault("cpu_vs_min_server", []).append(
                    row["cpu_s_per_gb"] / ms["cpu_s_per_gb"] if row.get("cpu_s_per_gb") and ms.get("cpu_s_per_gb") else None)
            replay = re.fullmatch(r"produce-json-replay-(lz4|zstd)", name)
            if replay:
                o = run["scenarios"].get("produce-json-replay-none", {})
                ratio_vals.setdefault("cpu_vs_none_replayed", []).append(
                    row["cpu_s_per_gb"] / o["cpu_s_per_gb"] if row.get("cpu_s_per_gb") and o.get("cpu_s_per_gb")
                    else None)
            codec = re.fullmatch(r"produce-json-(lz4|zstd)", name)
            if codec:
                # Compressed against uncompressed in the same run (paired, as the limits are).
                for key, other in (("cpu_vs_none", "produce-json-none"),
                                   ("cpu_vs_none_same_size", f"produce-json-none-at-{codec[1]}-size"),
                                   ("cpu_vs_none_same_size_and_rate", f"produce-json-none-as-{codec[1]}")):
                    o = run["scenarios"].get(other, {})
                    ratio_vals.setdefault(key, []).append(
                        row["cpu_s_per_gb"] / o["cpu_s_per_gb"] if row.get("cpu_s_per_gb") and o.get("cpu_s_per_gb")
                        else None)
            if kind == "consume" and "loopback" in lim:
                ratio_vals.setdefault("mb_per_s_vs_loopback", []).append(
                    wire_mb_s / lim["loopback"]["mb_per_s"] if wire_mb_s else None)
            if kind in ("latency", "soak") and "disk" in lim:
                f99 = lim["disk"]["small_fdatasync_us"]["p99"]
                f50 = lim["disk"]["small_fdatasync_us"]["p50"]
                for lat in ("produce_ack_us", "e2e_us"):
                    ratio_vals.setdefault(f"{lat[:-3]}_p99_vs_fdatasync_p99", []).append(
                        row[lat]["p99"] / f99 if f99 and row[lat]["p99"] is not None else None)
                    ratio_vals.setdefault(f"{lat[:-3]}_p50_vs_fdatasync_p50", []).append(
                        row[lat]["p50"] / f50 if f50 and row[lat]["p50"] is not None else None)
            if kind == "latency" and "min_server_latency" in lim:
                m99 = lim["min_server_latency"]["request_latency_us"]["p99"]
                ratio_vals.setdefault("produce_ack_p99_vs_min_server_p99", []).append(
                    row["produce_ack_us"]["p99"] / m99 if m99 and row["produce_ack_us"]["p99"] is not None
                    else None)
        s["ratios"] = {k: (round(median(v), 3) if median(v) is not None else None) for k, v in ratio_vals.items()}
        # Each run's own figure behind the medians the targets are judged on, in run order.
        per_run = {k: [round(x, 3) if x is not None else None for x in v] for k, v in ratio_vals.items()}
        per_run["cpu_s_per_gb"] = [row.get("cpu_s_per_gb") for row in rows]
        for lat in ("produce_ack_us", "e2e_us"):
            if lat in rows[0]:
                per_run[f"{lat}_p99"] = [row[lat]["p99"] for row in rows]
        s["per_run"] = per_run
        scenarios[name] = s
    counted = next((r["instructions"] for r in runs if r.get("instructions")), None)
    return {"limits": limits, "scenarios": scenarios, "instructions": counted}


def targets(summary):
    """Issue 5's targets, checked against the medians (reported, never asserted), and how many of
    the runs met each on their own (where a target has a figure per run)."""
    sc, out = summary["scenarios"], []

    def add(name, value, check, want, runs=()):
        runs = [v for v in runs if v is not None]
        out.append({"target": name, "value": value, "met": value is not None and check(value), "want": want,
                    "runs": runs, "runs_met": sum(1 for v in runs if check(v))})

    def at_most(limit):
        return lambda v: v <= limit

    def at_least(limit):
        return lambda v: v >= limit

    def below(limit):
        return lambda v: v < limit

    p = sc.get("produce-1k")
    if p:
        r, runs = p["ratios"], p.get("per_run", {})
        add("produce 1 KiB acks=all: CPU-s/GB vs min_server", r.get("cpu_vs_min_server"), at_most(1.5),
            "<= 1.5x", runs.get("cpu_vs_min_server", ()))
        add("produce 1 KiB acks=all: throughput vs min_server", r.get("mb_per_s_vs_min_server"), at_least(0.5),
            ">= 0.5x", runs.get("mb_per_s_vs_min_server", ()))
    for name in ("consume-1k", "consume-1k-lean"):
        c = sc.get(name)
        if c:
            who, runs = f"1 KiB topic, {c.get('client')}", c.get("per_run", {})
            add(f"consume ({who}): throughput vs loopback", c["ratios"].get("mb_per_s_vs_loopback"),
                at_least(0.6), ">= 0.6x", runs.get("mb_per_s_vs_loopback", ()))
            add(f"consume ({who}): broker CPU-s/GB", c.get("cpu_s_per_gb"), at_most(0.5), "<= 0.5",
                runs.get("cpu_s_per_gb", ()))
    for name in ("latency", "latency-lean"):
        l = sc.get(name)
        if l:
            who, runs = l.get("client"), l.get("per_run", {})
            add(f"latency 10k msg/s ({who}): produce-ack p99 (us)", l["produce_ack_us"]["p99"], below(2000),
                "< 2000 us", runs.get("produce_ack_us_p99", ()))
            add(f"latency 10k msg/s ({who}): end-to-end p99 (us)", l["e2e_us"]["p99"], below(5000), "< 5000 us",
                runs.get("e2e_us_p99", ()))
    for codec in ("lz4", "zstd"):
        z = sc.get(f"produce-json-{codec}", {})
        for key, what in (("cpu_vs_none", ""),
                          ("cpu_vs_none_same_size", " in requests of the same size"),
                          ("cpu_vs_none_same_size_and_rate", " in requests of the same size and rate")):
            v = z.get("ratios", {}).get(key)
            if v is not None:
                add(f"{codec} produce: CPU per wire byte vs uncompressed{what}", v, at_most(1.0), "<= 1.0x",
                    z.get("per_run", {}).get(key, ()))
        z = sc.get(f"produce-json-replay-{codec}", {})
        v = z.get("ratios", {}).get("cpu_vs_none_replayed")
        if v is not None:
            add(f"{codec} produce: CPU per wire byte vs uncompressed, pre-built requests of the same size "
                "and rate (produce_replay)", v, at_most(1.0), "<= 1.0x",
                z.get("per_run", {}).get("cpu_vs_none_replayed", ()))
        counted = summary.get("instructions") or {}
        if codec in counted and "none" in counted:
            v = round(counted[codec]["per_wire_byte"] / counted["none"]["per_wire_byte"], 3)
            add(f"{codec} produce: broker instructions per wire byte vs uncompressed, the same pre-built "
                "requests (callgrind)", v, at_most(1.0), "<= 1.0x")
    soak = sc.get("soak")
    if soak and soak.get("rss_growth_mib") is not None:
        v = soak["rss_growth_mib"]
        # "No growth": within allocator noise, 8 MiB or 10 % of the starting RSS.
        limit = max(8.0, 0.1 * (soak.get("rss_start_mib") or 0))
        add(f"soak {soak.get('msgs', 0):,.0f} msgs: RSS growth after warm-up (MiB)", v, at_most(limit),
            f"<= {limit:.0f} MiB")
    rss = [s.get("peak_rss_mib") for s in sc.values() if s.get("peak_rss_mib")]
    if rss:
        v = max(rss)
        add("broker peak RSS, any scenario (MiB)", v, below(512), "< 512 MiB")
    anon = [s.get("peak_anon_mib") for s in sc.values() if s.get("peak_anon_mib")]
    if anon:
        add("broker peak anonymous RSS (its own memory, without mapped page cache), any scenario (MiB)",
            max(anon), below(512), "< 512 MiB")
    return out


def markdown(summary, meta, target_list):
    L = summary["limits"]
    lines = []
    lines.append(f"Sluice {meta['git']} on {meta['cpus']} CPUs, {meta['kernel']}; {meta['mode']}, "
                 f"median of {meta['runs']} interleaved run(s); load average at start {meta['loadavg']}; "
                 f"memory pre-touched {meta['pretouched_gib']} GiB"
                 f" ({meta['conditions']}). Client: {meta['client']}.")
    lines.append("")
    lines.append("Machine limits (same runs):")
    lines.append("")
    lines.append("| limit | value |")
    lines.append("|---|---|")
    lines.append(f"| loopback TCP ({L.get('loopback_source')}) | {fmt(L.get('loopback_mb_per_s'))} MB/s "
                 f"(own blaster {fmt(L.get('loopback_own_mb_per_s'))} MB/s) |")
    lines.append(f"| append 1 MiB + fdatasync | {fmt(L.get('disk_seq_mb_per_s'))} MB/s |")
    lines.append(f"| 4 KiB write + fdatasync latency p50 / p99 / p99.9 (slowest of any run) | "
                 f"{fmt(L.get('fdatasync_4k_p50_us'))} / {fmt(L.get('fdatasync_4k_p99_us'))} / "
                 f"{fmt(L.get('fdatasync_4k_p999_us'))} µs ({fmt(L.get('fdatasync_4k_max_us'))} µs) |")
    lines.append(f"| 4 KiB write + fdatasync into preallocated space, p50 / p99 / p99.9 | "
                 f"{fmt(L.get('fdatasync_4k_prealloc_p50_us'))} / {fmt(L.get('fdatasync_4k_prealloc_p99_us'))} / "
                 f"{fmt(L.get('fdatasync_4k_prealloc_p999_us'))} µs |")
    lines.append(f"| min_server ({fmt(L.get('min_server_request_bytes'))} B requests, depth 5) | "
                 f"{fmt(L.get('min_server_mb_per_s'))} MB/s at {fmt(L.get('min_server_cpu_s_per_gb'))} CPU-s/GB |")
    if L.get("min_server_ack_p99_us") is not None:
        lines.append(f"| min_server at {fmt(L.get('min_server_rate'))} requests/s of 100 B, ack latency "
                     f"p50 / p99 / p99.9 | {fmt(L.get('min_server_ack_p50_us'))} / {fmt(L.get('min_server_ack_p99_us'))}"
                     f" / {fmt(L.get('min_server_ack_p999_us'))} µs, "
                     f"{fmt(L.get('min_server_cpu_us_per_request'))} µs of CPU per request |")
    lines.append("")
    lines.append("| scenario | client | msgs/s | MB/s (payload) | MB/s (wire) | broker CPU-s/GB (wire) "
                 "| peak RSS MiB (peak anon / mapped file at end) "
                 "| latency p50 / p99 / p99.9 (µs) | vs limit |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for name, s in summary["scenarios"].items():
        r = s.get("ratios", {})
        lat = ""
        if "produce_ack_us" in s:
            a, e = s["produce_ack_us"], s["e2e_us"]
            lat = (f"ack {fmt(a['p50'])} / {fmt(a['p99'])} / {fmt(a['p999'])}; "
                   f"e2e {fmt(e['p50'])} / {fmt(e['p99'])} / {fmt(e['p999'])}")
        if s["kind"] == "soak":
            vs = (f"RSS {fmt(s.get('rss_start_mib'))} -> {fmt(s.get('rss_end_mib'))} MiB after warm-up, "
                  f"max {fmt(s.get('rss_max_mib'))}; {fmt(s.get('segments_on_disk_end'))} segments at the end")
        elif s["kind"] == "produce":
            vs = (f"{fmt(r.get('mb_per_s_vs_min_server'))}x min_server MB/s, "
                  f"{fmt(r.get('cpu_vs_min_server'))}x its CPU/GB")
        elif s["kind"] == "consume":
            vs = f"{fmt(r.get('mb_per_s_vs_loopback'))}x loopback"
            if s.get("client_cpu_s_per_gb"):
                vs += f"; client {fmt(s['client_cpu_s_per_gb'])} CPU-s/GB"
            # From 1 MB: starting the client alone may read a few hundred KB.
            if (s.get("disk_read_mb_max") or 0) >= 1:
                vs += f"; up to {fmt(s['disk_read_mb_max'])} MB read from disk in a run"
        else:
            vs = (f"ack p99 {fmt(r.get('produce_ack_p99_vs_fdatasync_p99'))}x, e2e p99 "
                  f"{fmt(r.get('e2e_p99_vs_fdatasync_p99'))}x fdatasync p99")
            if r.get("produce_ack_p99_vs_min_server_p99") is not None:
                vs += f"; ack p99 {fmt(r['produce_ack_p99_vs_min_server_p99'])}x min_server's at the same rate"
            if s.get("fsyncs_over_100ms") is not None:
                # Summed over the syncs: with the shared flush they never overlap, so this is at
                # least the share of the time inside one; with a flusher per partition (or a
                # cluster's nodes) overlapping syncs each count.
                vs += (f"; {fmt(s.get('fsyncs_over_1_6ms'))} of the broker's fsyncs over 1.6 ms "
                       f"(summed, {fmt(s.get('slow_fsync_time_pct'))} % of the time), "
                       f"{fmt(s['fsyncs_over_100ms'])} over 100 ms")
            if s.get("cpu_steal_pct") is not None:
                vs += f"; CPU steal {fmt(s['cpu_steal_pct'])} %"
            if s.get("broker_cpu_us_per_msg") is not None:
                vs += (f"; broker {fmt(s['broker_cpu_us_per_msg'])} µs of CPU and "
                       f"{fmt(s.get('fsyncs_per_msg'))} fsyncs per message")
        label = name
        if s.get("compression_ratio"):
            label += f" ({fmt(s['compression_ratio'])}:1)"
        if s.get("mode"):
            label += f" ({s['mode']})"
        lines.append(f"| {label} | {s.get('client')} | {fmt(s.get('msgs_per_s'))} | {fmt(s.get('mb_per_s'))} | "
                     f"{fmt(s.get('wire_mb_per_s'))} | {fmt(s.get('cpu_s_per_gb'))} | {fmt(s.get('peak_rss_mib'))} "
                     f"({fmt(s.get('peak_anon_mib'))} / {fmt(s.get('rss_file_mib_end'))}) | "
                     f"{lat} | {vs} |")
    counted = summary.get("instructions")
    if counted:
        none = counted["none"]["per_wire_byte"]
        parts = [f"{c} {counted[c]['per_wire_byte']:.3f} ({counted[c]['per_wire_byte'] / none:.2f}x)"
                 for c in ("none", "lz4", "zstd") if c in counted]
        lines.append("")
        lines.append(f"Broker instructions per wire byte (callgrind, user space, {fmt(counted['none']['requests'])} "
                     f"replayed requests after {counted['none']['warm_up_requests']} of warm-up, last run): "
                     + ", ".join(parts) + ".")
    if target_list:
        lines.append("")
        lines.append("| issue 5 target | want | median | each run | met (runs that met it) |")
        lines.append("|---|---|---|---|---|")
        for t in target_list:
            runs = t.get("runs") or []
            each = " / ".join(fmt_target(v) for v in runs) if runs else ""
            met = ("yes" if t["met"] else "no") + (f" ({t['runs_met']} of {len(runs)})" if runs else "")
            lines.append(f"| {t['target']} | {t['want']} | {fmt_target(t['value'])} | {each} | {met} |")
    return "\n".join(lines) + "\n"


def print_tables(summary):
    L = summary["limits"]
    print("\n== machine limits (medians) ==")
    for k, v in L.items():
        print(f"  {k:32} {fmt(v)}")
    for name, s in summary["scenarios"].items():
        print(f"\n== {name} ({s['kind']}, client {s.get('client')}, {s['runs']} run(s)) ==")
        for k in ("msgs", "msgs_per_s", "mb_per_s", "wire_mb_per_s", "cpu_s_per_gb", "broker_cpu_s", "peak_rss_mib",
                  "peak_anon_mib", "rss_file_mib_end",
                  "avg_request_bytes", "records_per_request", "compression_ratio", "partitions", "mode",
                  "rss_start_mib", "rss_end_mib", "rss_growth_mib", "rss_max_mib", "segments_on_disk_end"):
            if s.get(k) is not None:
                print(f"  {k:32} {fmt(s[k])}")
        for lat in ("produce_ack_us", "e2e_us"):
            if lat in s:
                v = s[lat]
                print(f"  {lat:32} p50 {fmt(v['p50'])}  p99 {fmt(v['p99'])}  p99.9 {fmt(v['p999'])}  max {fmt(v['max'])}")
        for k, v in s.get("ratios", {}).items():
            print(f"  ratio {k:26} {fmt(v)}")
    for codec, c in (summary.get("instructions") or {}).items():
        print(f"\n== broker instructions, {codec} replayed (callgrind) ==\n  {c['instructions']:,} for "
              f"{c['wire_bytes']:,} wire bytes: {c['per_wire_byte']:.3f} per byte")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny counts, one run (CI)")
    ap.add_argument("--runs", type=int, default=None, help="interleaved runs (default 3; smoke 1)")
    ap.add_argument("--scenario", action="append", default=[], help="run only these (repeatable): " + ", ".join(SCENARIOS))
    ap.add_argument("--no-groups", dest="groups", action="store_false",
                    help="fan-out with manual assignment instead of 4 consumer groups")
    ap.add_argument("--client", choices=["rdkafka_performance", "rust"], default="rdkafka_performance")
    ap.add_argument("--rdkafka-performance", default=None)
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--results-dir", required=True)
    ap.add_argument("--broker-set", action="append", default=[], help="extra broker --set k=v")
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--git", default="?")
    args = ap.parse_args()
    if args.client == "rdkafka_performance" and not args.rdkafka_performance:
        args.client = "rust"
    for s in args.scenario:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s}; known: {', '.join(SCENARIOS)}")
    selected = args.scenario or SCENARIOS
    params = SMOKE if args.smoke else FULL
    runs_n = args.runs or (1 if args.smoke else 3)
    os.makedirs(args.work_dir, exist_ok=True)
    bench = Bench(args, params)

    started = datetime.datetime.now()
    load0 = os.getloadavg()
    pretouched = (0, 0.0)
    if not args.smoke:
        log("pre-touching memory (see pretouch_memory)")
        pretouched = pretouch_memory(4.0)
        log(f"pre-touched {pretouched[0]} GiB in {pretouched[1]} s")
    runs = []
    busy = []
    t0 = time.time()
    try:
        for i in range(1, runs_n + 1):
            busy.append(cpu_busy_fraction())
            log(f"run {i}/{runs_n} (CPU busy before it: {busy[-1]:.0%})")
            runs.append(bench.run_once(i, selected, last=i == runs_n))
            runs[-1]["cpu_busy_before"] = busy[-1]
    finally:
        CHILDREN.stop_all()
    elapsed = time.time() - t0

    summary = summarise(runs)
    # Smoke figures come from tiny counts on debug builds: no verdicts.
    target_list = [] if args.smoke else targets(summary)
    # The load average lags (it still holds our own previous run), so "quiet" is judged
    # from the CPU time other processes used in the second before each run.
    conditions = "quiet" if max(busy) < 0.15 else \
        f"NOISY: other work used up to {max(busy):.0%} of the CPUs between runs, figures vary"
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "git": args.git,
        "mode": "smoke (tiny counts, figures meaningless)" if args.smoke else "full",
        "runs": runs_n,
        "scenarios": selected,
        "client": ("rdkafka_performance (librdkafka 2.12.1) + load_gen/latency_gen (rdkafka crate)"
                   if args.client == "rdkafka_performance" else "load_gen/latency_gen (rdkafka crate) in place of rdkafka_performance")
                  + "; lean rows: fetch_client, latency_lean, produce_replay (our own, raw protocol)",
        "fanout_mode": fanout_mode(args.groups),
        "cpus": os.cpu_count(),
        "kernel": os.uname().release,
        "loadavg": f"{load0[0]:.2f}",
        "conditions": conditions,
        "cpu_busy_before_runs": busy,
        "pretouched_gib": pretouched[0],
        "elapsed_s": round(elapsed, 1),
        "params": params,
    }
    print_tables(summary)
    md = markdown(summary, meta, target_list)
    print("\n== issue 5 targets (reported, not asserted) ==")
    for t in target_list:
        met_by = f", {t['runs_met']} of {len(t['runs'])} runs met it" if t.get("runs") else ""
        print(f"  {'MET ' if t['met'] else 'MISS'} {t['target']}: {fmt_target(t['value'])} (want {t['want']}{met_by})")
    os.makedirs(args.results_dir, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%S") + ("-smoke" if args.smoke else "")
    json_path = os.path.join(args.results_dir, f"{stamp}.json")
    md_path = os.path.join(args.results_dir, f"{stamp}.md")
    with open(json_path, "w") as f:
        json.dump({"meta": meta, "summary": summary, "targets": target_list, "runs": runs}, f, indent=1)
    with open(md_path, "w") as f:
        f.write(md)
    print("\n" + md)
    print(f"results: {json_path}\nmarkdown: {md_path}\nbench took {elapsed:.0f} s")


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        CHILDREN.stop_all()
        print(f"bench failed: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        CHILDREN.stop_all()
        sys.exit(130)
