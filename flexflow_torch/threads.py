"""How many threads PyTorch's CPU kernels may use without oversubscribing the machine.

PyTorch starts one OpenMP thread per core, and its threads wait for each other at
the end of every parallel kernel. When another process holds one of the cores, every
kernel waits for the thread that lost its core: a small model then runs 7-15 times
slower than with one thread fewer. So unless OMP_NUM_THREADS or
FLEXFLOW_TORCH_THREADS says otherwise, use the cores that other processes leave idle
(measured from /proc/stat, at least one), and say so."""

from __future__ import annotations

import os
import time

ENV = ("FLEXFLOW_TORCH_THREADS", "OMP_NUM_THREADS")


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


def choose_threads() -> tuple[int, str]:
    """(threads, why): the environment's setting if any, else the idle cores."""
    for name in ENV:
        value = os.environ.get(name)
        if value:
            try:
                return max(1, int(value)), f"{name}={value}"
            except ValueError:
                from .errors import ConfigError
                raise ConfigError(f"{name}={value!r} is not a whole number of threads") from None
    cpus = usable_cpus()
    busy = busy_elsewhere()
    free = min(cpus, (os.cpu_count() or cpus) - busy)
    threads = max(1, min(cpus, int(free + 0.5)))      # a core at least half idle counts
    return threads, (f"{cpus} CPUs, {busy:.1f} busy with other processes; "
                     f"set {ENV[0]} to choose")


def configure_threads(log=print) -> int:
    """Set PyTorch's intra-op threads as `choose_threads` says and print one line."""
    import torch
    threads, why = choose_threads()
    torch.set_num_threads(threads)
    if log is not None:
        log(f"threads: {threads} ({why})")
    return threads
