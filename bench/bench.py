#!/usr/bin/env python3
"""baseinit's benchmark: baseinit and its peers side by side, in one run.

Each init runs as PID 1 of a fresh PID namespace (unshare --user
--map-root-user --pid --fork --mount-proc) with the same workload: the same
service program (helpers/svc.c) in the same service directories. The harness
watches from outside the namespace, through /proc, so that what it measures
costs every init the same. `bench/run` builds and installs what this needs;
see docs/performance.md.

Like ripgrep's benchsuite this is a Python script: it is a developer's tool
that drives processes and writes a report, not part of what ships.
"""

import argparse
import atexit
import json
import os
import platform
import re
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD = HERE / "build"
SVC = BUILD / "svc"
CINIT = BUILD / "cinit"
FLOOD = BUILD / "flood"  # the output scenario's service (helpers/flood.c)
BASEINIT = BUILD / "baseinit"
STOP_CAP = 10.0  # what `docker stop` waits before SIGKILL
STOP_TIMEOUT = 2  # the stop timeout of the inits that have one (same for all)

# Every init, in the table's order. "single" inits run one child: a shell
# script that starts the services in the background and forwards SIGTERM to
# them (helpers/start.sh); they supervise nothing.
INITS = ["baseinit", "cinit", "tini", "dumb-init", "catatonit", "runit", "s6", "supervisord"]
SINGLE = {"cinit", "tini", "dumb-init", "catatonit"}
SUPERVISORS = {"baseinit", "baseinit-before", "runit", "s6", "supervisord"}

# With --baseline PATH, "baseinit-before" is a second baseinit binary (say,
# the previous main's) run and measured exactly as "baseinit" is, in the
# same run, right after it in the table's order: a change's before/after
# figures then come from one run, as its ratios against the peers do.
# Each baseinit init's binary, by name; main() adds the baseline's.
BEFORE = "baseinit-before"
BINARIES = {"baseinit": BASEINIT}


def now_ns():
    return time.monotonic_ns()  # CLOCK_MONOTONIC, the clock svc records with


# ---------------------------------------------------------------- /proc reading

def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def children(pid):
    return [int(p) for p in read(f"/proc/{pid}/task/{pid}/children").split()]


def state(pid):
    stat = read(f"/proc/{pid}/stat")
    end = stat.rfind(b")")
    return stat[end + 2:end + 3].decode() if end > 0 else ""


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def supervision_tree(init):
    """Every process of the namespace but the services (and what they fork)."""
    svc = str(SVC)
    out, todo = [], [init]
    while todo:
        p = todo.pop()
        if exe(p) == svc or state(p) == "Z":
            continue
        out.append(p)
        todo.extend(children(p))
    return out


def tree_stats(pids):
    """PSS, RSS (kB), context switches and CPU ns of a set of processes,
    summed over every thread (a thread's switches are its own)."""
    pss = rss = switches = cpu = 0
    for p in pids:
        for line in read(f"/proc/{p}/smaps_rollup").splitlines():
            if line.startswith(b"Pss:"):
                pss += int(line.split()[1])
            elif line.startswith(b"Rss:"):
                rss += int(line.split()[1])
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            for line in read(f"/proc/{p}/task/{t}/status").splitlines():
                if line.startswith((b"voluntary_ctxt_switches", b"nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
            sched = read(f"/proc/{p}/task/{t}/schedstat").split()
            if sched:
                cpu += int(sched[0])
    return {"pss_kb": pss, "rss_kb": rss, "switches": switches, "cpu_ns": cpu, "processes": len(pids)}


def host_pid(init, ns_pid):
    """The host pid of a process that knows itself as ns_pid."""
    for p in descendants(init):
        for line in read(f"/proc/{p}/status").splitlines():
            if line.startswith(b"NSpid:") and line.split()[-1] == str(ns_pid).encode():
                return p
    return None


def wait_exit(pid, timeout):
    """The CLOCK_MONOTONIC ns at which process `pid` (our child) exits, or
    None after `timeout` seconds."""
    fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if poller.poll(timeout * 1000):
            return now_ns()
        return None
    finally:
        os.close(fd)


# ---------------------------------------------------------------- the workload

class Events:
    """The services' event log: "<ns> <event> <name> <pid>" lines."""

    def __init__(self, path):
        self.path = path
        self.path.touch()

    def all(self):
        out = []
        for line in read(self.path).decode(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 4:
                out.append((int(parts[0]), parts[1], parts[2], int(parts[3])))
        return out

    def of(self, event, name=None):
        return [e for e in self.all() if e[1] == event and (name is None or e[2] == name)]

    def wait(self, event, count, timeout, name=None):
        deadline = time.monotonic() + timeout
        while True:
            found = self.of(event, name)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.001)


# Every run's directory stays until the benchmark ends, under one scratch
# directory removed then. Deleting them run by run left ext4 with thousands
# of recently deleted inodes near the next run's directory, which the inode
# allocator steps over one by one for minutes (it skips inodes freed less
# than 60-300 s ago): a new file there cost 0.3-0.9 ms of kernel CPU instead
# of 10-40 us (measured in the benchmark's namespace), and only an init that
# creates files at boot (baseinit's my_init environment export) paid for the
# harness's cleanup.
SCRATCH = None


def scratch():
    global SCRATCH
    if SCRATCH is None:
        SCRATCH = Path(tempfile.mkdtemp(prefix="baseinit-bench-"))
        atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)
    return SCRATCH


class Run:
    """One init as PID 1 of a fresh namespace, running the named services.

    With `flood` (an argv of helpers/flood.c, the output scenario's), each
    service runs that instead of svc, once (baseinit: `restart = "never"`;
    supervisord: `autorestart=false`, its stdout relayed to supervisord's
    own, `stdout_logfile=/dev/fd/1`), and `flags` are added to baseinit's
    command line (`--log-format json`, `--output inherit`)."""

    def __init__(self, init, services, extra_env=None, flood=None, flags=()):
        self.init_name = init
        self.flood = flood
        self.flags = list(flags)
        self.dir = Path(tempfile.mkdtemp(prefix=f"{init}-", dir=scratch()))
        self.sv = self.dir / "sv"
        self.sv.mkdir()
        self.events = Events(self.dir / "events")
        for name in services:
            d = self.sv / name
            d.mkdir()
            if flood:
                (d / "run").write_text("#!/bin/sh\nexec " + " ".join(map(shlex.quote, map(str, flood))) + "\n")
                (d / "run").chmod(0o755)
                if init in BINARIES:
                    (d / "service.toml").write_text('restart = "never"\n')
            else:
                (d / "run").symlink_to(SVC)
            if init == "s6":
                # s6-supervise's own stop timeout (ms), like the others' STOP_TIMEOUT.
                (d / "timeout-kill").write_text(f"{STOP_TIMEOUT * 1000}\n")
        self.services = services
        # What a container starts with (Docker sets PATH, HOSTNAME and HOME),
        # not the harness's own environment: baseinit writes every variable
        # to a file at boot, as my_init does.
        self.env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOSTNAME": "bench", "HOME": "/root",
                    "BENCH_EVENTS": str(self.events.path), **(extra_env or {})}
        self.argv = self._argv(init)

    def _argv(self, init):
        d = self.dir
        empty = d / "empty"
        empty.mkdir()
        if init in BINARIES:
            (d / "env").mkdir()
            return [str(BINARIES[init]), "--service-dir", str(self.sv), "--startup-dir", str(empty),
                    "--rc-local", str(d / "none"), "--env-dir", str(d / "env" / "container_environment"),
                    "--runtime-dir", str(d / "run"), "--pre-shutdown-dir", str(empty),
                    "--post-shutdown-dir", str(empty), "--stop-timeout", str(STOP_TIMEOUT), *self.flags]
        if init == "runit":
            return ["runsvdir", "-P", str(self.sv)]
        if init == "s6":
            return ["s6-svscan", str(self.sv)]
        if init == "supervisord":
            # With a flood, its own log stays off its stdout (silent): that
            # carries the programs' output alone, copied as it comes.
            conf = [
                "[supervisord]", "nodaemon=true", f"logfile={d}/supervisord.log",
                f"pidfile={d}/supervisord.pid", f"childlogdir={d}", "user=root",
                *(["silent=true"] if self.flood else []), "",
            ]
            output = (["stdout_logfile=/dev/fd/1", "stdout_logfile_maxbytes=0", "stderr_logfile=/dev/fd/2",
                       "stderr_logfile_maxbytes=0", "autorestart=false", "startsecs=0"] if self.flood
                      else ["stdout_logfile=NONE", "stderr_logfile=NONE"])
            for name in self.services:
                conf += [f"[program:{name}]", f"command={self.sv / name / 'run'}",
                         f"directory={self.sv / name}", f"stopwaitsecs={STOP_TIMEOUT}", *output, ""]
            (d / "supervisord.conf").write_text("\n".join(conf))
            return ["supervisord", "-c", str(d / "supervisord.conf")]
        script = [str(HERE / "helpers" / "start.sh"), str(self.sv)]
        return {
            "cinit": [str(CINIT), *script],
            "tini": ["tini", "--", *script],
            "dumb-init": ["dumb-init", *script],
            "catatonit": ["catatonit", "--", *script],
        }[init]

    def start(self, stdout=subprocess.DEVNULL):
        self.t0 = now_ns()
        self.proc = subprocess.Popen(
            ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", *self.argv],
            env=self.env, stdin=subprocess.DEVNULL, stdout=stdout,
            stderr=open(self.dir / "stderr", "wb"), start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            kids = children(self.proc.pid)
            if kids:
                self.pid = kids[0]
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.init_name} did not start: {read(self.dir / 'stderr')[-500:]!r}")
            time.sleep(0.0005)

    def stop(self, cap=STOP_CAP):
        """SIGTERM to PID 1; seconds until the namespace is gone (None: still
        there after `cap` seconds, then killed like `docker stop` would)."""
        t = now_ns()
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        # Not Popen.wait(timeout): it polls with sleeps that double from
        # 0.5 ms, which rounds every figure up to 1.5, 3.5, 7.5, 15.5… ms.
        # A pidfd becomes readable the moment unshare exits, which it does
        # as soon as its child, PID 1, is gone with the whole namespace.
        ended = wait_exit(self.proc.pid, cap)
        if ended is None:
            self.kill()
            return None
        self.proc.wait()
        return (ended - t) / 1e9

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def close(self):
        """Ends the run; its directory stays until the benchmark ends (see SCRATCH)."""
        if self.proc.poll() is None:
            self.kill()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- scenarios

def scenario_storm(init, n=5000):
    """5,000 double-forked orphans: time until none is left unreaped, the
    peak of unreaped ones, and zombies 5 s after the start."""
    with Run(init, ["storm"], {"BENCH_STORM": str(n)}) as run:
        start = run.events.wait("start", 1, 10)
        if not start:
            return None
        t_start = start[0][0]
        peak, cleared, at5 = 0, None, None
        while True:
            t = now_ns()
            zombies = sum(1 for c in children(run.pid) if state(c) == "Z")
            peak = max(peak, zombies)
            done = run.events.of("stormdone")
            if done and zombies == 0 and cleared is None and t > done[0][0]:
                cleared = (t - t_start) / 1e6
            if t - t_start >= 5e9:
                at5 = zombies
                break
            time.sleep(0.0002)
        run.stop()
        storm_ms = (done[0][0] - t_start) / 1e6 if done else None
        return {"all_reaped_ms": cleared, "peak_unreaped": peak, "zombies_at_5s": at5, "storm_ms": storm_ms,
                "lag_ms": cleared - storm_ms if cleared is not None and storm_ms is not None else None}


def scenario_burst(init, n=1000):
    """1,000 live orphans of PID 1 exit at once: time until all are reaped."""
    with Run(init, ["burst"], {"BENCH_BURST": str(n)}) as run:
        ready = run.events.wait("burstready", 1, 30)
        if not ready:
            return None
        burst = host_pid(run.pid, ready[0][3])
        orphans = {c for c in children(run.pid) if exe(c) == str(SVC) and c != burst}
        if len(orphans) < n:
            return {"error": f"only {len(orphans)} orphans are children of PID 1"}
        os.kill(burst, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while orphans & set(children(run.pid)):
            if time.monotonic() > deadline:
                break
        t_end = now_ns()
        release = run.events.wait("release", 1, 1)
        run.stop()
        if not release:
            return None
        return {"reap_all_ms": (t_end - release[0][0]) / 1e6}


def scenario_start(init, n, idle=False):
    """n services: time from the harness starting the namespace (unshare,
    then PID 1's exec) until all have started, then the
    supervision tree's memory (and, with idle, its switches and CPU over a
    5 s idle window), then a graceful stop."""
    names = [f"svc-{i:03}" for i in range(n)]
    with Run(init, names) as run:
        starts = run.events.wait("start", n, 60)
        if len(starts) < n:
            return {"error": f"{len(starts)} of {n} started in 60 s"}
        out = {"startup_ms": (max(e[0] for e in starts) - run.t0) / 1e6}
        time.sleep(1.0)
        tree = supervision_tree(run.pid)
        before = tree_stats(tree)
        if idle:
            time.sleep(5.0)
            after = tree_stats(supervision_tree(run.pid))
            out["idle_switches"] = after["switches"] - before["switches"]
            out["idle_cpu_ms"] = (after["cpu_ns"] - before["cpu_ns"]) / 1e6
            before = after
        out.update(pss_kb=before["pss_kb"], rss_kb=before["rss_kb"], tree_processes=before["processes"])
        if idle and n == 3 and init in SUPERVISORS:
            # Memory once the supervisor has done some work: one service is
            # SIGKILLed and restarted. (baseinit drops its boot-only code
            # pages once after boot; what a restart touches comes back.)
            victim = next(p for p in descendants(run.pid) if exe(p) == str(SVC))
            os.kill(victim, signal.SIGKILL)
            if len(run.events.wait("start", n + 1, 5)) > n:
                time.sleep(1.0)
                out["pss_after_restart_kb"] = tree_stats(supervision_tree(run.pid))["pss_kb"]
        run.stop()
        return out


def scenario_stop(init, stubborn=False):
    """SIGTERM to PID 1 until the namespace is gone; services that got their
    stop signal (graceful) versus those the kernel killed."""
    names = ["svc-a", "svc-b", "svc-c"] + (["stubborn-d"] if stubborn else [])
    with Run(init, names) as run:
        if len(run.events.wait("start", len(names), 30)) < len(names):
            return None
        time.sleep(0.3)
        took = run.stop()
        graceful = len({e[2] for e in run.events.of("term")})
        out = {"stop_ms": None if took is None else took * 1000, "graceful": graceful,
               "services": 3, "capped": took is None}
        if stubborn:
            out["after_timeout_ms"] = None if took is None else took * 1000 - STOP_TIMEOUT * 1000
        return out


def scenario_restart(init):
    """A service that ran 2 s and exits 1: time from its exit to its next
    start. A service that exits 1 at once: the intervals between its starts."""
    out = {}
    with Run(init, ["runs2s"]) as run:
        starts = run.events.wait("start", 2, 6)
        exits = run.events.of("exit")
        if len(starts) >= 2 and exits:
            out["first_restart_ms"] = (starts[1][0] - exits[0][0]) / 1e6
        else:
            out["first_restart_ms"] = None
        run.stop()
    with Run(init, ["crash"]) as run:
        starts = run.events.wait("start", 7, 8)
        out["crash_intervals_ms"] = [round((b[0] - a[0]) / 1e6, 1) for a, b in zip(starts, starts[1:])]
        out["crash_starts_in_8s"] = len(starts)
        run.stop()
    return out


def scenario_docker(runs):
    """`docker stop` of the example image, and the images' sizes."""
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return {"error": "no Docker engine answers"}
    images = {}
    for image in ["baseinit-local/debian:bookworm", "baseinit/debian:test", "baseinit/example:test", "baseinit/scratch:test"]:
        r = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image], capture_output=True, text=True)
        if r.returncode == 0:
            images[image] = int(r.stdout.strip())
    if "baseinit/example:test" not in images:
        return {"error": "image baseinit/example is not built (images/build.sh)", "image_bytes": images}
    stops = []
    for _ in range(runs):
        cid = subprocess.run(["docker", "run", "-d", "--network", "none", "baseinit/example:test"],
                             capture_output=True, text=True, check=True).stdout.strip()
        time.sleep(3)
        t = now_ns()
        subprocess.run(["docker", "stop", cid], capture_output=True, check=True)
        stops.append((now_ns() - t) / 1e6)
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    return {"docker_stop_ms": stops, "image_bytes": images}


# ---------------------------------------------------------------- service output

# The output scenario (issue 19): one service's stdout relayed to a pipe the
# harness reads as fast as it can, through each of these paths, all in one
# run. Every path runs the same writer (helpers/flood.c), gated: it starts
# writing when the harness signals it, once the relay has been measured idle.
OUTPUT_PATHS = {
    "raw": "raw pipe",                 # the writer straight into the harness's pipe: the ceiling
    "sed": "sed",                      # flood | sed 's/^/NAME | /', one sed per service
    "s6-log": "s6-log",                # flood | s6-log -b 1: a line relay to stdout, no prefix
    "supervisord": "supervisord",      # PID 1, stdout_logfile=/dev/fd/1: copies bytes, no prefix
    "prefix": "baseinit prefix",       # PID 1, the default --output prefix
    "json": "baseinit json",           # PID 1, --log-format json
    "inherit": "baseinit inherit",     # PID 1, --output inherit: the service writes to the pipe itself
}
BASEINIT_FLAGS = {"prefix": [], "json": ["--log-format", "json"], "inherit": ["--output", "inherit"]}
# The lone-line run: this many lines, one every TICK_MS ms.
TICKS, TICK_MS = 200, 10
TICK = re.compile(rb"t=(\d+);")
SETTLE = 1.0  # s between the writers being ready and the gate: the relay idle (baseinit's boot over)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def output_workloads(quick):
    """(services, bytes per service, line length) of each flood."""
    mb = 10 ** 6
    if quick:
        return {"one": (1, 20 * mb, 80), "ten": (10, 2 * mb, 80), "short": (1, 5 * mb, 20)}
    return {"one": (1, 200 * mb, 80), "ten": (10, 20 * mb, 80), "short": (1, 50 * mb, 20)}


def workload_label(services, size, length):
    each = " each" if services > 1 else ""
    who = "one service" if services == 1 else f"{services} services"
    return f"{who}, {size / 1e6:g} MB{each} of {length}-byte lines"


def cpu_snapshot(pids):
    """The CPU time of processes so far: utime + stime from /proc/PID/stat
    (every thread, dead ones included, in clock ticks) and each thread's
    run time in ns (/proc/PID/task/TID/schedstat)."""
    ticks, tasks = 0, {}
    for p in pids:
        stat = read(f"/proc/{p}/stat")
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) < 13:
            return None
        ticks += int(fields[11]) + int(fields[12])
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                sched = read(f"/proc/{p}/task/{t}/schedstat").split()
                if sched:
                    tasks[(p, t)] = int(sched[0])
        except OSError:
            pass
    return {"ticks": ticks, "tasks": tasks}


def cpu_between(a, b):
    """Seconds of CPU between two snapshots: the threads' run times in ns
    when the same threads ran throughout, else utime + stime (whose unit, a
    clock tick, is 10 ms)."""
    if a is None or b is None:
        return None
    if a["tasks"] and a["tasks"].keys() == b["tasks"].keys():
        return sum(b["tasks"][k] - a["tasks"][k] for k in a["tasks"]) / 1e9
    return (b["ticks"] - a["ticks"]) / CLK_TCK


def status_kb(pids, key):
    """A /proc/PID/status figure (VmRSS, VmHWM), summed; None if one is missing."""
    total = 0
    for p in pids:
        for line in read(f"/proc/{p}/status").splitlines():
            if line.startswith(key + b":"):
                total += int(line.split()[1])
                break
        else:
            return None
    return total


def reset_peak(pids):
    """Resets VmHWM to the current RSS (clear_refs 5, Linux 4.0): the peak
    measured after is the flood's, not boot's. False when it cannot."""
    try:
        for p in pids:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        return True
    except OSError:
        return False


class PeakWatch:
    """The peak RSS (VmHWM) of processes, read at most every 10 ms while
    they run: the last reading of one that ends (sed, s6-log) is kept."""

    def __init__(self, pids):
        self.pids, self.peak, self.next = pids, {}, 0

    def sample(self, t=None, force=False):
        if not force and t < self.next:
            return
        self.next = (t or now_ns()) + 10_000_000
        for p in self.pids:
            v = status_kb([p], b"VmHWM")
            if v is not None:
                self.peak[p] = max(self.peak.get(p, 0), v)

    def total(self):
        return sum(self.peak.values()) if len(self.peak) == len(self.pids) else None


def drain(fd, lines, timeout, ticks=False, watch=None):
    """Reads `fd` as fast as it can (1 MiB reads) until `lines` newlines
    have arrived, sampling `watch` (a PeakWatch) on the way. Returns the ns
    of the first byte's arrival, of the last newline's, and with `ticks`
    the latency in ms of every line that carries its write time
    ("t=<ns>;"): its arrival less that time."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    seen, first, t, partial, latencies = 0, None, None, b"", []
    deadline = time.monotonic() + timeout
    while seen < lines:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{seen} of {lines} lines in {timeout:.0f} s")
        if not poller.poll(1000):
            continue
        data = os.read(fd, 1 << 20)
        t = now_ns()
        if not data:
            raise EOFError(f"the output ended after {seen} of {lines} lines")
        if first is None:
            first = t
        seen += data.count(b"\n")
        if watch:
            watch.sample(t)
        if ticks:
            partial += data
            *done, partial = partial.split(b"\n")
            for line in done:
                m = TICK.search(line)
                if m:
                    latencies.append((t - int(m.group(1))) / 1e6)
    return first, t, latencies


def scenario_output(path, services, size, length, ticks=False):
    """`services` writers through one path: each writes `size` bytes of
    `length`-byte lines (with ticks: TICKS lone lines carrying their write
    time, TICK_MS apart). From the first byte's arrival to the last line's:
    the rate of the services' bytes, the relay's CPU and its peak RSS over
    its RSS idle (just before the gate)."""
    names = ["flood"] if services == 1 else [f"flood-{i}" for i in range(services)]
    argv = [str(FLOOD), "--ticks", str(TICKS), str(TICK_MS)] if ticks else [str(FLOOD), str(size), str(length)]
    lines = services * (TICKS if ticks else size // length)
    timeout = 30 + (TICKS * TICK_MS / 1000 if ticks else services * size / 1e6)  # at least 1 MB/s
    procs, relays, run, fd = [], [], None, None
    try:
        if path in ("raw", "sed", "s6-log"):
            # The writers (and their relays) as plain processes: nothing of
            # theirs depends on being in a namespace.
            events = Events(Path(tempfile.mkdtemp(prefix=f"{path}-", dir=scratch())) / "events")
            fd, w = os.pipe()
            sed = "-u" if ticks else None  # plain sed holds lines until 4 kB or EOF: no lone line would arrive
            for name in names:
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "BENCH_EVENTS": str(events.path),
                       "BENCH_NAME": name}
                if path == "raw":
                    procs.append(subprocess.Popen(argv, stdout=w, stdin=subprocess.DEVNULL, env=env))
                    continue
                writer = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
                relay = ["sed", *([sed] if sed else []), f"s/^/{name} | /"] if path == "sed" else ["s6-log", "-b", "1"]
                relays.append(subprocess.Popen(relay, stdin=writer.stdout, stdout=w))
                writer.stdout.close()
                procs.append(writer)
            os.close(w)
            writers = [p.pid for p in procs]
            if len(events.wait("ready", services, 10)) < services:
                raise RuntimeError("the writers did not start")
            relay_pids = [r.pid for r in relays]
        else:
            init = "supervisord" if path == "supervisord" else "baseinit"
            run = Run(init, names, flood=argv, flags=BASEINIT_FLAGS.get(path, ()))
            run.start(stdout=subprocess.PIPE)
            fd = run.proc.stdout.fileno()
            if len(run.events.wait("ready", services, 20)) < services:
                raise RuntimeError(f"{len(run.events.of('ready'))} of {services} writers started: "
                                   f"{read(run.dir / 'stderr')[-300:]!r}")
            writers = [p for p in descendants(run.pid) if exe(p) == str(FLOOD)]
            if len(writers) < services:
                raise RuntimeError(f"{len(writers)} of {services} writers found")
            relay_pids = [run.pid]
        time.sleep(SETTLE)
        idle_kb = status_kb(relay_pids, b"VmRSS") if relay_pids else None
        cpu0 = cpu_snapshot(relay_pids)
        peak_reset = reset_peak(relay_pids)
        watch = PeakWatch(relay_pids)
        for p in writers:
            os.kill(p, signal.SIGUSR1)
        try:
            first, last, latencies = drain(fd, lines, timeout, ticks, watch)
        except Exception:
            # Whatever still writes gets EPIPE rather than blocking the stop.
            if run:
                run.proc.stdout.close()
            else:
                os.close(fd)
            fd = None
            raise
        out = {}
        watch.sample(force=True)
        if relays:
            # sed and s6-log end with their writers: their CPU from their
            # exit's account (their ru_maxrss is no use: it keeps the
            # harness's RSS from before the exec).
            cpu = -sum(cpu0["tasks"].values()) / 1e9 if cpu0 else None
            for r in relays:
                _, _, usage = os.wait4(r.pid, 0)
                r.returncode = 0
                if cpu is not None:
                    cpu += usage.ru_utime + usage.ru_stime
        elif relay_pids:
            cpu = cpu_between(cpu0, cpu_snapshot(relay_pids))
        peak_kb = watch.total()
        if ticks:
            latencies.sort()
            return {"median_ms": statistics.median(latencies),
                    "p99_ms": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
                    "lines": len(latencies)}
        took = (last - first) / 1e9
        service_bytes = lines * length
        out.update(mb_s=service_bytes / took / 1e6, lines_s=lines / took, seconds=took)
        if relay_pids:
            out.update(cpu_s_per_gb=cpu / (service_bytes / 1e9) if cpu is not None else None, cpu_s=cpu,
                       idle_rss_kb=idle_kb, peak_rss_kb=peak_kb,
                       rss_growth_kb=peak_kb - idle_kb if peak_kb is not None and idle_kb is not None else None,
                       peak_since_gate=peak_reset)
        return out
    finally:
        if run and not hasattr(run, "pid"):  # it never started
            if hasattr(run, "proc") and run.proc.poll() is None:
                os.killpg(run.proc.pid, signal.SIGKILL)
                run.proc.wait()
        elif run:
            if run.proc.poll() is None:
                run.stop()
            run.close()
        else:
            if fd is not None:
                os.close(fd)
            for p in procs + relays:
                if p.returncode is None:
                    try:
                        p.kill()
                    except ProcessLookupError:
                        pass
                    try:
                        p.wait(timeout=10)
                    except (subprocess.TimeoutExpired, ChildProcessError):
                        pass


def output_paths():
    """The paths whose programs are here (sed, s6-log, supervisord)."""
    need = {"sed": "sed", "s6-log": "s6-log", "supervisord": "supervisord"}
    return [p for p in OUTPUT_PATHS if p not in need or shutil.which(need[p])]


def measure_output(runs, quick):
    """Every workload and the lone-line run through every path, `runs`
    times each, going round the paths."""
    say = lambda what: print(f"== {what}", file=sys.stderr, flush=True)
    paths = output_paths()
    workloads = output_workloads(quick)
    out = {"runs": runs, "workloads": {k: {"services": n, "bytes_per_service": size, "line_bytes": length,
                                           "label": workload_label(n, size, length)}
                                       for k, (n, size, length) in workloads.items()},
           "ticks": {"lines": TICKS, "interval_ms": TICK_MS},
           "labels": {p: OUTPUT_PATHS[p] for p in paths},
           "paths": {p: {} for p in paths}}
    keys = ["mb_s", "lines_s", "seconds", "cpu_s_per_gb", "cpu_s", "idle_rss_kb", "peak_rss_kb", "rss_growth_kb"]
    for key, (n, size, length) in workloads.items():
        say(f"output: {workload_label(n, size, length)}")
        for path, res in rounds(paths, runs, lambda path, _: scenario_output(path, n, size, length)).items():
            s = out["paths"][path][key] = {k: collect(res, k) for k in keys}
            s["peak_since_gate"] = all(x.get("peak_since_gate", True) for x in res if x and "error" not in x)
            errors = [x["error"] for x in res if x and "error" in x]
            if errors:
                s["errors"] = errors
            print(f"   {OUTPUT_PATHS[path]}: " + (f"{s['mb_s']['median']:.0f} MB/s" if s["mb_s"] else f"failed: {errors}"),
                  file=sys.stderr, flush=True)
    say(f"output: a lone line every {TICK_MS} ms, {TICKS} lines")
    for path, res in rounds(paths, runs, lambda path, _: scenario_output(path, 1, 0, 0, ticks=True)).items():
        s = out["paths"][path]["latency"] = {k: collect(res, k) for k in ["median_ms", "p99_ms"]}
        errors = [x["error"] for x in res if x and "error" in x]
        if errors:
            s["errors"] = errors
        print(f"   {OUTPUT_PATHS[path]}: " + (f"median {s['median_ms']['median']:.3f} ms" if s["median_ms"] else f"failed: {errors}"),
              file=sys.stderr, flush=True)
    return out


# ---------------------------------------------------------------- svlogd

# The svlogd scenario (issue 21): one writer's lines (helpers/flood.c, gated
# as in the output scenario) piped into Debian's svlogd and into baseinit's
# svlogd applet, each `-tt` into a log directory of its own with `config`
# `s1000000` (rotating about every MB, keeping 10 files), going round the
# two in one run. Both run with their default options (runit's 1024-byte
# buffer, baseinit's 64 KiB).
SVLOGD_PATHS = {"runit": "runit svlogd", "baseinit": "baseinit svlogd"}


def svlogd_workload(quick):
    """(bytes, line length) of the flood."""
    return (20 if quick else 200) * 10 ** 6, 80


def scenario_svlogd(path, size, length):
    """`size` bytes of `length`-byte lines through one svlogd, from the gate
    to svlogd's exit (its input's end: every line written, the directory
    closed): the rate of the writer's bytes, svlogd's CPU (its own rusage)
    and what it left (`current`'s size, the rotated files kept)."""
    top = Path(tempfile.mkdtemp(prefix=f"svlogd-{path}-", dir=scratch()))
    logdir = top / "main"
    logdir.mkdir()
    (logdir / "config").write_text("s1000000\n")
    events = Events(top / "events")
    argv = ["svlogd"] if path == "runit" else [str(BASEINIT), "svlogd"]
    r, w = os.pipe()
    with open(top / "stderr", "wb") as err:
        svlogd = subprocess.Popen([*argv, "-tt", str(logdir)], stdin=r, stdout=subprocess.DEVNULL, stderr=err)
    os.close(r)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "BENCH_EVENTS": str(events.path), "BENCH_NAME": "flood"}
    writer = subprocess.Popen([str(FLOOD), str(size), str(length)], stdout=w, stdin=subprocess.DEVNULL, env=env)
    os.close(w)
    try:
        if not events.wait("ready", 1, 10):
            raise RuntimeError("the writer did not start")
        time.sleep(SETTLE / 5)
        first = now_ns()
        os.kill(writer.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 30 + size / 1e6  # at least 1 MB/s
        while True:
            pid, status, usage = os.wait4(svlogd.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path}: svlogd still running after {deadline:.0f} s")
            time.sleep(0.0005)
        last = now_ns()
        svlogd.returncode = os.waitstatus_to_exitcode(status)
        writer.wait(timeout=10)
        if svlogd.returncode != 0 or writer.returncode != 0:
            raise RuntimeError(f"{path}: svlogd exited {svlogd.returncode}, the writer {writer.returncode}: "
                               f"{read(top / 'stderr')[-300:]!r}")
        rotated = [f for f in logdir.iterdir() if f.name.startswith("@")]
        took = (last - first) / 1e9
        cpu = usage.ru_utime + usage.ru_stime
        service_bytes = size // length * length
        return {"mb_s": service_bytes / took / 1e6, "seconds": took, "cpu_s": cpu,
                "cpu_s_per_gb": cpu / (service_bytes / 1e9),
                "current_bytes": (logdir / "current").stat().st_size, "rotated": len(rotated)}
    finally:
        for p in (writer, svlogd):
            if p.returncode is None:
                p.kill()
                p.wait()


def measure_svlogd(runs, quick):
    """The svlogd scenario, `runs` times each, going round the two."""
    size, length = svlogd_workload(quick)
    paths = [p for p in SVLOGD_PATHS if p != "runit" or shutil.which("svlogd")]
    out = {"runs": runs, "bytes": size, "line_bytes": length, "labels": {p: SVLOGD_PATHS[p] for p in paths},
           "paths": {}}
    print(f"== svlogd: {size / 1e6:g} MB of {length}-byte lines, -tt, s1000000", file=sys.stderr, flush=True)
    keys = ["mb_s", "seconds", "cpu_s", "cpu_s_per_gb", "current_bytes", "rotated"]
    for path, res in rounds(paths, runs, lambda path, _: scenario_svlogd(path, size, length)).items():
        s = out["paths"][path] = {k: collect(res, k) for k in keys}
        errors = [x["error"] for x in res if x and "error" in x]
        if errors:
            s["errors"] = errors
        print(f"   {SVLOGD_PATHS[path]}: " + (f"{s['mb_s']['median']:.0f} MB/s, {s['cpu_s']['median']:.2f} s CPU"
                                               if s["mb_s"] else f"failed: {errors}"), file=sys.stderr, flush=True)
    return out


def svlogd_table(o):
    """The svlogd scenario's table: a column per svlogd."""
    p = o["paths"]
    paths = list(p)
    lines = [f"**svlogd**: {o['bytes'] / 1e6:g} MB of {o['line_bytes']}-byte lines from one writer through "
             f"`svlogd -tt` into a log directory (`config`: `s1000000`), {o['runs']} run"
             f"{'s' if o['runs'] != 1 else ''}: median (min–max). Timed from the writer's gate to svlogd's exit; "
             "MB/s of the writer's bytes; svlogd's own CPU.",
             "", "|  | " + " | ".join(o["labels"].get(x, x) for x in paths) + " |", "|---|" + "---|" * len(paths)]

    def row(label, digits, key):
        lines.append(f"| {label} | " + " | ".join(fmt(p[x].get(key), digits) for x in paths) + " |")

    row("MB/s", 1, "mb_s")
    row("CPU, s", 2, "cpu_s")
    row("CPU, s per GB", 2, "cpu_s_per_gb")
    row("rotated files kept", 0, "rotated")
    row("`current` at the end, bytes", 0, "current_bytes")
    errors = [f"{o['labels'].get(x, x)}: {e}" for x in paths for e in (p[x].get("errors") or [])]
    if errors:
        lines += ["", "Failed runs: " + "; ".join(errors) + "."]
    return lines


def svlogd_targets(report):
    """Issue 21's targets for the svlogd applet, each a ratio in the same run."""
    o = report.get("svlogd")
    if not o:
        return []
    p = o["paths"]

    def med(path, key):
        v = p.get(path, {}).get(key)
        return v["median"] if v else None

    out = []
    mine, theirs = med("baseinit", "mb_s"), med("runit", "mb_s")
    if mine is None or not theirs:
        out.append(("svlogd at least as fast as runit's", "not measured", ""))
    else:
        out.append(("svlogd at least as fast as runit's", "met" if mine >= theirs else "not met",
                    f"{mine:.1f} MB/s vs {theirs:.1f} MB/s: {mine / theirs:.2f}×"))
    mine, theirs = med("baseinit", "cpu_s"), med("runit", "cpu_s")
    if mine is not None and theirs:
        out.append(("svlogd CPU no more than runit's", "met" if mine <= theirs else "not met",
                    f"{mine:.2f} s vs {theirs:.2f} s: {mine / theirs:.2f}×"))
    sizes = {path: (med(path, "current_bytes"), med(path, "rotated")) for path in p}
    if len(sizes) == 2:
        same = len(set(sizes.values())) == 1
        out.append(("svlogd leaves the same files as runit's (current's size, rotated files kept)",
                    "met" if same else "not met", ", ".join(f"{k}: {v[0]:.0f} B, {v[1]:.0f} files"
                                                           for k, v in sizes.items() if v[0] is not None)))
    return out


# ---------------------------------------------------------------- syslog

# The syslog scenario (issue 21): baseinit as PID 1 with --syslog, and a
# small C sender (helpers/syslogflood.c: glibc's format, one blocking send
# each, as syslog(3) does) at increasing rates, then as fast as it can,
# while the harness reads baseinit's stdout as fast as it can; then as fast
# as it can again with stdout read slowly, where the relay must drop and
# count rather than grow or hold the sender up. A blocking sender is never
# refused: at full speed it waits for the relay (the kernel queues only
# net.unix.max_dgram_qlen datagrams), so its rate there is the relay's.
SYSLOGFLOOD = BUILD / "syslogflood"
SYSLOG_LEN = 100  # bytes per datagram, header included
SYSLOG_RATES = [25_000, 50_000, 100_000, 200_000, 400_000, 0]  # messages/s; 0: as fast as it can
SYSLOG_SECONDS = 2  # how long each paced run sends
SYSLOG_FULL = 1_000_000  # messages of a run as fast as it can
SLOW_READ = (64 * 1024, 0.1)  # the slow reader: at most this many bytes every this many seconds


def baseinit_status(run):
    """`baseinit status --json` of a run, or None while it does not answer."""
    r = subprocess.run([str(BINARIES[run.init_name]), "status", "--json", "--runtime-dir", str(run.dir / "run")],
                       capture_output=True, text=True, timeout=30)
    return json.loads(r.stdout) if r.returncode == 0 else None


def scenario_syslog(rate, count, slow=False):
    """`count` messages at `rate` per second (0: as fast as the sender can)
    to baseinit's syslog socket. From the sender's first message to the last
    line's arrival: the rate the sender achieved, what baseinit received,
    dropped and relayed, PID 1's CPU per message and its peak RSS over its
    RSS idle (after one message went through: the relay's code paged in)."""
    sock = Path(tempfile.mkdtemp(prefix="syslog-", dir=scratch())) / "log.sock"
    run = Run("baseinit", ["svc"], flags=["--syslog", "--syslog-socket", str(sock)])
    try:
        run.start(stdout=subprocess.PIPE)
        fd = run.proc.stdout.fileno()
        deadline = time.monotonic() + 10
        while not (sock.exists() and baseinit_status(run)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no syslog socket: {read(run.dir / 'stderr')[-300:]!r}")
            time.sleep(0.01)
        rss_before = status_kb([run.pid], b"VmRSS")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as warm:
            warm.sendto(b"<14>warm: up", str(sock))
        drain(fd, 1, 10)
        time.sleep(SETTLE)
        idle_kb = status_kb([run.pid], b"VmRSS")
        cpu0 = cpu_snapshot([run.pid])
        peak_reset = reset_peak([run.pid])
        watch = PeakWatch([run.pid])
        sender = subprocess.Popen([str(SYSLOGFLOOD), str(sock), str(count), str(rate), str(SYSLOG_LEN)],
                                  stdout=subprocess.PIPE, text=True)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        lines, done, final, asked = 1, None, None, 0.0  # the warm-up line
        deadline = time.monotonic() + 60 + count / 20_000
        while final is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{lines} lines; sender: {done}")
            if poller.poll(20):
                data = os.read(fd, SLOW_READ[0] if slow else 1 << 20)
                if not data:
                    raise EOFError(f"baseinit's output ended after {lines} lines")
                lines += data.count(b"\n")
                watch.sample(now_ns())
                if slow:
                    time.sleep(SLOW_READ[1])
            if done is None and sender.poll() is not None:
                f = sender.stdout.read().split()
                done = {"sent": int(f[1]), "refused": int(f[3]), "seconds": float(f[5])}
            if done is not None and time.monotonic() >= asked + 0.05:
                asked = time.monotonic()
                s = (baseinit_status(run) or {}).get("syslog") or {}
                if s.get("received") == done["sent"] + 1:
                    slow = False  # everything arrived: the rest is read as fast as it comes
                    if lines >= s["received"] - s["dropped"]:
                        final = s
        watch.sample(force=True)
        cpu = cpu_between(cpu0, cpu_snapshot([run.pid]))
        sent, peak_kb = done["sent"], watch.total()
        return {"msgs_s": sent / done["seconds"], "sent": sent, "refused": done["refused"],
                "dropped": final["dropped"], "relayed": lines - 1,
                "cpu_us_per_msg": cpu / sent * 1e6 if cpu is not None and sent else None,
                "rss_before_kb": rss_before, "idle_rss_kb": idle_kb, "peak_rss_kb": peak_kb,
                "rss_growth_kb": peak_kb - idle_kb if peak_kb is not None and idle_kb is not None else None,
                "peak_since_gate": peak_reset}
    finally:
        if hasattr(run, "pid"):
            if run.proc.poll() is None:
                run.stop()
            run.close()
        elif hasattr(run, "proc") and run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait()


def measure_syslog(runs, quick):
    """Each rate, then full speed with a slow stdout, `runs` times each."""
    say = lambda what: print(f"== {what}", file=sys.stderr, flush=True)
    seconds = 1 if quick else SYSLOG_SECONDS
    full = SYSLOG_FULL // 5 if quick else SYSLOG_FULL
    cases = {(f"{r // 1000}k" if r else "full"): (r, r * seconds if r else full, False) for r in SYSLOG_RATES}
    cases["full-slow"] = (0, full, True)
    keys = ["msgs_s", "sent", "refused", "dropped", "relayed", "cpu_us_per_msg", "rss_before_kb", "idle_rss_kb",
            "peak_rss_kb", "rss_growth_kb"]
    out = {"runs": runs, "length": SYSLOG_LEN, "slow_read": {"bytes": SLOW_READ[0], "every_s": SLOW_READ[1]},
           "cases": {}}
    for name, (rate, count, slow) in cases.items():
        what = f"{rate:,}/s" if rate else "as fast as it can"
        say(f"syslog: {count:,} messages, {what}{', stdout read slowly' if slow else ''}")
        res = [attempt(scenario_syslog, rate, count, slow) for _ in range(runs)]
        s = out["cases"][name] = {k: collect(res, k) for k in keys}
        s.update(rate=rate, count=count, slow=slow)
        errors = [x["error"] for x in res if x and "error" in x]
        if errors:
            s["errors"] = errors
        print("   " + (f"{s['msgs_s']['median']:,.0f} msgs/s, {s['dropped']['median']:,.0f} dropped, "
                       f"peak RSS +{s['rss_growth_kb']['median']:.0f} kB" if s["msgs_s"] else f"failed: {errors}"),
              file=sys.stderr, flush=True)
    return out


def syslog_table(o):
    """The syslog scenario's table: a column per case."""
    cases = o["cases"]
    names = list(cases)
    label = {n: ("as fast as it can" if not c["rate"] else f"{c['rate']:,}/s")
             + (", slow stdout" if c["slow"] else "") for n, c in cases.items()}
    lines = [f"**syslog** (`--syslog`): a C sender (glibc's format, {o['length']}-byte datagrams, one blocking "
             f"send each, as syslog(3)) at each rate, baseinit's stdout read as fast as the harness can (slow "
             f"stdout: {o['slow_read']['bytes'] // 1024} KiB every {o['slow_read']['every_s'] * 1000:.0f} ms), "
             f"{o['runs']} run{'s' if o['runs'] != 1 else ''}: median (min–max). The sender's rate is what the "
             "relay took: a blocking sender waits when the socket's queue is full. RSS of PID 1 over its RSS idle "
             "after one message went through.",
             "", "|  | " + " | ".join(label[n] for n in names) + " |", "|---|" + "---|" * len(names)]

    def row(text, digits, key, scale=1):
        cells = []
        for n in names:
            v = cases[n].get(key)
            if v and scale != 1:
                v = {k: (w / scale if k != "n" else w) for k, w in v.items()}
            cells.append(fmt(v, digits))
        lines.append(f"| {text} | " + " | ".join(cells) + " |")

    row("messages sent", 0, "sent")
    row("thousand messages/s (the sender's)", 1, "msgs_s", 1000)
    row("dropped", 0, "dropped")
    row("relayed", 0, "relayed")
    row("PID 1 CPU per message, µs", 2, "cpu_us_per_msg")
    row("PID 1 RSS idle, kB", 0, "idle_rss_kb")
    row("PID 1 peak RSS over idle, kB", 0, "rss_growth_kb")
    errors = [f"{label[n]}: {e}" for n in names for e in (cases[n].get("errors") or [])]
    if errors:
        lines += ["", "Failed runs: " + "; ".join(errors) + "."]
    return lines


def syslog_targets(report):
    """Issue 21's targets for the syslog relay."""
    o = report.get("syslog")
    if not o:
        return []
    cases = o["cases"]
    med = lambda c, k: (cases.get(c, {}).get(k) or {}).get("median")
    out = []
    clean = [(c["rate"], med(n, "msgs_s")) for n, c in cases.items()
             if not c["slow"] and med(n, "dropped") == 0 and med(n, "msgs_s")]
    best = max(clean, key=lambda x: x[1], default=None)
    out.append(("syslog: messages/s relayed with no drop (stdout read fast)", "measured" if best else "not measured",
                f"{best[1]:,.0f} msgs/s" if best else ""))
    growth = [(med(n, "rss_growth_kb"), n) for n in cases if med(n, "rss_growth_kb") is not None]
    if growth:
        kb, name = max(growth)
        out.append(("syslog: PID 1 peak RSS within 2 MB of idle under a flood", "met" if kb <= 2048 else "not met",
                    f"{kb:.0f} kB over idle at most ({name})"))
    slow = cases.get("full-slow")
    if slow and med("full-slow", "dropped") is not None:
        kept = med("full-slow", "relayed") + med("full-slow", "dropped") == med("full-slow", "sent")
        out.append(("syslog: a slow stdout drops and counts (relayed + dropped = sent)", "met" if kept else "not met",
                    f"{med('full-slow', 'dropped'):,.0f} dropped of {med('full-slow', 'sent'):,.0f}"))
    return out


# ---------------------------------------------------------------- summary

def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def attempt(fn, *args):
    """One run of a scenario; a peer that fails it is reported, not fatal."""
    try:
        return fn(*args)
    except Exception as e:
        return {"error": str(e)}


def collect(results, key):
    return summary([r.get(key) for r in results if isinstance(r, dict)])


def rounds(inits, k, run):
    """`run(init, j)` for j in 0..k, going round the inits (a, b, c, a, b,
    c, ...) rather than all of a's runs first: a slow spell of the host then
    falls on every init alike, where in blocks it fell on one init's figures
    only (the targets are ratios between inits taken in one run)."""
    results = {init: [] for init in inits}
    for j in range(k):
        for init in inits:
            results[init].append(attempt(run, init, j))
    return results


# The scenarios of the targets that fall close to their limit (a ratio
# near 1 between baseinit and a peer: the burst against the C loop, the
# 20-service startup against tini, the stop against dumb-init) run this
# many times as many repetitions: with five, their medians were seen to
# cross the limit and back between runs an hour apart.
CLOSE_CALL = 3


# The programs each init runs as, for `cold_page_cache`.
PROGRAMS = {
    "tini": ["tini"], "dumb-init": ["dumb-init"], "catatonit": ["catatonit"],
    "runit": ["runsvdir", "runsv"], "s6": ["s6-svscan", "s6-supervise"], "supervisord": ["supervisord"],
}


def cold_page_cache(inits):
    """Drops every init's executable (and the services' program) from the
    page cache, so that each is read back by the first run's exec as an
    image's files are: by readahead. A binary just written (build-binary.sh
    copies baseinit right before the run) sits in the cache in the folios
    the write made, and what a page fault maps around it differs: the same
    baseinit bytes measured 916 kB of PSS just written, 780 kB copied again,
    and 724 kB read back after a drop of the whole cache. Best effort: a
    file that cannot be dropped is said and measured as it is."""
    paths = [SVC, CINIT]
    for init in inits:
        if init in BINARIES:
            paths.append(BINARIES[init])
        paths += [Path(p) for p in map(shutil.which, PROGRAMS.get(init, [])) if p]
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)  # dirty pages stay cached
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        except OSError as e:
            print(f"bench: *** cannot drop {path} from the page cache: {e}", file=sys.stderr)


def measure(inits, runs, sizes, quick):
    out = {init: {} for init in inits}
    cold_page_cache(inits)
    close = runs if quick else runs * CLOSE_CALL
    say = lambda what: print(f"== {what}", file=sys.stderr, flush=True)
    say("orphan storm")
    for init, storms in rounds(inits, runs, lambda init, _: scenario_storm(init)).items():
        out[init]["storm"] = {k: collect(storms, k) for k in ["all_reaped_ms", "peak_unreaped", "zombies_at_5s", "storm_ms", "lag_ms"]}
    say("orphan burst")
    for init, bursts in rounds(inits, close, lambda init, _: scenario_burst(init)).items():
        out[init]["burst"] = {"reap_all_ms": collect(bursts, "reap_all_ms"),
                              "errors": [b["error"] for b in bursts if b and "error" in b]}
    for init in inits:
        out[init]["scale"] = {}
    for n in sizes:
        say(f"startup and memory, {n} services")
        idle = n in (3, 50)
        k = close if n == 20 else runs if n <= 50 else max(1, runs // 2 + 1)
        # The 5 s idle window is measured in the first 3 runs only.
        per = rounds(inits, k, lambda init, j: scenario_start(init, n, idle and j < 3))
        for init, res in per.items():
            s = out[init]["scale"][n] = {key: collect(res, key) for key in ["startup_ms", "pss_kb", "rss_kb", "tree_processes"]}
            if idle:
                s["pss_after_restart_kb"] = collect(res, "pss_after_restart_kb")
                s["idle_switches"] = collect(res, "idle_switches")
                s["idle_cpu_ms"] = collect(res, "idle_cpu_ms")
            errors = [x["error"] for x in res if x and "error" in x]
            if errors:
                s["errors"] = errors
            print(f"   {init}: {s['startup_ms'] and round(s['startup_ms']['median'], 1)} ms, "
                  f"{s['pss_kb'] and s['pss_kb']['median']} kB PSS", file=sys.stderr, flush=True)
    say("stop")
    for init, stops in rounds(inits, close, lambda init, _: scenario_stop(init, False)).items():
        out[init]["stop"] = {"stop_ms": collect(stops, "stop_ms"), "graceful": collect(stops, "graceful"), "services": 3}
    say("stop with a stubborn service")
    k = max(1, runs // 2 + 1) if not quick else 1
    for init, stubborn in rounds(inits, k, lambda init, _: scenario_stop(init, True)).items():
        out[init]["stop_stubborn"] = {"stop_ms": collect(stubborn, "stop_ms"),
                                      "after_timeout_ms": collect(stubborn, "after_timeout_ms"),
                                      "graceful": collect(stubborn, "graceful"),
                                      "capped": sum(1 for s in stubborn if s and s.get("capped"))}
    say("restart")
    supervisors = [init for init in inits if init in SUPERVISORS]
    for init, restarts in rounds(supervisors, max(1, runs // 2 + 1), lambda init, _: scenario_restart(init)).items():
        out[init]["restart"] = {"first_restart_ms": collect(restarts, "first_restart_ms"),
                                "crash_intervals_ms": [x.get("crash_intervals_ms") for x in restarts if x],
                                "crash_starts_in_8s": collect(restarts, "crash_starts_in_8s")}
    return out


def fmt(s, digits=1, unit=""):
    if s is None:
        return "—"
    m = s["median"]
    if s["min"] == s["max"]:
        return f"{m:.{digits}f}{unit}"
    return f"{m:.{digits}f}{unit} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def figures(r):
    """The table's rows, in order: (label, digits, better, value, cell).
    value(init) is that init's summary (median, min, max) for the row, None
    when not measured, "n/a" when it does not apply; value is None for a row
    that is only text. cell(init), when given, writes the table's cell
    instead of fmt(value(init)). better: "lower" or "higher" when that way
    is better, None when neither is (the before/after section's verdict)."""
    inits = list(r)
    out = []

    def add(label, digits, value, cell=None, better="lower"):
        out.append((label, digits, better, value, cell))

    add("**orphan storm** (5,000): all reaped, ms", 0, lambda i: r[i]["storm"]["all_reaped_ms"])
    add("storm: last reaped after the last fork, ms", 1, lambda i: r[i]["storm"]["lag_ms"])
    add("storm: peak unreaped", 0, lambda i: r[i]["storm"]["peak_unreaped"])
    add("storm: zombies at 5 s", 0, lambda i: r[i]["storm"]["zombies_at_5s"])
    add("**orphan burst** (1,000): reap all, ms", 2, lambda i: r[i]["burst"]["reap_all_ms"])
    sizes = sorted(int(n) for n in next(iter(r.values()))["scale"])
    for n in sizes:
        add(f"**startup**, {n} services, ms", 1, lambda i, n=n: r[i]["scale"][n]["startup_ms"])
    for n in sizes:
        add(f"**tree PSS**, {n} services, kB", 0, lambda i, n=n: r[i]["scale"][n]["pss_kb"])
    if 3 in sizes:
        add("tree PSS, 3 services, after one service restarted, kB", 0,
            lambda i: r[i]["scale"][3].get("pss_after_restart_kb") if i in SUPERVISORS else "n/a")
    for n in sizes:
        add(f"tree RSS, {n} services, kB", 0, lambda i, n=n: r[i]["scale"][n]["rss_kb"])
    for n in sizes:
        if "idle_switches" in r[inits[0]]["scale"][n]:
            add(f"**idle** 5 s, {n} services: context switches", 0, lambda i, n=n: r[i]["scale"][n]["idle_switches"])
            add(f"idle 5 s, {n} services: CPU ms", 2, lambda i, n=n: r[i]["scale"][n]["idle_cpu_ms"])
    add("**stop**, 3 services, ms", 1, lambda i: r[i]["stop"]["stop_ms"])
    add("stop: services stopped gracefully (of 3)", 0, lambda i: r[i]["stop"]["graceful"], better="higher")
    add(f"**stop with a stubborn service**, ms (cap {STOP_CAP:.0f} s)", 0, lambda i: r[i]["stop_stubborn"]["stop_ms"],
        lambda i: ("capped" if r[i]["stop_stubborn"]["capped"] else "") + (" " if r[i]["stop_stubborn"]["capped"] and r[i]["stop_stubborn"]["stop_ms"] else "")
        + (fmt(r[i]["stop_stubborn"]["stop_ms"], 0) if r[i]["stop_stubborn"]["stop_ms"] else ""))
    add(f"stubborn: exit after the {STOP_TIMEOUT} s timeout, ms", 1, lambda i: r[i]["stop_stubborn"]["after_timeout_ms"])
    add("stubborn: others stopped gracefully (of 3)", 0, lambda i: r[i]["stop_stubborn"]["graceful"], better="higher")
    add("**restart** after a 2 s run, ms", 1,
        lambda i: r[i]["restart"]["first_restart_ms"] if "restart" in r[i] else "n/a")
    add("crash loop: starts in 8 s", 0,
        lambda i: r[i]["restart"]["crash_starts_in_8s"] if "restart" in r[i] else "n/a", better=None)
    add("crash loop: intervals, ms (first run)", 0, None,
        lambda i: ", ".join(f"{x:.0f}" for x in (r[i]["restart"]["crash_intervals_ms"] or [[]])[0][:6]) if "restart" in r[i] else "n/a",
        better=None)
    return out


def table(report):
    r = report["inits"]
    inits = list(r)
    lines = []

    def row(label, cells):
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def cell(digits, value, i):
        v = value(i)
        return v if v == "n/a" else fmt(v, digits)

    row("", inits)
    lines.append("|---|" + "---|" * len(inits))
    for label, digits, _, value, custom in figures(r):
        row(label, [custom(i) if custom else cell(digits, value, i) for i in inits])
    return "\n".join(lines)


def before_after(report):
    """baseinit against baseinit-before, figure by figure, from the same
    run: the ratio after/before of the medians, and "worse" or "better"
    where every run of one was worse than every run of the other (the
    min-max ranges apart, with 2 runs or more of each: one run of each is
    no evidence), so that a regression shows at a glance."""
    r = report["inits"]
    if "baseinit" not in r or BEFORE not in r:
        return []
    base = report.get("baseline_binary") or {}
    lines = [f"**Before/after**: `baseinit` (this build) against `{BEFORE}` "
             f"(`{base.get('path', '?')}`), same run; ratio after/before of the medians; "
             "worse/better where the min–max ranges (2 runs or more) do not overlap.", "",
             f"| figure | baseinit | {BEFORE} | after/before |", "|---|---|---|---|"]

    def verdict(after, before, better):
        if better is None or min(after.get("n", 2), before.get("n", 2)) < 2:
            return ""
        if after["min"] > before["max"]:
            return " **worse**" if better == "lower" else " better"
        if after["max"] < before["min"]:
            return " better" if better == "lower" else " **worse**"
        return ""

    def ratio(after, before, better):
        a, b = after["median"], before["median"]
        if a == b:
            q = "1.00×"
        elif a > 0 and b > 0:
            q = f"{a / b:.3f}×" if abs(a / b - 1) < 0.005 else f"{a / b:.2f}×"
        else:
            q = "—"
        return q + verdict(after, before, better)

    for label, digits, better, value, custom in figures(r):
        if value is None:
            if custom:
                lines.append(f"| {label} | {custom('baseinit')} | {custom(BEFORE)} | |")
            continue
        after, before = value("baseinit"), value(BEFORE)
        if not isinstance(after, dict) or not isinstance(before, dict):
            continue
        lines.append(f"| {label} | {fmt(after, digits)} | {fmt(before, digits)} | {ratio(after, before, better)} |")
    if base.get("bytes"):
        a, b = report["baseinit_binary_bytes"], base["bytes"]
        same = {"median": a, "min": a, "max": a}, {"median": b, "min": b, "max": b}
        lines.append(f"| binary, bytes | {a:,} | {b:,} | {ratio(*same, 'lower')} |")
    return lines


# What --scenarios chooses from: "inits" is every scenario that compares
# the inits (storm, burst, startup and memory, idle, stop, restart).
SCENARIOS = ["inits", "docker", "output", "svlogd", "syslog"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per figure (median and spread)")
    ap.add_argument("--inits", help="comma-separated subset of: " + ",".join(INITS) + f",{BEFORE} "
                    f"(default: all; {BEFORE} only with --baseline)")
    ap.add_argument("--baseline", metavar="PATH",
                    help=f"a second baseinit binary (e.g. the previous main's, built by images/build-binary.sh), "
                    f"measured as {BEFORE} beside baseinit, with a before/after section in the report")
    ap.add_argument("--sizes", default="1,3,10,20,50,100,200,500", help="service counts for startup and memory")
    ap.add_argument("--quick", action="store_true", help="2 runs, fewer sizes, no Docker: a smoke run")
    ap.add_argument("--no-docker", action="store_true", help="skip the Docker scenario")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help="comma-separated subset of: inits (every scenario comparing the inits), docker, "
                    "output (service output through each relay path), svlogd (runit's svlogd and "
                    "baseinit's), syslog (--syslog's relay); default all")
    ap.add_argument("--out", default=str(HERE / "results"), help="where latest.json, latest.md and latest.svg go")
    ap.add_argument("--render", metavar="JSON", help="only redraw the table and chart of a saved report")
    args = ap.parse_args()
    if args.render:
        write(json.loads(Path(args.render).read_text(), object_hook=int_keys), Path(args.out))
        return
    runs = 2 if args.quick else args.runs
    scenarios = args.scenarios.split(",")
    if [x for x in scenarios if x not in SCENARIOS]:
        ap.error(f"--scenarios: unknown {','.join(x for x in scenarios if x not in SCENARIOS)} "
                 f"(known: {','.join(SCENARIOS)})")
    sizes = [3, 20, 50] if args.quick else [int(n) for n in args.sizes.split(",")]
    known = INITS + [BEFORE]
    if args.baseline:
        baseline = Path(args.baseline).resolve()
        if not baseline.is_file() or not os.access(baseline, os.X_OK):
            ap.error(f"--baseline {args.baseline}: not an executable file")
        BINARIES[BEFORE] = baseline
    if args.inits is None:
        inits = INITS[:1] + [BEFORE] + INITS[1:] if args.baseline else INITS
    else:
        inits = args.inits.split(",")
    unknown = [i for i in inits if i not in known]
    if unknown:
        ap.error(f"--inits: unknown {','.join(unknown)} (known: {','.join(known)})")
    if BEFORE in inits and not args.baseline:
        ap.error(f"--inits names {BEFORE}: it needs --baseline PATH")
    if args.baseline and BEFORE not in inits:
        print(f"bench: --baseline given but --inits leaves {BEFORE} out: it is not measured", file=sys.stderr)
    started = time.time()
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "versions": versions(),
        "baseinit_binary_bytes": BASEINIT.stat().st_size,
        **({"baseline_binary": {"path": str(BINARIES[BEFORE]), "bytes": BINARIES[BEFORE].stat().st_size}}
           if BEFORE in inits else {}),
        "runs": runs,
        "close_call_runs": runs if args.quick else runs * CLOSE_CALL,
        "stop_timeout_s": STOP_TIMEOUT,
        "inits": measure(inits, runs, sizes, args.quick) if "inits" in scenarios else {},
    }
    if "output" in scenarios:
        # At least 3 runs: 1 with --quick, then a smaller volume too.
        report["output"] = measure_output(1 if args.quick else max(3, runs // 2 + 1), args.quick)
    if "svlogd" in scenarios:
        report["svlogd"] = measure_svlogd(1 if args.quick else max(3, runs // 2 + 1), args.quick)
    if "syslog" in scenarios:
        report["syslog"] = measure_syslog(1 if args.quick else 3, args.quick)
    if not args.quick and not args.no_docker and "docker" in scenarios:
        report["docker"] = scenario_docker(3)
    report["duration_s"] = round(time.time() - started)
    write(report, Path(args.out))


def int_keys(d):
    """JSON turns the service counts of "scale" into strings: back to ints."""
    return {int(k) if k.isdigit() else k: v for k, v in d.items()}


def write(report, out):
    import chart
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(report, indent=1) + "\n")
    md = render_markdown(report)
    (out / "latest.md").write_text(md)
    (out / "latest.svg").write_text(chart.svg(report))
    if out.resolve() == (HERE / "results").resolve():
        update_manual(md)
    print(md)


PAGE = ROOT / "docs" / "performance.md"
BEGIN = "<!-- bench/results/latest.md, verbatim"
END = "<!-- end of bench/results/latest.md -->"


def update_manual(md):
    """The manual's performance page shows the latest table: the text
    between its markers becomes latest.md (tests/docs.rs checks they agree)."""
    text = PAGE.read_text()
    start = text.find(BEGIN)
    end = text.find(END)
    if start < 0 or end < start:
        print(f"bench: {PAGE} has no latest.md markers; not updated", file=sys.stderr)
        return
    start = text.index("\n", start) + 1
    PAGE.write_text(text[:start] + "\n" + md.strip("\n") + "\n\n" + text[end:])


def targets(report):
    """Issue 8's targets for baseinit, each with its figures and met or not."""
    r = report["inits"]
    b = r.get("baseinit")
    if not b:
        return output_targets(report) + svlogd_targets(report) + syslog_targets(report)
    out = []

    def med(s):
        return None if not s else s["median"]

    def check(name, ok, figures):
        out.append((name, "met" if ok else ("not met" if ok is not None else "not measured"), figures))

    def versus(name, mine, theirs, limit, unit, digits, strict=False):
        """baseinit's `mine` against a peer's `theirs`: met when the ratio is
        at most `limit` (below it, with `strict`)."""
        if mine is None or not theirs:
            check(name, None, "")
            return
        q = mine / theirs
        check(name, q < limit if strict else q <= limit,
              f"{mine:.{digits}f} {unit} vs {theirs:.{digits}f} {unit}: {q:.2f}×")

    def peer(init, *keys):
        x = r.get(init, {})
        for k in keys:
            x = x.get(k, {}) if isinstance(x, dict) else {}
        return med(x or None)

    z = med(b["storm"]["zombies_at_5s"])
    check("no zombie left after the storm", None if z is None else z == 0, f"{z:g} zombies at 5 s" if z is not None else "")
    versus("burst reap-all within 1.1× the C baseline", med(b["burst"]["reap_all_ms"]),
           peer("cinit", "burst", "reap_all_ms"), 1.1, "ms", 1)
    sizes = sorted(b["scale"])
    for n in (3, 50):
        if n in b["scale"] and "idle_switches" in b["scale"][n]:
            sw = med(b["scale"][n]["idle_switches"])
            check(f"0 context switches idle, {n} services", None if sw is None else sw == 0, f"{sw:g} in 5 s")
    if 3 in b["scale"]:
        for key, label in (("pss_kb", "PSS with 3 services below {}'s"),
                           ("pss_after_restart_kb", "… and still below {}'s after a service restarted")):
            for other in ("runit", "s6"):
                versus(label.format(other), med(b["scale"][3].get(key)), peer(other, "scale", 3, key),
                       1.0, "kB", 0, strict=True)
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        a, c = med(b["scale"][lo]["pss_kb"]), med(b["scale"][hi]["pss_kb"])
        if a is not None and c is not None:
            per = (c - a) / (hi - lo)
            check("PSS grows by a few kB per service", per <= 8,
                  f"{per:.1f} kB per service ({a:g} kB at {lo}, {c:g} kB at {hi})")
    g = med(b["stop"]["graceful"])
    check("every service stopped gracefully", None if g is None else g == 3, f"{g:g} of 3" if g is not None else "")
    versus("stop within 1.5× dumb-init's", med(b["stop"]["stop_ms"]), peer("dumb-init", "stop", "stop_ms"),
           1.5, "ms", 2)
    late = med(b["stop_stubborn"]["after_timeout_ms"])
    check("with a stubborn service, exit within 50 ms after its timeout", None if late is None else late <= 50,
          f"{late:.1f} ms after the {report['stop_timeout_s']} s timeout" if late is not None else "")
    if 20 in b["scale"]:
        for other in ("tini", "runit", "s6"):
            versus(f"20 services started no slower than {other}", med(b["scale"][20]["startup_ms"]),
                   peer(other, "scale", 20, "startup_ms"), 1.0, "ms", 1)
    if "restart" in b:
        first = med(b["restart"]["first_restart_ms"])
        check("first restart of a service that was up within 5 ms", None if first is None else first <= 5,
              f"{first:.2f} ms" if first is not None else "")
        runs = b["restart"]["crash_intervals_ms"]
        if runs and runs[0]:
            want = [100 * 2 ** k for k in range(len(runs[0]))]
            ok = all(abs(got - w) <= max(15, 0.1 * w) for got, w in zip(runs[0], want))
            check("crash loop backs off as configured (100 ms doubling)", ok,
                  ", ".join(f"{x:.0f}" for x in runs[0]) + " ms")
    check("static, stripped binary", True, f"{report['baseinit_binary_bytes']:,} bytes")
    return out + output_targets(report) + svlogd_targets(report) + syslog_targets(report)


def output_table(o):
    """The output scenario's table: a column per path."""
    p = o["paths"]
    paths = list(p)
    lines = [f"**Service output**: each column a path from a service's stdout to a pipe the harness "
             f"reads as fast as it can, {o['runs']} run{'s' if o['runs'] != 1 else ''}: median (min–max). Timed from the first service byte's "
             "arrival to the last line's; MB/s and lines/s of the service's own bytes; CPU and peak RSS (over its "
             "RSS idle, just before the flood) of the relay: PID 1 for baseinit and supervisord, sed's or s6-log's "
             "process (one per service), none for the raw pipe. The lone line's latency through sed is `sed -u`'s.",
             "", "|  | " + " | ".join(o["labels"].get(x, x) for x in paths) + " |", "|---|" + "---|" * len(paths)]

    def row(label, digits, get, scale=1):
        cells = []
        for x in paths:
            v = get(x)
            if v == "n/a":
                cells.append(v)
                continue
            if v and scale != 1:
                v = {k: (w / scale if k != "n" else w) for k, w in v.items()}
            cells.append(fmt(v, digits))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def fig(work, key):
        return lambda x: "n/a" if x == "raw" and key not in ("mb_s", "lines_s") else p[x].get(work, {}).get(key)

    for work, w in o["workloads"].items():
        row(f"**{w['label']}**: MB/s", 1, fig(work, "mb_s"))
        row("… thousand lines/s", 0, fig(work, "lines_s"), 1000)
        row("… relay CPU, s per GB", 2, fig(work, "cpu_s_per_gb"))
        row("… relay peak RSS over idle, kB", 0, fig(work, "rss_growth_kb"))
    row("relay RSS idle (one service), kB", 0, fig("one", "idle_rss_kb"))
    t = o["ticks"]
    row(f"**lone line** (one every {t['interval_ms']} ms, {t['lines']} lines): latency median, ms", 3,
        lambda x: p[x].get("latency", {}).get("median_ms"))
    row("lone line: latency p99, ms", 2, lambda x: p[x].get("latency", {}).get("p99_ms"))
    errors = [f"{o['labels'].get(x, x)} ({work}): {e}" for x in paths for work, v in p[x].items()
              for e in (v.get("errors") or [])]
    if errors:
        lines += ["", "Failed runs: " + "; ".join(errors) + "."]
    return lines


def output_targets(report):
    """Issue 19's targets for the output relay, each a ratio in the same run."""
    o = report.get("output")
    if not o:
        return []
    p = o["paths"]
    out = []

    def med(path, work, key):
        v = p.get(path, {}).get(work, {}).get(key)
        return v["median"] if v else None

    def ratio(name, mine, theirs, limit, unit, digits, at_least):
        if mine is None or not theirs:
            out.append((name, "not measured", ""))
            return
        q = mine / theirs
        ok = q >= limit if at_least else q <= limit
        out.append((name, "met" if ok else "not met", f"{mine:.{digits}f} {unit} vs {theirs:.{digits}f} {unit}: {q:.2f}×"))

    one = o["workloads"].get("one", {}).get("label", "one service")
    ratio(f"output prefix at least as fast as sed ({one})", med("prefix", "one", "mb_s"),
          med("sed", "one", "mb_s"), 1.0, "MB/s", 1, True)
    ratio("output prefix at least 0.8× supervisord's relay", med("prefix", "one", "mb_s"),
          med("supervisord", "one", "mb_s"), 0.8, "MB/s", 1, True)
    ratio("output json at least 0.5× sed", med("json", "one", "mb_s"), med("sed", "one", "mb_s"), 0.5, "MB/s", 1, True)
    ratio("PID 1 CPU per GB (prefix) no more than sed's", med("prefix", "one", "cpu_s_per_gb"),
          med("sed", "one", "cpu_s_per_gb"), 1.0, "s/GB", 2, False)
    growth = [(med("prefix", work, "rss_growth_kb"), w["label"]) for work, w in o["workloads"].items()]
    growth = [g for g in growth if g[0] is not None]
    if growth:
        kb, label = max(growth)
        out.append(("peak RSS during the flood within 2 MB of idle (prefix)", "met" if kb <= 2048 else "not met",
                    f"{kb:.0f} kB over idle at most ({label})"))
    else:
        out.append(("peak RSS during the flood within 2 MB of idle (prefix)", "not measured", ""))
    lat = p.get("prefix", {}).get("latency", {}).get("median_ms")
    out.append(("lone-line latency median within 1 ms (prefix)",
                "not measured" if not lat else "met" if lat["median"] <= 1 else "not met",
                f"{lat['median']:.3f} ms (p99 {p['prefix']['latency']['p99_ms']['median']:.2f} ms)" if lat else ""))
    return out


def render_markdown(report):
    close = report.get("close_call_runs")
    more = f" ({close} for the burst, the 20-service startup and the stop)" if close and close != report["runs"] else ""
    if report["inits"]:
        lines = [f"Measured {report['date']} on {report['machine']}, {report['runs']} runs per figure{more}: "
                 "median (min–max).", "", table(report), ""]
    else:
        lines = [f"Measured {report['date']} on {report['machine']}.", ""]
    if report.get("output"):
        lines += output_table(report["output"]) + [""]
    if report.get("svlogd"):
        lines += svlogd_table(report["svlogd"]) + [""]
    if report.get("syslog"):
        lines += syslog_table(report["syslog"]) + [""]
    lines += ["| target | result | figures |", "|---|---|---|"]
    lines += [f"| {name} | {result} | {figures} |" for name, result, figures in targets(report)]
    lines.append("")
    compared = before_after(report)
    if compared:
        lines += compared + [""]
    lines.append(f"baseinit binary: {report['baseinit_binary_bytes']:,} bytes, static, stripped.")
    base = report.get("baseline_binary")
    if base:
        lines.append(f"{BEFORE} binary: `{base['path']}`, {base['bytes']:,} bytes.")
    d = report.get("docker")
    if d:
        if "error" in d:
            lines.append(f"Docker: not measured: {d['error']}.")
        else:
            lines.append(f"Docker: `docker stop` of baseinit/example:test (nginx, cron, redis and two more services): "
                         f"{fmt(summary(d['docker_stop_ms']), 0)} ms; image sizes: "
                         + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in d["image_bytes"].items()) + ".")
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".")
    return "\n".join(lines) + "\n"


def machine():
    cpu = ""
    for line in read("/proc/cpuinfo").decode().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(read("/proc/meminfo").split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB, Linux {platform.release()}"


def versions():
    out = {}
    for pkg in ["tini", "dumb-init", "catatonit", "runit", "s6", "supervisor", "sed"]:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True)
        out[pkg] = r.stdout.strip() or "?"
    return out


if __name__ == "__main__":
    main()
