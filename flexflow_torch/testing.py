"""Test helpers (also useful to users adding converters): convert a module,
check which FlexFlow ops were emitted, run it on the embedded runtime and
compare with PyTorch using `torch.testing.assert_close` defaults."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
import torch.utils._pytree as pytree

from .pytorch_model import PyTorchModel
from .verify import run_converted


def run_ff(ptm: PyTorchModel, inputs=None):
    """Outputs (numpy, in output order) of the converted eval-mode model on the embedded runtime."""
    ffmodel, _, outputs, _ = run_converted(ptm.eval_program, inputs if inputs is not None else ptm.example_inputs)
    return [o.get_tensor(ffmodel) for o in outputs]


def torch_outputs(model, inputs, positional=False):
    with torch.no_grad():
        out = model(*inputs.values()) if positional else model(**inputs)
    return [x for x in pytree.tree_leaves(out) if isinstance(x, torch.Tensor)]


def check_module(model, example_inputs, expect_ops=(), forbid_ops=(), **kwargs) -> PyTorchModel:
    """Convert, assert the program holds `expect_ops` (method names, with
    multiplicity) and none of `forbid_ops`, run, and assert_close every output."""
    model.eval()
    ptm = PyTorchModel(model, example_inputs=example_inputs, **kwargs)
    ops = Counter(ptm.eval_program.ff_ops())
    missing = Counter(expect_ops) - ops
    if missing:
        raise AssertionError(f"missing FlexFlow ops {dict(missing)}; program:\n{ptm.eval_program}")
    present = [op for op in forbid_ops if op in ops]
    if present:
        raise AssertionError(f"unexpected FlexFlow ops {present}; program:\n{ptm.eval_program}")
    got = run_ff(ptm)
    want = torch_outputs(model, ptm.example_inputs, ptm._positional)
    if len(got) != len(want):
        raise AssertionError(f"{len(got)} converted outputs, PyTorch returns {len(want)}")
    for g, w in zip(got, want):
        torch.testing.assert_close(torch.from_numpy(np.asarray(g)).to(w.dtype), w)
    return ptm


def sgd_steps_ff(ptm: PyTorchModel, inputs, labels, lr, steps, degree=1):
    """`steps` SGD steps of the converted model under a CrossEntropyHead on one batch,
    on the embedded runtime with `degree` data-parallel GPUs.

    Returns (losses, ffmodel): each loss is sum over positions of -log p[label] over
    the samples FlexFlow lets Python read back (GPU 0's: the first batch/degree),
    divided by the batch size - the quantity whose gradient FlexFlow's CE computes."""
    from . import runtime as ff
    from .heads import CrossEntropyHead
    from .verify import embedded_model
    inputs = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
    B = inputs[0].shape[0]
    ffmodel = embedded_model(B, degree)
    logits = ptm.torch_to_ff(ffmodel)[0]
    head = CrossEntropyHead(ffmodel, logits)
    ffmodel.compile(optimizer=ff.SGDOptimizer(ffmodel, lr), loss_type=head.loss_type, metrics=head.metrics)
    loaders = ptm.create_data_loaders(ffmodel, inputs) + [head.create_label_loader(ffmodel, labels)]
    ffmodel.init_layers()
    rows = B // degree
    losses = []
    for _ in range(steps):
        for loader in loaders:
            loader.reset()
            loader.next_batch(ffmodel)
        ffmodel.forward()
        logits = head.logits.get_tensor(ffmodel)[:rows]
        losses.append(head.loss(logits, np.asarray(labels)[:rows]))
        ffmodel.zero_gradients()
        ffmodel.backward()
        ffmodel.update()
    return losses, ffmodel


def sgd_steps_torch(model, inputs, labels, lr, steps, logits_of=lambda out: out.logits, rows=None):
    """The PyTorch side of `sgd_steps_ff`: CrossEntropyLoss(reduction='sum') / batch,
    plain SGD; the reported loss covers the first `rows` samples (all by default)."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    B = next(iter(inputs.values())).shape[0]
    rows = B if rows is None else rows
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        logits = logits_of(model(**inputs))
        per_sample = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none").reshape(B, -1).sum(1)
        (per_sample.sum() / B).backward()
        opt.step()
        losses.append(float(per_sample[:rows].sum().detach() / B))
    model.eval()
    return losses
