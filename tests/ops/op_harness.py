"""The op-table runner (ExecuTorch tester style): convert a one-op module, check the
exact ATen overloads in the captured graph and FlexFlow operators in the program, then
train one step of the converted op on the embedded runtime under FlexFlow's semantics
and compare the output and every gradient with PyTorch (assert_close defaults).

The converted program's float inputs are fed through an `identity` layer added before
it (FlexFlow never writes the gradient of a graph input; identity's backward
accumulates), so the gradient the program writes into each input is read from that
identity's output; parameter gradients are read from the FlexFlow layer that holds
them and mapped back through the weight's layout record. The loss is
LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE against a random label: gradient
2 (y - label) / numel, PyTorch's `mse_loss` mean."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch

from flexflow_torch import PyTorchModel
from flexflow_torch.analysis import count_ops
from flexflow_torch.pytorch_model import create_input_tensors
from flexflow_torch.registry import target_name
from flexflow_torch.runtime import CompMode, LossType, MetricsType, ParameterSyncType, SGDOptimizer
from flexflow_torch.verify import embedded_model
from flexflow_torch.weights import layer_parameter, to_torch

KINDS = ("input", "param", "buffer", "constant")


@dataclass
class Case:
    """One row: `fn(*operands)` with operands made by `make(generator)` and passed as
    `kinds` (input: a forward argument; param: an nn.Parameter; buffer; constant: a
    tensor attribute torch.export lifts as a constant). `aten` and `ff` are the exact
    counts ({overload or method: n}); `xfail` gives the reason the row is expected to
    fail; `grad` False compares the forward only (integer outputs)."""
    id: str
    fn: Callable
    make: Callable
    aten: Dict[object, int]
    ff: Dict[str, int]
    kinds: Sequence[str] = ()
    xfail: Optional[str] = None
    grad: bool = True
    extra: dict = field(default_factory=dict)

    def operand_kinds(self, n):
        return tuple(self.kinds) + ("input",) * (n - len(self.kinds))


class OpModule(torch.nn.Module):
    def __init__(self, fn, operands, kinds):
        super().__init__()
        self.fn, self.kinds = fn, kinds
        for i, (kind, t) in enumerate(zip(kinds, operands)):
            if kind == "param":
                self.register_parameter(f"p{i}", torch.nn.Parameter(t.clone()))
            elif kind == "buffer":
                self.register_buffer(f"b{i}", t.clone())
            elif kind == "constant":
                setattr(self, f"c{i}", t.clone())

    def forward(self, *inputs):
        it, args = iter(inputs), []
        for i, kind in enumerate(self.kinds):
            args.append(next(it) if kind == "input" else getattr(self, {"param": "p", "buffer": "b",
                                                                        "constant": "c"}[kind] + str(i)))
        return self.fn(*args)


def build(case: Case):
    g = torch.Generator().manual_seed(0)
    operands = list(case.make(g))
    kinds = case.operand_kinds(len(operands))
    module = OpModule(case.fn, operands, kinds).eval()
    inputs = tuple(t for t, k in zip(operands, kinds) if k == "input")
    return module, inputs


def structure(case: Case, ptm: PyTorchModel):
    """(captured ATen counts, FlexFlow op counts) of the converted module."""
    aten = dict(count_ops(ptm.prepared))
    ff = dict(Counter(ptm.eval_program.ff_ops()))
    return aten, ff


def run_case(case: Case):
    module, inputs = build(case)
    ptm = PyTorchModel(module, example_inputs=inputs)
    aten, ff = structure(case, ptm)
    want_aten = {target_name(k): v for k, v in case.aten.items()}
    assert aten == want_aten, f"captured {aten}, expected {want_aten}"
    assert ff == case.ff, f"FlexFlow ops {ff}, expected {case.ff}\n{ptm.eval_program}"
    compare_training_step(ptm, module, inputs, case.grad)


def _reference(module, inputs, label):
    xs = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
    module.zero_grad()
    out = module(*xs)
    if label is not None:
        torch.nn.functional.mse_loss(out, label).backward()
    grads = {n: p.grad for n, p in module.named_parameters()}
    return out.detach(), [x.grad if x.is_floating_point() else None for x in xs], grads


def compare_training_step(ptm, module, inputs, grad=True):
    program = ptm.eval_program
    with torch.no_grad():
        probe = module(*inputs)
    train = grad and probe.is_floating_point()
    label = torch.randn(probe.shape, generator=torch.Generator().manual_seed(7)) if train else None
    want_out, want_in, want_params = _reference(module, inputs, label)

    ffmodel = embedded_model(batch_size=len(inputs[0]))
    raw = create_input_tensors(program, ffmodel)
    fed = [ffmodel.identity(t) if program.values[v].dtype == "DT_FLOAT" else t for t, v in zip(raw, program.inputs)]
    out = ptm.torch_to_ff(ffmodel, fed)[0]
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.0), loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR],
                    comp_mode=CompMode.TRAINING if train else CompMode.INFERENCE)
    ffmodel.init_layers()
    for t, a in zip(raw, ptm.input_arrays(list(inputs))):    # inputs computed on the host included
        t.set_tensor(ffmodel, a)
    ptm.load_constants(ffmodel)
    if train:
        ffmodel.label_tensor.set_tensor(ffmodel, label.numpy())
    ffmodel.forward()
    got = torch.from_numpy(np.asarray(out.get_tensor(ffmodel))).reshape(want_out.shape)
    torch.testing.assert_close(got.to(want_out.dtype), want_out, msg=lambda m: f"forward: {m}")
    if not train:
        return
    ffmodel.zero_gradients()
    ffmodel.backward()
    by_name = dict(zip(ptm.input_names, want_in))
    for i, (name, t) in enumerate(zip(program.input_names, fed)):
        g = by_name.get(name)
        if g is not None:
            got = torch.from_numpy(np.asarray(t.get_gradients(ffmodel, ParameterSyncType.PS))).reshape(g.shape)
            torch.testing.assert_close(got, g, msg=lambda m: f"gradient of input {i}: {m}")
    replay = ptm._replay(ffmodel)
    for key, src in program.weight_sources.items():
        g = want_params[src["param"]]
        array = layer_parameter(ffmodel, program, key, replay.prefix).get_gradients(ffmodel, ParameterSyncType.PS)
        torch.testing.assert_close(to_torch(array, src), g if g is not None else torch.zeros_like(to_torch(array, src)),
                                   msg=lambda m: f"gradient of {src['param']}: {m}")
