"""How many threads PyTorch's CPU kernels may use without oversubscribing the machine:
the one place for flexflow_torch's thread policy.

PyTorch starts one OpenMP thread per core, and its threads wait for each other at
the end of every parallel kernel. When another process holds one of the cores, every
kernel waits for the thread that lost its core: a small model then runs 7-15 times
slower than with one thread fewer. So unless FLEXFLOW_TORCH_THREADS=N or
OMP_NUM_THREADS says otherwise (FLEXFLOW_TORCH_THREADS=auto, the default, does not),
use the cores that other processes leave idle (measured from /proc/stat, at least one):
- `configure_threads` chooses once when a script starts (launch.py) and says so;
- the embedded runtime's `GOVERNOR` measures again about once a second while it trains
  (`tick`, before each forward) and follows the load: never more threads than PyTorch
  had when the first model ran (or than the user set since, or than the cores when
  `configure_threads` chose), never fewer than one."""

from __future__ import annotations

import os
import time

import torch

from .errors import ConfigError

ENV = ("FLEXFLOW_TORCH_THREADS", "OMP_NUM_THREADS")
_INTERVAL = 1.0          # seconds between the governor's measurements


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not Linux
        return os.cpu_count() or 1


def _cpu_times():
    """(busy, total) jiffies of the whole machine, or None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)      # idle + iowait
    total = sum(fields[:8])                                       # guest time is inside user
    return total - idle, total


def busy_elsewhere(interval: float = 0.3) -> float:
    """Cores kept busy by other processes over the next `interval` seconds (this process
    is subtracted), from /proc/stat; the 1-minute load average off Linux."""
    ncpu = os.cpu_count() or 1
    before, own_before = _cpu_times(), sum(os.times()[:2])
    if before is None:
        return min(float(ncpu), os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0.0
    time.sleep(interval)
    after, own_after = _cpu_times(), sum(os.times()[:2])
    busy, total = after[0] - before[0], after[1] - before[1]
    if total <= 0:
        return 0.0
    wall = total / ncpu                                   # jiffies per core in the window
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    own = (own_after - own_before) * hz
    return max(0.0, (busy - own) / wall)


def fixed_threads() -> tuple[int, str] | None:
    """(threads, why) when the environment fixes the count, else None (adapt)."""
    for name in ENV:
        value = os.environ.get(name, "").strip()
        if not value or (name == ENV[0] and value.lower() == "auto"):
            continue
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"{name}={value!r}: give a positive whole number of threads"
                              + (" or 'auto'" if name == ENV[0] else ""))
        return int(value), f"{name}={value}"
    return None


def choose_threads() -> tuple[int, str]:
    """(threads, why): the environment's setting if any, else the idle cores."""
    fixed = fixed_threads()
    if fixed is not None:
        return fixed
    cpus = usable_cpus()
    busy = busy_elsewhere()
    free = min(cpus, (os.cpu_count() or cpus) - busy)
    threads = max(1, min(cpus, int(free + 0.5)))      # a core at least half idle counts
    return threads, (f"{cpus} CPUs, {busy:.1f} busy with other processes; "
                     f"set {ENV[0]} to choose")


def configure_threads(log=print) -> int:
    """Set PyTorch's intra-op threads as `choose_threads` says and print one line; the
    governor then adapts from there, up to every usable core unless the count is fixed."""
    threads, why = choose_threads()
    torch.set_num_threads(threads)
    if fixed_threads() is None:
        GOVERNOR.cap, GOVERNOR.chosen = usable_cpus(), threads
    if log is not None:
        log(f"threads: {threads} ({why})")
    return threads


def _busy_ticks(cpus):
    """Busy clock ticks of `cpus` since boot (user, nice, system, irq, softirq, steal)."""
    total = 0
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *fields = line.split()
            if int(name[3:]) in cpus:
                v = [int(x) for x in fields[:8]]
                total += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return total


def _own_ticks():
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])          # utime, stime (all threads)


class ThreadGovernor:
    def __init__(self):
        self.cpus = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.cap = self.chosen = None
        self.sample = None
        self.next_check = 0.0

    def tick(self):
        """Called before each forward pass; adjusts torch's thread count when due."""
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + _INTERVAL
        fixed = fixed_threads()
        if fixed is not None:
            if torch.get_num_threads() != fixed[0]:
                torch.set_num_threads(fixed[0])
            return
        if not self.cpus:
            return
        current = torch.get_num_threads()
        if self.cap is None or current != self.chosen:         # first call, or the user set it
            self.cap = current
        try:
            sample = (now, _busy_ticks(self.cpus), _own_ticks())
        except (OSError, ValueError, IndexError):                # no procfs: leave it alone
            self.cpus = set()
            return
        previous, self.sample = self.sample, sample
        if previous is None:          # no interval yet: the run queue, less this process
            others = max(0.0, os.getloadavg()[0] - 1)
        else:
            seconds = sample[0] - previous[0]
            others = max(0.0, (sample[1] - previous[1]) - (sample[2] - previous[2])) / self.hz / seconds
        free = len(self.cpus) - others
        self.chosen = max(1, min(self.cap, int(free + 0.5)))
        if self.chosen != current:
            torch.set_num_threads(self.chosen)


GOVERNOR = ThreadGovernor()
