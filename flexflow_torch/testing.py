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
    """Outputs (numpy, in output order) of the converted model on the embedded runtime."""
    ffmodel, _, outputs, _ = run_converted(ptm.program, inputs if inputs is not None else ptm.example_inputs)
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
    ops = Counter(ptm.program.ff_ops())
    missing = Counter(expect_ops) - ops
    if missing:
        raise AssertionError(f"missing FlexFlow ops {dict(missing)}; program:\n{ptm.program}")
    present = [op for op in forbid_ops if op in ops]
    if present:
        raise AssertionError(f"unexpected FlexFlow ops {present}; program:\n{ptm.program}")
    got = run_ff(ptm)
    want = torch_outputs(model, ptm.example_inputs, ptm._positional)
    if len(got) != len(want):
        raise AssertionError(f"{len(got)} converted outputs, PyTorch returns {len(want)}")
    for g, w in zip(got, want):
        torch.testing.assert_close(torch.from_numpy(np.asarray(g)).to(w.dtype), w)
    return ptm


def sgd_steps_ff(ptm: PyTorchModel, inputs, labels, lr, steps):
    """`steps` SGD steps of the converted model + softmax + sparse CE on one batch.

    Returns (losses, ffmodel): each loss is sum over positions of -log p[label]
    divided by the batch size, the quantity whose gradient is FlexFlow's (p-y)/batch."""
    from . import runtime as ff
    inputs = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
    B = inputs[0].shape[0]
    ff.init_flexflow_runtime({"batch_size": B})
    ffmodel = ff.FFModel(ff.FFConfig())
    program = ptm.program
    tensors = [ffmodel.create_tensor(list(program.values[v].shape), getattr(ff.DataType, program.values[v].dtype))
               for v in program.inputs]
    logits = ptm.torch_to_ff(ffmodel, tensors)[0]
    probs = ffmodel.softmax(logits)
    ffmodel.compile(optimizer=ff.SGDOptimizer(ffmodel, lr),
                    loss_type=ff.LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                    metrics=[ff.MetricsType.METRICS_ACCURACY, ff.MetricsType.METRICS_SPARSE_CATEGORICAL_CROSSENTROPY])
    loaders = [ffmodel.create_data_loader(t, np.ascontiguousarray(x.numpy())) for t, x in zip(tensors, inputs)]
    lab = np.ascontiguousarray(labels.numpy().astype(np.int32).reshape(tuple(ffmodel.label_tensor.dims)))
    loaders.append(ffmodel.create_data_loader(ffmodel.label_tensor, lab))
    ffmodel.init_layers()
    losses = []
    flat_labels = labels.reshape(-1).numpy()
    for _ in range(steps):
        for loader in loaders:
            loader.reset()
            loader.next_batch(ffmodel)
        ffmodel.forward()
        p = probs.get_tensor(ffmodel).reshape(-1, probs.dims[-1])
        losses.append(float(-np.log(p[np.arange(len(flat_labels)), flat_labels].astype(np.float64)).sum() / B))
        ffmodel.zero_gradients()
        ffmodel.backward()
        ffmodel.update()
    return losses, ffmodel


def sgd_steps_torch(model, inputs, labels, lr, steps, logits_of=lambda out: out.logits):
    """The PyTorch side of `sgd_steps_ff`: CrossEntropyLoss(reduction='sum') / batch, plain SGD."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    B = next(iter(inputs.values())).shape[0]
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        logits = logits_of(model(**inputs))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 reduction="sum") / B
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses
