"""PyTorch vs the converted model on the embedded runtime: per output (max
abs/rel error, pass/fail with `torch.testing.assert_close` defaults) and per
node, to find the first operator where the two diverge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch

from .errors import ConversionError


@dataclass
class Comparison:
    name: str
    shape: tuple
    max_abs: float
    max_rel: float
    ok: bool

    def __str__(self):
        mark = "ok  " if self.ok else "FAIL"
        return f"  {mark} {self.name:40s} {str(self.shape):20s} max|d|={self.max_abs:.3g} max rel={self.max_rel:.3g}"


@dataclass
class VerifyReport:
    outputs: List[Comparison] = field(default_factory=list)
    first_divergence: Optional[Comparison] = None
    first_divergence_node: Optional[str] = None
    nodes_checked: int = 0

    @property
    def ok(self):
        return all(c.ok for c in self.outputs)

    def __str__(self):
        lines = ["outputs:"] + [str(c) for c in self.outputs]
        if self.first_divergence is not None:
            lines.append(f"first diverging node: {self.first_divergence_node}")
            lines.append(str(self.first_divergence))
        elif self.nodes_checked:
            lines.append(f"all {self.nodes_checked} intermediate values match")
        return "\n".join(lines)


def compare(name, actual, expected) -> Comparison:
    a = torch.as_tensor(np.asarray(actual))
    e = expected.detach().cpu() if isinstance(expected, torch.Tensor) else torch.as_tensor(expected)
    if tuple(a.shape) != tuple(e.shape):
        return Comparison(name, tuple(e.shape), float("inf"), float("inf"), False)
    a = a.to(e.dtype)          # FlexFlow holds int64/bool results as int64/int32/float
    diff = (a.double() - e.double()).abs()
    max_abs = float(diff.max()) if diff.numel() else 0.0
    max_rel = float((diff / e.double().abs().clamp_min(1e-12)).max()) if diff.numel() else 0.0
    try:
        torch.testing.assert_close(a, e)
        ok = True
    except AssertionError:
        ok = False
    return Comparison(name, tuple(e.shape), max_abs, max_rel, ok)


def run_converted(program, inputs, *, lr=0.01, final_softmax=False, loss_type=None, metrics=None):
    """Build an embedded-runtime FFModel from `program`, feed `inputs` (dict or
    list of tensors/arrays, in input order) and run one forward.

    Returns (ffmodel, input_tensors, output_tensors, tensor_map)."""
    from . import runtime as ff
    inputs = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
    arrays = [np.ascontiguousarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x)
              for x in inputs]
    batch = arrays[0].shape[0]
    ff.init_flexflow_runtime({"batch_size": batch})
    ffmodel = ff.FFModel(ff.FFConfig())
    tensors = []
    for vid, arr in zip(program.inputs, arrays):
        want = program.values[vid]
        dt = getattr(ff.DataType, want.dtype)
        tensors.append(ffmodel.create_tensor(list(want.shape), dt))
    tensor_map = {}
    outputs = program.replay(ffmodel, tensors, tensor_map=tensor_map)
    if final_softmax:
        outputs = [ffmodel.softmax(outputs[0])]
    ffmodel.compile(optimizer=ff.SGDOptimizer(ffmodel, lr),
                    loss_type=loss_type or (ff.LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY if final_softmax
                                            else ff.LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE),
                    metrics=metrics or ([ff.MetricsType.METRICS_ACCURACY] if final_softmax
                                        else [ff.MetricsType.METRICS_MEAN_SQUARED_ERROR]))
    for t, arr, vid in zip(tensors, arrays, program.inputs):
        want = program.values[vid].dtype
        arr = arr.astype({"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_INT64": np.int64}[want])
        loader = ffmodel.create_data_loader(t, arr)
        loader.reset()
        loader.next_batch(ffmodel)
    ffmodel.init_layers()
    ffmodel.forward()
    return ffmodel, tensors, outputs, tensor_map


def torch_node_values(prepared, inputs):
    """Every FX node's PyTorch value for `inputs` (name -> tensor)."""
    env = {}
    state = prepared.ep.state_dict
    sig = {s.arg.name: s for s in prepared.ep.graph_signature.input_specs if hasattr(s.arg, "name")}
    by_node_name = {n.name: name for n, name in prepared.user_inputs.items()}
    with torch.no_grad():
        for node in prepared.graph.nodes:
            if node.op == "placeholder":
                if node.name in by_node_name:
                    env[node] = inputs[by_node_name[node.name]]
                elif node in prepared.folded:
                    env[node] = prepared.folded[node]
                else:
                    spec = sig.get(node.name)
                    env[node] = state.get(spec.target) if spec is not None else None
            elif node.op == "call_function":
                args = torch.fx.node.map_aggregate(node.args, lambda a: env[a] if isinstance(a, torch.fx.Node) else a)
                kwargs = torch.fx.node.map_aggregate(node.kwargs, lambda a: env[a] if isinstance(a, torch.fx.Node) else a)
                env[node] = node.target(*args, **kwargs)
    return env


def verify(model, input_names=None, batch_size=1, seq_length=None, example_inputs=None, is_hf_model=False,
           per_node=True, inputs=None) -> VerifyReport:
    """Convert `model` (or take a PyTorchModel), run both sides on the same
    inputs (the capture's example inputs, or `inputs`: a dict name -> tensor of
    the same shapes), and report per output and the first diverging node."""
    from .pytorch_model import PyTorchModel
    from .capture import _hf_flags
    import torch.utils._pytree as pytree
    ptm = model if isinstance(model, PyTorchModel) else PyTorchModel(
        model, is_hf_model=is_hf_model, input_names=input_names, batch_size=batch_size,
        seq_length=seq_length, example_inputs=example_inputs)
    program = ptm.program
    prepared = ptm.prepared
    if inputs is None:
        inputs, eager = ptm.example_inputs, prepared.eager_outputs
    else:
        missing = [n for n in ptm.input_names if n not in inputs]
        if missing:
            raise ConversionError(f"inputs lacks {missing}")
        inputs = {n: inputs[n] for n in ptm.input_names}
        was_training = ptm.model.training
        with torch.no_grad():
            ptm.model.eval()
            if ptm._positional:
                eager = ptm.model(*inputs.values())
            else:
                eager = ptm.model(**inputs, **_hf_flags(ptm.model, ptm.is_hf_model))
        ptm.model.train(was_training)
    ffmodel, _, outputs, tensor_map = run_converted(program, inputs)
    expected = [x for x in pytree.tree_leaves(eager) if isinstance(x, torch.Tensor)]
    if len(expected) != len(outputs):
        raise ConversionError(f"{len(outputs)} converted outputs vs {len(expected)} PyTorch outputs")
    report = VerifyReport()
    for name, got, want in zip(program.output_names, outputs, expected):
        report.outputs.append(compare(name, got.get_tensor(ffmodel), want))
    if per_node and not report.ok:
        values = torch_node_values(prepared, inputs)
        by_name = {n.name: n for n in prepared.graph.nodes}
        for node_name, vid in program.node_values.items():
            want = values.get(by_name.get(node_name))
            if not isinstance(want, torch.Tensor) or vid not in tensor_map:
                continue
            report.nodes_checked += 1
            c = compare(node_name, tensor_map[vid].get_tensor(ffmodel), want)
            if not c.ok:
                report.first_divergence, report.first_divergence_node = c, node_name
                break
    return report
