#!/usr/bin/env python
"""Training time of examples/mt5/mt5_ff.py with every core's thread (PyTorch's default)
against the thread count flexflow_torch chooses (flexflow_torch/threads.py), on a quiet
machine and with one core kept busy by another process; interleaved rounds, ratios
from the same run, the machine's load printed.

    python scripts/bench_threads.py [--rounds 2] [--steps 8]

The data must be prepared (scripts/prepare_mt5_data.py)."""

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_seconds(threads, steps, batch):
    """Training seconds of one mt5_ff.py run, as the script reports them."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "FLEXFLOW_TORCH_THREADS")}
    if threads is not None:
        env["FLEXFLOW_TORCH_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, str(ROOT / "examples/mt5/mt5_ff.py"), "-b", str(batch),
                          "-e", "1", "--max-train", str(steps * batch), "--max-eval", str(batch),
                          "--no-decode", "--out", "/tmp/bench_threads"],
                         env=env, capture_output=True, text=True, check=True).stdout
    chosen = re.search(r"^threads: (\d+)", out, re.M).group(1)
    return float(re.search(r"samples in ([\d.]+)s", out).group(1)), chosen


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=8, help="training steps per run (default: 8)")
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args()
    cpus = os.cpu_count()
    results = {}
    for r in range(args.rounds):
        for busy in (False, True):
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            time.sleep(1 if busy else 0)
            try:
                for label, threads in ((f"{cpus} threads", cpus), ("chosen", None)):
                    load = os.getloadavg()[0]
                    seconds, chosen = train_seconds(threads, args.steps, args.batch)
                    results.setdefault((busy, label), []).append(seconds)
                    print(f"round {r + 1} {'one core busy' if busy else 'no extra load'}: {label} "
                          f"({chosen}): {seconds:.1f}s training, load average {load:.1f}", flush=True)
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    for busy in (False, True):
        fixed = min(results[(busy, f"{cpus} threads")])
        chosen = min(results[(busy, "chosen")])
        print(f"{'one core busy' if busy else 'no extra load'}: {cpus} threads {fixed:.1f}s, "
              f"chosen {chosen:.1f}s, ratio {fixed / chosen:.2f}x")


if __name__ == "__main__":
    main()
