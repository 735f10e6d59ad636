"""The whole benchmark table in one command: training throughput of converted models on
the embedded runtime against PyTorch eager (scripts/bench_runtime.py), conversion of
mt5-small against torch.export alone and one Adam step of it against PyTorch
(scripts/bench_convert.py). Prints a Markdown table with the date, machine and load.

    python scripts/bench_all.py [--quick] [--background-load N] [--no-step]

`--background-load N` runs N busy processes (one core each) for the whole run: the
contention case. `--quick` runs fewer rounds and skips the mt5-small rows.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch
    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def run_json(script, *args):
    out = subprocess.run([sys.executable, str(HERE / script), "--json", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{script} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def busy_processes(n):
    code = "import signal,sys\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\nwhile True: pass"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-step", action="store_true", help="skip the mt5-small Adam step rows")
    parser.add_argument("--background-load", type=int, default=0, metavar="N")
    parser.add_argument("--models", default="mlp,gpt2,mt5")
    args = parser.parse_args()
    load_before = "/".join(f"{x:.1f}" for x in os.getloadavg())
    busy = busy_processes(args.background_load)
    try:
        rounds = ["--rounds", "3", "--steps", "2"] if args.quick else ["--rounds", "15"]
        train = run_json("bench_runtime.py", "--models", args.models, *rounds)
        convert = [] if args.quick else run_json("bench_convert.py", "--repeats", "3",
                                                 *([] if args.no_step else ["--step"]))
    finally:
        for p in busy:
            p.terminate()
        for p in busy:
            p.wait()
    print(f"{datetime.date.today().isoformat()}, {machine()}; load average before {load_before}"
          + (f"; {args.background_load} busy background process(es)" if args.background_load else ""))
    print()
    print("| row | flexflow-torch | PyTorch / torch.export | ratio | load during |")
    print("| --- | ---: | ---: | ---: | --- |")
    for r in train:
        if "error" in r:
            print(f"| training, {r['label']} | failed: {r['error']} | | | |")
            continue
        print(f"| training, {r['label']} (samples/s) | {r['ff_sps']:.1f} | {r['torch_sps']:.1f} | "
              f"**{r['ratio']:.2f}x** ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | {r['load']} |")
    for row in convert:
        e, c = row["export"], row["convert"]
        name = f"mt5-small-size ({row['variant']} head), batch 8, seq 48/47"
        if "error" in e or "error" in c:
            print(f"| convert + compile {name} | failed: {e.get('error') or c.get('error')} | | | |")
            continue
        print(f"| convert + compile {name}: seconds (CPU s) | {c['seconds']:.1f} ({c['cpu_seconds']:.1f}) | "
              f"{e['seconds']:.1f} ({e['cpu_seconds']:.1f}) | **{c['seconds'] / e['seconds']:.2f}x** "
              f"({c['cpu_seconds'] / e['cpu_seconds']:.2f}x) | {row['load']} |")
        print(f"| convert + compile {name}: memory added over the built model, MB | {c['added_mb']:.0f} | "
              f"{e['added_mb']:.0f} | **{c['added_mb'] / e['weights_mb']:.2f}x** the weights "
              f"({e['weights_mb']:.0f} MB) | |")
        step = row.get("step")
        if step:
            f, t = step["flexflow"], step["torch"]
            if "error" in f or "error" in t:
                print(f"| one Adam step {name} | {f.get('error', '')} | {t.get('error', '')} | | |")
            else:
                print(f"| one Adam step {name}: seconds | {f['seconds']:.1f} | {t['seconds']:.1f} | "
                      f"**{t['seconds'] / f['seconds']:.2f}x** | |")
                print(f"| one Adam step {name}: peak memory MB | {f['peak_mb']:.0f} | {t['peak_mb']:.0f} | "
                      f"{f['peak_mb'] / t['peak_mb']:.2f}x | |")
    print()
    print("Training ratios are flexflow-torch / PyTorch samples/s at the median step time (> 1: faster), the two "
          "sides' steps alternating (range of the per-round ratios in brackets); conversion is flexflow-torch / "
          "torch.export alone.")


if __name__ == "__main__":
    main()
