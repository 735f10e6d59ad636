"""Training throughput: a converted model on the embedded runtime against the same model
in PyTorch eager, same initial weights, data, optimizer (SGD), loss and thread count.

Each model runs in its own process. After warm-up steps on both sides, `--rounds`
rounds of `--steps` steps per side run the two sides alternately, step by step (which
goes first alternates between rounds), each step timed, so that a burst of load on
this shared machine hits both sides alike. Prints, per model, the samples/s of each
side at its median step time, their ratio (flexflow-torch / PyTorch, > 1 is faster),
the range of the per-round ratios of median step times, and the load average around
the run.

The flexflow-torch step is FlexFlow's fit loop (next_batch on every loader, forward,
zero_gradients, backward, update); the PyTorch step is forward, cross-entropy summed
over positions / batch (the gradient FlexFlow's sparse cross-entropy gives), zero_grad,
backward, SGD step.

    python scripts/bench_runtime.py [--models mlp,gpt2,mt5] [--rounds 15] [--steps 4]
"""

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "mlp": "MLP 784-512-10, batch 64",
    "gpt2": "GPT-2 4x256, vocab 8000, tied head, seq 64, batch 8",
    "mt5": "MT5 of mt5_ff.py (d_model 128, 2+2 layers, vocab 2000), seq 24/23 (the prepared rows), batch 8",
}


def load():
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def build(name):
    """(PyTorch model, input names, seq_length, batch, make_batch(rng) -> (inputs dict, labels))."""
    import numpy as np
    import torch
    torch.manual_seed(0)
    if name == "mlp":
        model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
        batch, classes = 64, 10

        def make(rng, n):
            return {"input": rng.standard_normal((n, 784)).astype("float32")}, rng.integers(0, classes, (n,))
        return model, None, None, batch, make
    import transformers as tf
    tf.logging.set_verbosity_error()
    if name == "gpt2":
        V, S = 8000, 64
        cfg = tf.GPT2Config(vocab_size=V, n_embd=256, n_layer=4, n_head=4, n_positions=S, resid_pdrop=0.0,
                            embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
        model = tf.GPT2LMHeadModel(cfg).eval()

        def make(rng, n):
            return {"input_ids": rng.integers(0, V, (n, S))}, rng.integers(0, V, (n, S))
        return model, ["input_ids"], S, 8, make
    if name == "mt5":
        sys.path.insert(0, str(ROOT / "examples" / "mt5"))
        from common import DEFAULT_DATA, build_model, ensure_data, load_split, parse_args
        meta = ensure_data(DEFAULT_DATA)
        model = build_model(parse_args("bench", ["--optimizer", "sgd"]), meta["vocab_size"])
        L = meta["max_length"]
        data = load_split(DEFAULT_DATA, "train", None, 8)

        def make(rng, n):
            rows = rng.choice(len(data["source_ids"]), n, replace=False)
            return ({"input_ids": data["source_ids"][rows], "attention_mask": data["source_mask"][rows],
                     "decoder_input_ids": data["y_ids"][rows]}, data["lm_labels"][rows][..., 0])
        return model, ["input_ids", "attention_mask", "decoder_input_ids"], (L, L - 1), 8, make
    raise SystemExit(f"unknown model {name!r}")


def flexflow_side(model, input_names, seq, batch, inputs, labels, lr):
    """A step function training the converted model on the embedded runtime."""
    from flexflow_torch import CrossEntropyHead, PyTorchModel
    from flexflow_torch.runtime import SGDOptimizer
    from flexflow_torch.verify import embedded_model
    ffmodel = embedded_model(batch)
    if input_names is None:
        import torch
        hf = PyTorchModel(model, example_inputs={"input": torch.from_numpy(inputs["input"][:batch])},
                          batch_size=batch)
    else:
        hf = PyTorchModel(model, is_hf_model=True, input_names=input_names, batch_size=batch, seq_length=seq)
    head = CrossEntropyHead(ffmodel, hf.torch_to_ff(ffmodel)[0])
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, lr), loss_type=head.loss_type, metrics=head.metrics)
    loaders = hf.create_data_loaders(ffmodel, inputs) + [head.create_label_loader(ffmodel, labels)]
    ffmodel.init_layers()
    steps_per_pass = len(labels) // batch
    state = {"i": steps_per_pass}

    def step():
        if state["i"] == steps_per_pass:
            for d in loaders:
                d.reset()
            state["i"] = 0
        for d in loaders:
            d.next_batch(ffmodel)
        ffmodel.forward()
        ffmodel.zero_gradients()
        ffmodel.backward()
        ffmodel.update()
        state["i"] += 1
    return step


def torch_side(model, input_names, batch, inputs, labels, lr):
    import torch
    import torch.nn.functional as F
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    names = list(inputs)
    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    y = torch.from_numpy(labels).long()
    n = len(y) // batch
    state = {"i": 0}

    def step():
        i = state["i"] % n
        sl = slice(i * batch, (i + 1) * batch)
        if input_names is None:
            logits = model(tensors[names[0]][sl])
        else:
            logits = model(**{k: tensors[k][sl] for k in names}).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[sl].reshape(-1), reduction="sum") / batch
        opt.zero_grad()
        loss.backward()
        opt.step()
        state["i"] += 1
    return step


def measure(name, rounds, steps, warmup):
    import numpy as np
    import torch
    load_before = load()
    model, input_names, seq, batch, make = build(name)
    inputs, labels = make(np.random.default_rng(0), 16 * batch)
    torch_model = copy.deepcopy(model).train()      # same initial weights (ties kept)
    t0 = time.perf_counter()
    ff = flexflow_side(model, input_names, seq, batch, inputs, labels, lr=0.01)
    convert_s = time.perf_counter() - t0
    pt = torch_side(torch_model, input_names, batch, inputs, labels, lr=0.01)
    for _ in range(warmup):
        ff()
        pt()
    if steps is None:                     # rounds of about half a second
        start = time.perf_counter()
        pt()
        steps = max(4, min(200, int(0.5 / (time.perf_counter() - start))))
    times = {"ff": [], "torch": []}
    sides = [("ff", ff), ("torch", pt)]
    ratios = []
    for r in range(rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        round_times = {"ff": [], "torch": []}
        for _ in range(steps):
            for key, fn in order:
                start = time.perf_counter()
                fn()
                round_times[key].append(time.perf_counter() - start)
        ratios.append(statistics.median(round_times["torch"]) / statistics.median(round_times["ff"]))
        for key in times:
            times[key] += round_times[key]
    ff_step, torch_step = statistics.median(times["ff"]), statistics.median(times["torch"])
    return {"model": name, "label": MODELS[name], "ff_sps": batch / ff_step,
            "torch_sps": batch / torch_step, "ratio": torch_step / ff_step,
            "ratio_min": min(ratios), "ratio_max": max(ratios), "threads": torch.get_num_threads(),
            "steps_per_round": steps,
            "convert_s": convert_s, "load": f"{load_before} -> {load()}",
            "semantics": os.environ.get("FLEXFLOW_TORCH_SEMANTICS", "flexflow")}


def run_rows(models, rounds, steps, warmup):
    rows = []
    for name in models:
        out = subprocess.run([sys.executable, __file__, "--child", name, "--rounds", str(rounds),
                              "--warmup", str(warmup)] + (["--steps", str(steps)] if steps else []),
                             capture_output=True, text=True)
        if out.returncode != 0:
            rows.append({"model": name, "label": MODELS[name], "error": out.stderr.strip().splitlines()[-1:]})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def print_rows(rows):
    print(f"{'training (samples/s at the median step, alternating steps)':<78}{'flexflow-torch':>15}{'PyTorch':>9}"
          f"{'ratio':>7}{'range':>13}  load 1/5/15 min")
    for r in rows:
        if "error" in r:
            print(f"{r['label']:<78}  failed: {r['error']}")
            continue
        print(f"{r['label']:<78}{r['ff_sps']:>15.1f}{r['torch_sps']:>9.1f}{r['ratio']:>7.2f}"
              f"{r['ratio_min']:>6.2f}-{r['ratio_max']:<5.2f}  {r['load']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per side per round (default: about half a second's worth)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.rounds, args.steps, args.warmup)))
        return
    rows = run_rows(args.models.split(","), args.rounds, args.steps, args.warmup)
    if args.json:
        print(json.dumps(rows))
    else:
        print_rows(rows)


if __name__ == "__main__":
    main()
