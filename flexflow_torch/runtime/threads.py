"""How many threads the embedded runtime's kernels use.

PyTorch's CPU kernels split work over OpenMP threads that spin while they wait for each
other. When another process keeps one of the cores busy, every parallel kernel waits for
the thread that shares a core with it: training slows down many times over, far more
than the share of the machine the other process takes. So the runtime measures, about
once a second, how much of its CPUs other processes use (/proc/stat minus this
process's own time, /proc/self/stat) and runs on the cores they leave free: never more
threads than PyTorch had when the first model ran (or than the user set since), never
fewer than one.

`FLEXFLOW_TORCH_THREADS=N` fixes the count instead; `FLEXFLOW_TORCH_THREADS=auto` (the
default) adapts it.
"""

from __future__ import annotations

import os
import time

import torch

from ..errors import ConfigError

_INTERVAL = 1.0          # seconds between measurements


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

    def fixed(self):
        value = os.environ.get("FLEXFLOW_TORCH_THREADS", "auto").strip().lower() or "auto"
        if value == "auto":
            return None
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"FLEXFLOW_TORCH_THREADS={value!r}: give a positive thread count or 'auto'")
        return int(value)

    def tick(self):
        """Called before each forward pass; adjusts torch's thread count when due."""
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + _INTERVAL
        fixed = self.fixed()
        if fixed is not None:
            if torch.get_num_threads() != fixed:
                torch.set_num_threads(fixed)
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
