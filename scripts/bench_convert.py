"""Conversion, and one training step, of an mt5-small-sized model: flexflow-torch against
torch.export alone and against PyTorch eager.

The model is a randomly initialised MT5ForConditionalGeneration with google/mt5-small's
configuration as Transformers 5 builds it: the LM head tied to the shared embedding
(172M parameters, vocabulary 250,112); `--variants untied` gives the head its own weight
as google/mt5-small's checkpoint has (300M parameters). Each measurement runs in its own
process, so that its peak memory is its own:
  export   torch.export.export(strict=False) of the model, nothing else;
  convert  PyTorchModel(...) + torch_to_ff into an embedded-runtime FFModel + compile
           (which loads every PyTorch weight into the FlexFlow layers);
  step     (`--step`) one Adam step at batch 8, seq 48/47 (median of 5 after a warm-up step; the
           two sides' processes alternate, `--repeats` each, median of theirs), on the
           embedded runtime (FlexFlow's fit step) and in PyTorch eager (the same Adam
           rule); seconds per step and peak memory.
"added" is the peak resident memory over what the process held with the model built.

    python scripts/bench_convert.py [--variants tied,untied] [--repeats 2] [--step]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MT5_SMALL = dict(vocab_size=250112, d_model=512, d_kv=64, d_ff=1024, num_layers=8,
                 num_decoder_layers=8, num_heads=6, relative_attention_num_buckets=32,
                 relative_attention_max_distance=128, dropout_rate=0.0,
                 feed_forward_proj="gated-gelu", decoder_start_token_id=0)
INPUT_NAMES = ["input_ids", "attention_mask", "decoder_input_ids"]


def peak_rss_mb():
    """Peak resident memory since the last reset (VmHWM), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                        # reset the peak (VmHWM) to the current RSS


def build(variant):
    import torch
    from transformers import MT5Config, MT5ForConditionalGeneration
    torch.manual_seed(0)
    model = MT5ForConditionalGeneration(MT5Config(**MT5_SMALL)).eval()
    if variant == "untied":
        model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
        model.config.tie_word_embeddings = False
    model.config.use_cache = False          # no KV-cache objects in the outputs (both modes)
    return model


def convert(model, batch, seq, optimizer="sgd"):
    from flexflow_torch import CrossEntropyHead, PyTorchModel
    from flexflow_torch.runtime import AdamOptimizer, SGDOptimizer
    from flexflow_torch.verify import embedded_model
    ffmodel = embedded_model(batch)
    hf = PyTorchModel(model, is_hf_model=True, input_names=INPUT_NAMES, batch_size=batch,
                      seq_length=(seq, seq - 1))
    head = CrossEntropyHead(ffmodel, hf.torch_to_ff(ffmodel)[0])
    opt = AdamOptimizer(ffmodel, alpha=1e-4) if optimizer == "adam" else SGDOptimizer(ffmodel, 0.01)
    ffmodel.compile(optimizer=opt, loss_type=head.loss_type, metrics=head.metrics)
    return ffmodel, hf, head


def measure(mode, variant, batch, seq):
    import torch
    model = build(variant)
    unique = {id(p): p for p in model.parameters()}
    params = sum(p.numel() for p in unique.values())
    base = rss_mb()
    reset_peak()
    start, cpu = time.perf_counter(), time.process_time()
    if mode == "export":
        from flexflow_torch.capture import make_example_inputs
        inputs = make_example_inputs(model, INPUT_NAMES, batch, (seq, seq - 1))
        with torch.no_grad():
            torch.export.export(model, (), dict(inputs, use_cache=False), strict=False)
    else:
        convert(model, batch, seq)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"mode": mode, "variant": variant, "params": params, "weights_mb": params * 4 / 2**20,
            "seconds": seconds, "cpu_seconds": cpu, "peak_mb": peak_rss_mb(), "model_mb": base, "added_mb": peak_rss_mb() - base}


def measure_step(side, variant, batch, seq, steps=5, limit_gb=14):
    """Seconds per Adam step (median of `steps` after one warm-up) and peak memory; the
    process's address space is capped at `limit_gb` (a failed allocation, not the
    machine's OOM killer)."""
    resource.setrlimit(resource.RLIMIT_AS, (limit_gb << 30, limit_gb << 30))
    import numpy as np
    import torch
    model = build(variant)
    rng = np.random.default_rng(0)
    n = batch * (steps + 1)
    V = MT5_SMALL["vocab_size"]
    arrays = {"input_ids": rng.integers(2, V, (n, seq)), "attention_mask": np.ones((n, seq), np.int64),
              "decoder_input_ids": rng.integers(2, V, (n, seq - 1))}
    labels = rng.integers(2, V, (n, seq - 1))
    from flexflow_torch.threads import GOVERNOR
    base = rss_mb()
    reset_peak()
    times = []
    if side == "flexflow":
        ffmodel, hf, head = convert(model, batch, seq, optimizer="adam")
        loaders = hf.create_data_loaders(ffmodel, arrays) + [head.create_label_loader(ffmodel, labels)]
        ffmodel.init_layers()
        for d in loaders:
            d.reset()
        for _ in range(steps + 1):
            start = time.perf_counter()
            for d in loaders:
                d.next_batch(ffmodel)
            ffmodel.forward()
            ffmodel.zero_gradients()
            ffmodel.backward()
            ffmodel.update()
            times.append(time.perf_counter() - start)
    else:
        sys.path.insert(0, str(ROOT / "examples" / "mt5"))
        from common import FlexFlowAdam
        model.train()
        opt = FlexFlowAdam(model.parameters(), lr=1e-4)
        x = {k: torch.from_numpy(v) for k, v in arrays.items()}
        y = torch.from_numpy(labels)
        for i in range(steps + 1):
            GOVERNOR.tick()                 # the thread count the embedded runtime would use
            start = time.perf_counter()
            sl = slice(i * batch, (i + 1) * batch)
            logits = model(**{k: v[sl] for k, v in x.items()}).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y[sl].reshape(-1), reduction="sum") / batch
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
    return {"mode": "step", "side": side, "variant": variant, "seconds": statistics.median(times[1:]),
            "peak_mb": peak_rss_mb(), "model_mb": base, "added_mb": peak_rss_mb() - base}


def child(args, *extra):
    out = subprocess.run([sys.executable, __file__, "--batch-size", str(args.batch_size), "--seq-length",
                          str(args.seq_length), *extra], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["killed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_rows(args):
    rows = []
    for variant in args.variants.split(","):
        got = {"export": [], "convert": []}
        for _ in range(args.repeats):
            for mode in ("export", "convert"):
                got[mode].append(child(args, "--child", mode, "--variant", variant))
        row = {"variant": variant, "load": "/".join(f"{x:.1f}" for x in os.getloadavg())}
        for mode, results in got.items():
            row[mode] = _merged(results)
        if args.step:                # the two sides' processes alternate, `repeats` each
            steps = {"torch": [], "flexflow": []}
            for k in range(args.repeats):
                for side in (("torch", "flexflow") if k % 2 == 0 else ("flexflow", "torch")):
                    steps[side].append(child(args, "--child", "step", "--side", side, "--variant", variant,
                                             "--memory-limit-gb", str(args.memory_limit_gb)))
            row["step"] = {side: _merged(results) for side, results in steps.items()}
        rows.append(row)
    return rows


def _merged(results):
    """One measurement from a process per repeat: the median times, the largest memory."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[0]
    merged = dict(ok[0], seconds=statistics.median(r["seconds"] for r in ok),
                  peak_mb=max(r["peak_mb"] for r in ok), added_mb=max(r["added_mb"] for r in ok))
    if "cpu_seconds" in ok[0]:
        merged["cpu_seconds"] = statistics.median(r["cpu_seconds"] for r in ok)
    return merged


def print_rows(rows, batch, seq):
    for row in rows:
        e, c = row["export"], row["convert"]
        if "error" in e or "error" in c:
            print(f"mt5-small ({row['variant']}): failed: {e.get('error') or c.get('error')}")
            continue
        print(f"mt5-small-sized MT5, {row['variant']} head ({e['params'] / 1e6:.0f}M parameters, "
              f"{e['weights_mb']:.0f} MB of weights), batch {batch}, seq {seq}/{seq - 1}; load {row['load']}")
        print(f"  {'':<46}{'seconds':>9}{'CPU s':>7}{'peak RSS MB':>13}{'added MB':>10}")
        for name, r in (("torch.export alone", e), ("flexflow-torch convert + compile (weights in)", c)):
            print(f"  {name:<46}{r['seconds']:>9.1f}{r['cpu_seconds']:>7.1f}{r['peak_mb']:>13.0f}{r['added_mb']:>10.0f}")
        print(f"  convert/export: time {c['seconds'] / e['seconds']:.2f}x (CPU time "
              f"{c['cpu_seconds'] / e['cpu_seconds']:.2f}x); added memory {c['added_mb'] / e['weights_mb']:.2f}x "
              "the weights")
        for side, r in row.get("step", {}).items():
            name = "PyTorch eager" if side == "torch" else "flexflow-torch (embedded)"
            if "error" in r:
                print(f"  one Adam step, {name}: failed ({r['error']})")
            else:
                print(f"  one Adam step, {name:<31}{r['seconds']:>9.1f}{'':>7}{r['peak_mb']:>13.0f}"
                      f"{r['added_mb']:>10.0f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-length", type=int, default=48)
    parser.add_argument("--variants", default="tied", help="tied, untied or tied,untied")
    parser.add_argument("--repeats", type=int, default=2, help="processes per measurement and per Adam step "
                        "side (median time)")
    parser.add_argument("--step", action="store_true", help="also time one Adam step against PyTorch")
    parser.add_argument("--memory-limit-gb", type=int, default=14, help="address-space cap of a step process")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=("export", "convert", "step"), help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="tied", help=argparse.SUPPRESS)
    parser.add_argument("--side", default="flexflow", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "step":
        print(json.dumps(measure_step(args.side, args.variant, args.batch_size, args.seq_length,
                                      limit_gb=args.memory_limit_gb)))
        return
    if args.child:
        print(json.dumps(measure(args.child, args.variant, args.batch_size, args.seq_length)))
        return
    rows = run_rows(args)
    if args.json:
        print(json.dumps(rows))
    else:
        print_rows(rows, args.batch_size, args.seq_length)


if __name__ == "__main__":
    main()
