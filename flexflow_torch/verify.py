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


def embedded_model(batch_size, degree=1):
    """An embedded-runtime FFModel for library helpers: its configuration comes from
    the arguments alone, not from the process's command line or global state."""
    from .runtime import FFModel
    from .runtime.config import FFConfig, ensure_runtime
    ensure_runtime()
    return FFModel(FFConfig._from_flags(["-b", str(batch_size), "-ll:gpu", str(degree)]))


def compile_for_inference(ffmodel):
    """`compile()` for forward passes only (inference mode): FlexFlow's compile requires
    an optimizer and a loss, which are never used."""
    from . import runtime as ff
    ffmodel.compile(optimizer=ff.SGDOptimizer(ffmodel, 0.0), loss_type=ff.LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[ff.MetricsType.METRICS_MEAN_SQUARED_ERROR], comp_mode=ff.CompMode.INFERENCE)


def run_converted(program, inputs, *, degree=1):
    """Build an embedded-runtime FFModel from `program`, feed `inputs` (the user's: dict
    or list of tensors/arrays, in input order; inputs computed on the host are computed
    from them) and run one forward (inference mode).

    Returns (ffmodel, input_tensors, output_tensors, tensor_map)."""
    from .pytorch_model import Replay, create_data_loaders, create_input_tensors
    inputs = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
    ffmodel = embedded_model(len(inputs[0]), degree)
    tensors = create_input_tensors(program, ffmodel)
    tensor_map = {}
    replay = Replay(program, ffmodel, tensors, tensor_map=tensor_map)
    compile_for_inference(ffmodel)
    loaders = create_data_loaders(ffmodel, inputs)
    ffmodel.init_layers()
    for loader in loaders:
        loader.reset()
        loader.next_batch(ffmodel)
    ffmodel.forward()
    return ffmodel, tensors, replay.outputs, tensor_map


def torch_node_values(prepared, inputs):
    """Every FX node's PyTorch value for `inputs` (name -> tensor)."""
    env = {}
    state = prepared.ep.state_dict
    sig = {s.arg.name: s for s in prepared.ep.graph_signature.input_specs if hasattr(s.arg, "name")}
    by_node_name = {n.name: name for n, name in prepared.user_inputs.items()}
    inputs = prepared.ff_inputs(inputs)       # the user's inputs -> every FlexFlow input
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


def verify(model, input_names=None, batch_size=None, seq_length=None, example_inputs=None, is_hf_model=False,
           per_node=True, inputs=None) -> VerifyReport:
    """Convert `model` (or take a PyTorchModel), run both sides on the same
    inputs (the capture's example inputs, or `inputs`: a dict name -> tensor of
    the same shapes), and report per output and the first diverging node."""
    from .pytorch_model import PyTorchModel
    from .capture import eager_outputs
    import torch.utils._pytree as pytree
    ptm = model if isinstance(model, PyTorchModel) else PyTorchModel(
        model, is_hf_model=is_hf_model, input_names=input_names, batch_size=batch_size,
        seq_length=seq_length, example_inputs=example_inputs)
    program = ptm.eval_program
    prepared = ptm._capture(False)["prepared"]
    if inputs is None:
        inputs = ptm.example_inputs
    else:
        if not isinstance(inputs, dict):
            raise ConversionError(f"inputs is a dict name -> tensor, got {type(inputs).__name__}")
        missing = [n for n in ptm.input_names if n not in inputs]
        if missing:
            raise ConversionError(f"inputs lacks {missing}")
        inputs = {n: inputs[n] for n in ptm.input_names}
        for name, t in inputs.items():
            like = ptm.example_inputs[name]
            if not isinstance(t, torch.Tensor) or t.shape != like.shape or t.dtype != like.dtype:
                raise ConversionError(f"input {name!r} must be a {like.dtype} tensor of shape {tuple(like.shape)} "
                                      "(the captured one), got " + (f"{t.dtype} {tuple(t.shape)}" if isinstance(
                                          t, torch.Tensor) else type(t).__name__))
    eager = eager_outputs(ptm.model, inputs, ptm._positional, ptm.is_hf_model)
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
