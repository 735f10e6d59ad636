"""Reliability campaign: seeded mutations of a graph file and bad inputs across the API,
each classified by how it ends.

    python scripts/fuzz_graph_files.py [--mutations 4000] [--signed 1000] [--seed 0] [--json out.json]

Graph files (tests/models/graph_fuzz.py makes the mutations; raw bytes, program JSON,
tensors): every mutated file is loaded, and a file that loads is rebuilt on the
embedded runtime and run on the original inputs.
  clear      a flexflow-torch error (FlexFlowTorchError)
  unhelpful  any other exception (KeyError, AttributeError, ... or a crash)
  silent     it loads and runs, and computes something else than the original
  identical / harmless: it loads the same program / computes the same outputs
`--signed` mutations recompute the checksum (a deliberate edit): they must be rejected
or run; `valid edit` counts those that load, run and compute something else.

API (~250 calls with bad arguments: conversion, replay, loaders, labels, graph files,
the registry, fit): clear / unhelpful / silent (no error at all).

Only the public API is used, so the same script measures an older checkout:
`PYTHONPATH=/path/to/old/checkout python scripts/fuzz_graph_files.py`."""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import signal
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "models"))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")
import logging  # noqa: E402
logging.disable(logging.CRITICAL)            # torch's fake-tensor tracebacks of refused models

import numpy as np  # noqa: E402
import torch  # noqa: E402

import flexflow_torch  # noqa: E402
from flexflow_torch import PyTorchModel  # noqa: E402
from flexflow_torch.errors import FlexFlowTorchError  # noqa: E402

import graph_fuzz  # noqa: E402

FAMILIES = [("bytes", 0.3), ("program", 0.45), ("tensors", 0.25)]


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout("no result within 30 s")


def classify(fn):
    """("clear" | "unhelpful" | "silent", detail) for a call that must fail."""
    signal.alarm(30)
    try:
        fn()
    except FlexFlowTorchError as exc:
        return "clear", f"{type(exc).__name__}: {exc}"
    except BaseException as exc:  # noqa: BLE001 - what the campaign counts
        if isinstance(exc, KeyboardInterrupt):
            raise
        return "unhelpful", f"{type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)
    return "silent", "no error"


# --------------------------------------------------------------------------- graph files
def graph_campaign(n, signed, seed, workdir):
    ptm = PyTorchModel(graph_fuzz.Tiny().eval(), example_inputs=graph_fuzz.tiny_inputs())
    src = os.path.join(workdir, "tiny.safetensors")
    ptm.torch_to_file(src)
    inputs = graph_fuzz.tiny_inputs()
    state = graph_fuzz.program_state(flexflow_torch.load_program(src))
    reference = graph_fuzz.run_file(src, inputs)
    import random
    rng = random.Random(seed)
    results = {"unsigned": collections.Counter(), "signed": collections.Counter()}
    examples = collections.defaultdict(list)
    plan = [(False, i) for i in range(n)] + [(True, i) for i in range(signed)]
    for is_signed, i in plan:
        family = rng.choices([f for f, _ in FAMILIES if not is_signed or f != "bytes"],
                             [w for f, w in FAMILIES if not is_signed or f != "bytes"])[0]
        dst = os.path.join(workdir, "mutant.safetensors")
        case_seed = rng.randrange(2 ** 31)
        what = graph_fuzz.make_mutation(src, dst, family, case_seed, is_signed)
        signal.alarm(30)
        try:
            result, detail = graph_fuzz.outcome(dst, state, reference, inputs)
        except Timeout:
            result, detail = "unhelpful", "no result within 30 s"
        finally:
            signal.alarm(0)
        if is_signed and result == "silent":
            result = "valid edit"
        key = "signed" if is_signed else "unsigned"
        results[key][result] += 1
        results[key][f"{family}:{result}"] += 1
        if result in ("unhelpful", "silent", "valid edit") and len(examples[(key, result)]) < 8:
            examples[(key, result)].append(f"{family} seed={case_seed} [{what}] -> {detail}")
    return results, examples


# --------------------------------------------------------------------------- API
def _tiny_gpt2():
    import transformers
    config = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).eval()


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class TinyLM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.out = torch.nn.Embedding(11, 8), torch.nn.Linear(8, 11)

    def forward(self, ids):
        return self.out(torch.tanh(self.emb(ids)))


class Lambda(torch.nn.Module):
    def __init__(self, fn, params=()):
        super().__init__()
        self.fn = fn
        for i, p in enumerate(params):
            self.register_parameter(f"w{i}", torch.nn.Parameter(p))

    def forward(self, *args):
        return self.fn(self, *args)


def _embedded(batch=2):
    from flexflow_torch.verify import embedded_model
    return embedded_model(batch)


def _loaders_then(ptm, arrays, batch=2):
    ffmodel = _embedded(batch)
    ptm.torch_to_ff(ffmodel)
    ffmodel.compile(optimizer=flexflow_torch.runtime.SGDOptimizer(ffmodel, 0.0),
                    loss_type=flexflow_torch.runtime.LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[flexflow_torch.runtime.MetricsType.METRICS_MEAN_SQUARED_ERROR])
    return ptm.create_data_loaders(ffmodel, arrays)


def _convert(model, **kw):
    return PyTorchModel(model, **kw).program


def _fit(data, labels=None):
    from flexflow_torch.runtime import ActiMode, DataType, LossType, MetricsType, SGDOptimizer
    ffmodel = _embedded(4)
    x = ffmodel.create_tensor([4, 6], DataType.DT_FLOAT)
    ffmodel.dense(ffmodel.dense(x, 8, ActiMode.AC_MODE_RELU), 3)
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.1), loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR])
    labels = np.zeros((len(data), 3), np.float32) if labels is None else labels
    xl, yl = ffmodel.create_data_loader(x, data), ffmodel.create_data_loader(ffmodel.label_tensor, labels)
    ffmodel.init_layers()
    ffmodel.fit(x=xl, y=yl, epochs=1)


def _hand_written_lookup(ids, index=None):
    from flexflow_torch.runtime import AggrMode, DataType, LossType, MetricsType, SGDOptimizer
    ffmodel = _embedded(2)
    t = ffmodel.create_tensor([2, 5], DataType.DT_INT32)
    h = ffmodel.embedding(t, 11, 4, AggrMode.AGGR_MODE_NONE, name="tokens")
    if index is not None:
        it = ffmodel.create_tensor([2, 5, 4], DataType.DT_INT32)
        h = ffmodel.gather(h, it, 1)
    ffmodel.dense(ffmodel.reshape(h, [2, 20]), 3)
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.1), loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR])
    ffmodel.create_data_loader(t, ids)
    if index is not None:
        ffmodel.create_data_loader(it, index)


def api_cases(workdir):
    """(category, name, callable) for calls that must fail."""
    gpt2, mlp, lm = _tiny_gpt2(), MLP().eval(), TinyLM().eval()
    x = torch.randn(2, 3)
    ids = torch.randint(0, 11, (2, 5))
    cases = []

    def add(cat, name, fn):
        cases.append((cat, name, fn))

    # constructor: the model
    for name, bad in [("str", "bert-base"), ("int", 42), ("None", None), ("list", []), ("tensor", torch.randn(2)),
                      ("object", object()), ("class", torch.nn.Linear), ("function", lambda t: t)]:
        add("constructor", f"model={name}", lambda bad=bad: PyTorchModel(bad, example_inputs=(x,)))
    # batch_size and seq_length, from names and against example inputs
    for bad in [0, -1, 2.5, "2", True, [2], -(10 ** 9), 10 ** 12, "abc", 1e3, b"2"]:
        add("constructor", f"batch_size={bad!r} (names)", lambda bad=bad: PyTorchModel(
            gpt2, is_hf_model=True, input_names=["input_ids"], batch_size=bad, seq_length=4))
        add("constructor", f"batch_size={bad!r} (examples)", lambda bad=bad: PyTorchModel(
            mlp, example_inputs=(x,), batch_size=bad))
    for bad in [0, -1, 2.5, "8", (8,), (8, 0), (0, 8), (8, -1), [8, 8, 8], True, 10 ** 10, None, -5, (3,), "3,4",
                3.0, [], {}]:
        add("constructor", f"seq_length={bad!r}", lambda bad=bad: _convert(
            gpt2, is_hf_model=True, input_names=["input_ids"], batch_size=2, seq_length=bad))
    for bad in [0, -1, "2", 2.5, True]:
        add("analyze/verify", f"analyze batch_size={bad!r}", lambda bad=bad: flexflow_torch.analyze(
            gpt2, is_hf_model=True, input_names=["input_ids"], batch_size=bad, seq_length=4))
        add("analyze/verify", f"verify batch_size={bad!r}", lambda bad=bad: flexflow_torch.verify(
            gpt2, is_hf_model=True, input_names=["input_ids"], batch_size=bad, seq_length=4))
    for bad in [0, -1, (8, 0), "8", 10 ** 10]:
        add("analyze/verify", f"analyze seq_length={bad!r}", lambda bad=bad: flexflow_torch.analyze(
            gpt2, is_hf_model=True, input_names=["input_ids"], batch_size=2, seq_length=bad))
        add("analyze/verify", f"verify seq_length={bad!r}", lambda bad=bad: flexflow_torch.verify(
            gpt2, is_hf_model=True, input_names=["input_ids"], batch_size=2, seq_length=bad))
    for seq in (17, 20, 64):
        add("constructor", f"seq_length={seq} > n_positions 16", lambda seq=seq: _convert(
            gpt2, is_hf_model=True, input_names=["input_ids"], batch_size=2, seq_length=seq))
    # input names and example inputs
    for name, bad in [("str", "input_ids"), ("ints", [1, 2]), ("unknown", ["nope"]), ("None entry", [None]),
                      ("mismatch", ["x", "y"])]:
        add("constructor", f"input_names={name}", lambda bad=bad: _convert(
            gpt2, is_hf_model=True, input_names=bad, batch_size=2, seq_length=4))
    for name, bad in [("float", {"x": 1.0}), ("list", {"x": [1, 2]}), ("empty tuple", ()), ("empty list", []),
                      ("str", "abc"), ("0-dim", {"x": torch.tensor(1.0)}), ("tensor and int", (x, 5)),
                      ("None", {"x": None}), ("wrong features", (torch.randn(2, 5),)),
                      ("int for Linear", (torch.ones(2, 3, dtype=torch.long),)),
                      ("non-str key", {1: x}),
                      ("batches differ", {"input_ids": torch.ones(2, 4, dtype=torch.long),
                                          "attention_mask": torch.ones(3, 4, dtype=torch.long)}),
                      ("1-D ids", {"input_ids": torch.ones(4, dtype=torch.long)}),
                      ("3-D ids", {"input_ids": torch.ones(2, 4, 2, dtype=torch.long)}),
                      ("float ids", {"input_ids": torch.ones(2, 4)}),
                      ("mask longer than ids", {"input_ids": torch.ones(2, 4, dtype=torch.long),
                                                "attention_mask": torch.ones(2, 6, dtype=torch.long)})]:
        model = gpt2 if "ids" in name or name in ("batches differ", "mask longer than ids") else mlp
        add("constructor", f"example_inputs={name}", lambda bad=bad, model=model: _convert(model, example_inputs=bad))
    for name, bad in [("above vocab", [[1, 60]]), ("negative", [[-1, 2]]), ("vocab", [[50, 2]]),
                      ("huge", [[2 ** 40, 1]])]:
        add("constructor", f"example ids {name}", lambda bad=bad: _convert(
            gpt2, is_hf_model=True, example_inputs={"input_ids": torch.tensor(bad)}))
        add("constructor", f"example ids {name} (LM)", lambda bad=bad: _convert(lm, example_inputs=(torch.tensor(bad),)))
    e = {"input_ids": torch.ones(2, 4, dtype=torch.long)}
    for name, kw in [("batch", dict(batch_size=3)), ("seq", dict(seq_length=5)), ("both", dict(batch_size=1,
                     seq_length=4)), ("pair", dict(seq_length=(5, 4)))]:
        add("constructor", f"contradicts examples: {name}", lambda kw=kw: PyTorchModel(
            gpt2, is_hf_model=True, example_inputs=e, **kw))
    add("constructor", "names vs example keys", lambda: PyTorchModel(mlp, input_names=["a"], example_inputs={"b": x}))
    # models FlexFlow cannot express
    unsupported = [
        ("nonzero", lambda m, a: torch.nonzero(a).float().sum() * a, ()),
        ("float-to-int cast", lambda m, a: (a * 2.7).long().float(), ()),
        ("float-to-bool cast", lambda m, a: a.bool().float() * a, ()),
        ("empty slice :0", lambda m, a: a[:, :0] * 2, ()), ("empty slice 1:1", lambda m, a: a[:, 1:1] * 2, ()),
        ("reversed slice", lambda m, a: a[:, 3:1] * 2, ()), ("slice past end", lambda m, a: a[:, 5:] * 2, ()),
        ("narrow 0", lambda m, a: a.narrow(1, 0, 0) * 2, ()), ("log", lambda m, a: torch.log(a.abs() + 1), ()),
        ("erf", lambda m, a: torch.erf(a), ()), ("comparison", lambda m, a: (a > 0).float() * a, ()),
        ("argmax", lambda m, a: a.argmax(-1).float(), ()), ("sort", lambda m, a: a.sort(-1)[0], ()),
        ("1-D matmul", lambda m, a: a @ m.w0, (torch.randn(3),)),
        ("computed ids", lambda m, a: torch.nn.functional.embedding((a[:, 0] * 0).long() + 1, m.w0),
         (torch.randn(4, 2),)),
        ("input index", lambda m, a: a[:, a[0].long().clamp(0, 2)], ()),
        ("detach of a parameter path", lambda m, a: (a * m.w0).detach() + a, (torch.randn(3),)),
        ("log_softmax", lambda m, a: torch.log_softmax(a, -1), ()),
        ("in-place on input", lambda m, a: a.add_(1) * 2, ()),
        ("reduction of a parameter", lambda m, a: a * m.w0.sum(), (torch.randn(3),)),
        ("masked_select", lambda m, a: torch.masked_select(a, a > 0).sum() * a, ()),
        ("unique", lambda m, a: torch.unique(a).sum() * a, ()),
        ("topk", lambda m, a: torch.topk(a, 2, -1)[0], ()),
        ("scatter", lambda m, a: torch.zeros(2, 3).scatter(1, torch.tensor([[0], [1]]), a[:, :1]), ()),
        ("repeat_interleave by tensor", lambda m, a: torch.repeat_interleave(a, (a[0] > 0).long() + 1, dim=1), ()),
        ("linear on integers", lambda m, a: torch.nn.functional.linear(a.long(), m.w0), (torch.randn(4, 3),)),
    ]
    for name, fn, params in unsupported:
        add("unsupported model", name, lambda fn=fn, params=params: _convert(
            Lambda(fn, params), example_inputs=(torch.randn(2, 3),)))
    img = torch.randn(1, 3, 8, 8)
    for name, module in [("dilated conv", torch.nn.Conv2d(3, 3, 3, dilation=2)),
                         ("grouped conv", torch.nn.Conv2d(3, 3, 3, groups=3)),
                         ("transposed conv", torch.nn.ConvTranspose2d(3, 3, 3)),
                         ("ceil pool", torch.nn.AvgPool2d(3, ceil_mode=True)),
                         ("dilated max pool", torch.nn.MaxPool2d(2, dilation=2)),
                         ("uneven adaptive pool", torch.nn.AdaptiveAvgPool2d(3)),
                         ("same-padding conv", torch.nn.Conv2d(3, 3, 3, padding="same", dilation=2)),
                         ("conv3d", torch.nn.Conv3d(3, 3, 1))]:
        arg = img[:, :, None] if name == "conv3d" else img
        add("unsupported model", name, lambda module=module, arg=arg: _convert(module, example_inputs=(arg,)))
    for name, module in [("LSTM", torch.nn.LSTM(3, 4, batch_first=True)), ("GRU", torch.nn.GRU(3, 4, batch_first=True)),
                         ("RNN", torch.nn.RNN(3, 4, batch_first=True))]:
        add("unsupported model", name, lambda module=module: _convert(module, example_inputs=(torch.randn(2, 5, 3),)))

    class Counter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("n", torch.zeros(1))

        def forward(self, a):
            self.n.add_(1)
            return a * 2
    add("unsupported model", "buffer update", lambda: _convert(Counter(), example_inputs=(x,)))
    # replay
    ptm = PyTorchModel(mlp, example_inputs=(x,))
    ptm.program
    from flexflow_torch.runtime import DataType
    for name, make in [("no tensors", lambda ff: []), ("two tensors", lambda ff: [ff.create_tensor([2, 3], DataType.DT_FLOAT)] * 2),
                       ("wrong shape", lambda ff: [ff.create_tensor([2, 4], DataType.DT_FLOAT)]),
                       ("wrong batch", lambda ff: [ff.create_tensor([3, 3], DataType.DT_FLOAT)]),
                       ("int tensor", lambda ff: [ff.create_tensor([2, 3], DataType.DT_INT32)]),
                       ("None", lambda ff: [None]), ("number", lambda ff: [1]), ("string", lambda ff: "x"),
                       ("unknown name", lambda ff: {"y": ff.create_tensor([2, 3], DataType.DT_FLOAT)}),
                       ("empty dict", lambda ff: {})]:
        add("replay", name, lambda make=make: (lambda ff: ptm.torch_to_ff(ff, make(ff)))(_embedded(2)))
    for name, bad in [("None", None), ("object", object()), ("str", "ffmodel")]:
        add("replay", f"ffmodel={name}", lambda bad=bad: ptm.torch_to_ff(bad))
    # data loaders
    lm_ptm = PyTorchModel(lm, example_inputs=(ids,))
    lm_ptm.program
    good_ids = np.random.default_rng(0).integers(0, 11, (6, 5))
    for name, arrays in [("id 11", [np.where(good_ids == good_ids[5, 4], 11, good_ids)]),
                         ("id -1", [np.where(good_ids == good_ids[3, 1], -1, good_ids)]),
                         ("id 2**40", [np.full((6, 5), 2 ** 40)]), ("float ids", [good_ids.astype(np.float32)]),
                         ("NaN ids", [np.full((6, 5), np.nan)]), ("too few samples", [good_ids[:1]]),
                         ("per-sample shape", [good_ids[:, :4]]), ("two arrays", [good_ids, good_ids]),
                         ("no arrays", []), ("missing name", {"other": good_ids}), ("None", [None]),
                         ("string", ["abc"]), ("0-dim", [np.array(3)]), ("3-D", [good_ids[:, :, None].repeat(2, 2)])]:
        add("data loaders", f"LM {name}", lambda arrays=arrays: _loaders_then(lm_ptm, arrays))
    xs = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    for name, arrays in [("per-sample shape", [xs[:, :2]]), ("too few", [xs[:1]]), ("strings", [xs.astype(str)]),
                         ("dict missing", {"y": xs}), ("two arrays", [xs, xs])]:
        add("data loaders", f"MLP {name}", lambda arrays=arrays: _loaders_then(ptm, arrays))
    gpt_ptm = PyTorchModel(gpt2, is_hf_model=True, input_names=["input_ids", "attention_mask"], batch_size=2,
                           seq_length=4)
    gpt_ptm.program
    gids, gmask = np.random.default_rng(0).integers(0, 50, (4, 4)), np.ones((4, 4), np.int64)
    for name, arrays in [("id 50", {"input_ids": np.full((4, 4), 50), "attention_mask": gmask}),
                         ("mask shape", {"input_ids": gids, "attention_mask": gmask[:, :3]}),
                         ("float ids", {"input_ids": gids + 0.5, "attention_mask": gmask}),
                         ("missing mask", {"input_ids": gids}),
                         ("samples differ", {"input_ids": gids, "attention_mask": gmask[:3]})]:
        add("data loaders", f"GPT-2 {name}", lambda arrays=arrays: _loaders_then(gpt_ptm, arrays))
    add("data loaders", "LM torch ids 11", lambda: _loaders_then(lm_ptm, [torch.full((6, 5), 11)]))
    add("data loaders", "LM torch ids -2", lambda: _loaders_then(lm_ptm, [torch.full((6, 5), -2)]))
    add("data loaders", "load_constants before conversion", lambda: flexflow_torch.load_constants(_embedded(2)))
    add("replay", "create_input_tensors(None)", lambda: ptm.create_input_tensors(None))
    add("replay", "create_input_tensors(str)", lambda: ptm.create_input_tensors("ffmodel"))
    add("data loaders", "before any conversion", lambda: flexflow_torch.create_data_loaders(_embedded(2), [xs]))
    add("data loaders", "hand-written id 11", lambda: _hand_written_lookup(np.full((4, 5), 11, np.int32)))
    add("data loaders", "hand-written id -3", lambda: _hand_written_lookup(np.full((4, 5), -3, np.int32)))
    add("data loaders", "hand-written gather index 5", lambda: _hand_written_lookup(
        np.zeros((4, 5), np.int32), np.full((4, 5, 4), 5, np.int32)))
    # labels
    from flexflow_torch import CrossEntropyHead
    for name, labels in [("11", np.full((6, 5), 11)), ("-1", np.full((6, 5), -1)), ("shape", np.zeros((6, 4))),
                         ("fractions", np.full((6, 5), 1.5)), ("NaN", np.full((6, 5), np.nan)),
                         ("strings", np.full((6, 5), "a")), ("one sample", np.zeros((1, 5))),
                         ("None", None)]:
        def label_case(labels=labels):
            ffmodel = _embedded(2)
            head = CrossEntropyHead(ffmodel, lm_ptm.torch_to_ff(ffmodel)[0])
            ffmodel.compile(optimizer=flexflow_torch.runtime.SGDOptimizer(ffmodel, 0.1), loss_type=head.loss_type,
                            metrics=head.metrics)
            head.create_label_loader(ffmodel, labels)
        add("labels", name, label_case)
    # graph files
    empty = os.path.join(workdir, "empty.safetensors")
    open(empty, "wb").close()
    junk = os.path.join(workdir, "junk.safetensors")
    open(junk, "wb").write(os.urandom(256))
    text = os.path.join(workdir, "graph.json")
    open(text, "w").write(json.dumps({"format": "flexflow-torch-program"}))
    from safetensors.numpy import save_file
    plain = os.path.join(workdir, "plain.safetensors")
    save_file({"w": np.zeros(2, np.float32)}, plain)
    other = os.path.join(workdir, "other.safetensors")
    save_file({"w": np.zeros(2, np.float32)}, other, metadata={"flexflow_torch.program": "{}"})
    for name, path in [("missing", os.path.join(workdir, "nope.ff")), ("directory", workdir), ("empty", empty),
                       ("random bytes", junk), ("json", text), ("no metadata", plain), ("empty program", other),
                       ("None", None), ("int", 123)]:
        add("graph files", f"load_program {name}", lambda path=path: flexflow_torch.load_program(path))
        add("graph files", f"file_to_ff {name}", lambda path=path: flexflow_torch.file_to_ff(path, _embedded(2)))
    good = os.path.join(workdir, "mlp.safetensors")
    ptm.torch_to_file(good)
    half = os.path.join(workdir, "half.safetensors")
    open(half, "wb").write(open(good, "rb").read()[: os.path.getsize(good) // 2])
    listed = os.path.join(workdir, "list.safetensors")
    save_file({"w": np.zeros(2, np.float32)}, listed, metadata={"flexflow_torch.program": "[1, 2]"})
    wrong = os.path.join(workdir, "wrong.safetensors")
    save_file({"w": np.zeros(2, np.float32)}, wrong, metadata={"flexflow_torch.program": '{"format": "onnx"}'})
    for name, path in [("truncated", half), ("program is a list", listed), ("other format", wrong)]:
        add("graph files", f"load_program {name}", lambda path=path: flexflow_torch.load_program(path))
        add("graph files", f"file_to_ff {name}", lambda path=path: flexflow_torch.file_to_ff(path, _embedded(2)))
    for name, path in [("a directory", workdir), ("missing folder", os.path.join(workdir, "no", "x.ff")),
                       ("None", None), ("int", 123)]:
        add("graph files", f"torch_to_file {name}", lambda path=path: ptm.torch_to_file(path))
    add("graph files", "file_to_ff wrong inputs", lambda: flexflow_torch.file_to_ff(good, _embedded(2), []))
    add("graph files", "file_to_ff ffmodel=None", lambda: flexflow_torch.file_to_ff(good, None))
    # registry
    from flexflow_torch import registry
    for name, args in [("nothing", ()), ("string", ("aten::add.Tensor",)), ("packet", (torch.ops.aten.add,)),
                       ("function", (torch.add,)), ("None", (None,))]:
        add("registry", f"register {name}", lambda args=args: registry.register(*args)(lambda ctx, self: self))
    add("registry", "built-in without override", lambda: registry.register(torch.ops.aten.relu.default)(
        lambda ctx, self: self))
    add("registry", "overload name", lambda: registry.register("relu")(lambda ctx, self: self))
    add("registry", "register twice", lambda: [registry.register(torch.ops.aten.hardtanh.default)(f) for f in
                                                (lambda ctx, self: self, lambda ctx, self: self)])
    # copy-back and verify
    add("copy-back", "ffmodel=object", lambda: ptm.copy_weights_to_torch(object()))
    add("copy-back", "fresh ffmodel", lambda: ptm.copy_weights_to_torch(_embedded(2)))

    def changed_shape():
        m = MLP().eval()
        p = PyTorchModel(m, example_inputs=(x,))
        ff = _embedded(2)
        p.torch_to_ff(ff)
        ff.compile(optimizer=flexflow_torch.runtime.SGDOptimizer(ff, 0.0),
                   loss_type=flexflow_torch.runtime.LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                   metrics=[flexflow_torch.runtime.MetricsType.METRICS_MEAN_SQUARED_ERROR])
        m.fc1.weight = torch.nn.Parameter(torch.zeros(5, 3))
        p.copy_weights_to_torch(ff)
    add("copy-back", "parameter changed shape", changed_shape)
    add("copy-back", "another model's FFModel", lambda: lm_ptm.copy_weights_to_torch(
        (lambda ff: (ptm.torch_to_ff(ff), ff)[1])(_embedded(2))))
    for name, inputs in [("missing", {}), ("wrong shape", {"x": torch.randn(3, 3)}), ("list", [x]),
                         ("ints", {"x": torch.ones(2, 3, dtype=torch.long)})]:
        add("verify", name, lambda inputs=inputs: flexflow_torch.verify(ptm, inputs=inputs))
    # fit
    rng = np.random.default_rng(0)
    for name, make in [("NaN input", lambda d: d.__setitem__((5, 1), np.nan)),
                       ("inf input", lambda d: d.__setitem__((0, 0), np.inf)),
                       ("-inf input", lambda d: d.__setitem__((7, 5), -np.inf)),
                       ("NaN in the last sample", lambda d: d.__setitem__((7, 0), np.nan)),
                       ("NaN row", lambda d: d.__setitem__(4, np.nan)),
                       ("overflowing output", lambda d: d.fill(3e38))]:
        def fit_case(make=make):
            data = rng.standard_normal((8, 6)).astype(np.float32)
            make(data)
            _fit(data)
        add("fit", name, fit_case)
    add("fit", "NaN label", lambda: _fit(rng.standard_normal((8, 6)).astype(np.float32),
                                         np.full((8, 3), np.nan, np.float32)))
    return cases


def api_campaign(workdir):
    results, examples = collections.Counter(), collections.defaultdict(list)
    per_category = collections.defaultdict(collections.Counter)
    for cat, name, fn in api_cases(workdir):
        result, detail = classify(fn)
        results[result] += 1
        per_category[cat][result] += 1
        if result != "clear":
            examples[result].append(f"{cat}: {name} -> {detail[:160]}")
    return results, per_category, examples


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutations", type=int, default=4000)
    parser.add_argument("--signed", type=int, default=1000, help="mutations with the checksum recomputed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--skip-api", action="store_true")
    args = parser.parse_args()
    from flexflow_torch import serialization
    if not hasattr(serialization, "checksum"):
        args.signed = 0                 # an older version: no checksum to recompute
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (8 * 2 ** 30, hard))    # a huge allocation fails, not the machine
    signal.signal(signal.SIGALRM, _alarm)
    torch.set_num_threads(1)
    print(f"flexflow_torch from {os.path.dirname(flexflow_torch.__file__)}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    report = {}
    with tempfile.TemporaryDirectory() as workdir:
        start = time.time()
        files, file_examples = graph_campaign(args.mutations, args.signed, args.seed, workdir)
        print(f"\ngraph files: {args.mutations} mutations, {args.signed} re-signed ({time.time() - start:.0f} s)")
        for key in ("unsigned", "signed"):
            c = files[key]
            if not sum(v for k, v in c.items() if ":" not in k):
                continue
            print(f"  {key:9s} " + ", ".join(f"{k} {c[k]}" for k in ("clear", "unhelpful", "silent", "valid edit",
                                                                    "identical", "harmless") if c[k]))
            for fam, _ in FAMILIES:
                line = ", ".join(f"{k.split(':')[1]} {v}" for k, v in sorted(c.items()) if k.startswith(fam + ":"))
                if line:
                    print(f"      {fam:8s} {line}")
        for (key, result), items in file_examples.items():
            print(f"  e.g. {key} {result}:")
            for item in items:
                print(f"      {item}")
        report["files"] = {k: dict(v) for k, v in files.items()}
        if not args.skip_api:
            start = time.time()
            api, per_category, api_examples = api_campaign(workdir)
            print(f"\nAPI: {sum(api.values())} bad inputs ({time.time() - start:.0f} s): " +
                  ", ".join(f"{k} {api[k]}" for k in ("clear", "unhelpful", "silent")))
            for cat, c in per_category.items():
                print(f"  {cat:18s} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
            for result, items in api_examples.items():
                print(f"  {result}:")
                for item in items:
                    print(f"      {item}")
            report["api"] = dict(api)
            report["api_by_category"] = {k: dict(v) for k, v in per_category.items()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
