"""Weights in and out: binding PyTorch parameters to FlexFlow layer weights (with the
layout change between them), loading them at compile time, and copying trained
FlexFlow weights back into the PyTorch model.

A layout is the one record of how a PyTorch parameter becomes a FlexFlow weight:
optionally a slice of rows (one group of a grouped convolution), transposed (2-D),
then reshaped to the weight's shape. Copy-back applies its inverse."""

from __future__ import annotations

import numpy as np
import torch

from .errors import ConversionError


def to_flexflow(tensor: torch.Tensor, layout) -> np.ndarray:
    """The FlexFlow weight for a PyTorch parameter value (a view where possible)."""
    t = tensor.detach()
    if t.dtype != torch.float32:
        t = t.to(torch.float32)
    layout = layout or {}
    if layout.get("rows") is not None:          # one slice of axis 0 (a group of a grouped conv)
        t = t[layout["rows"][0]:layout["rows"][1]]
    if layout.get("transpose"):
        t = t.t().contiguous()
    if layout.get("shape") is not None:
        t = t.reshape(layout["shape"])
    return t.numpy()


def to_torch(array, layout, shape) -> torch.Tensor:
    """The PyTorch parameter value for a FlexFlow weight (inverse of `to_flexflow`)."""
    value = torch.from_numpy(np.array(array))
    layout = layout or {}
    if layout.get("transpose"):
        value = value.reshape(tuple(reversed(shape))).t()
    return value.reshape(shape)


def bind(program, param, layout=None) -> str:
    """Register `param` (a context.Param) as a weight of `program`; returns its key.

    The array is a view of the PyTorch parameter where the layout allows (no copy of
    a 300M-parameter model): what `compile()` loads is the model's value at that time."""
    rows = (layout or {}).get("rows")
    key = param.fqn if rows is None else f"{param.fqn}[{rows[0]}:{rows[1]}]"
    program.weights[key] = to_flexflow(param.tensor, layout)
    program.weight_sources[key] = {"param": param.fqn, "transpose": bool((layout or {}).get("transpose")),
                                   "shape": list(program.weights[key].shape)}
    if rows is not None:
        program.weight_sources[key]["rows"] = [int(rows[0]), int(rows[1])]
    return key


class WeightLoader:
    """An `ffmodel.attr_tensors` key that loads one layer parameter.

    FlexFlow's `compile()` ends with `for t, arr in attr_tensors.items():
    t.set_tensor(ffmodel, arr)`; this object turns that call into
    `get_layer_by_name(layer).get_parameter_by_id(i).set_weights(...)`, so the
    PyTorch weights are in place right after `compile()` on both backends. (Weights,
    unlike input tensors, survive init_layers.)"""

    def __init__(self, layer_name, param_id, key):
        self.layer_name, self.param_id, self.key = layer_name, param_id, key

    def set_tensor(self, ffmodel, array):
        param = ffmodel.get_layer_by_name(self.layer_name).get_parameter_by_id(self.param_id)
        param.set_weights(ffmodel, np.ascontiguousarray(array, dtype=np.float32))

    def __repr__(self):
        return f"WeightLoader({self.layer_name!r}, {self.param_id}, {self.key!r})"


def layer_parameter(ffmodel, program, key):
    """The FlexFlow Parameter holding weight `key` of `program`."""
    for op in program.ops:
        for w in op.weights:
            if w["key"] == key:
                return ffmodel.get_layer_by_name(op.name).get_parameter_by_id(w["param_id"])
    raise ConversionError(f"no FlexFlow layer holds weight {key!r}")


def read_weights(ffmodel, program):
    """{weight key: numpy array} as FlexFlow currently holds them."""
    return {key: layer_parameter(ffmodel, program, key).get_weights(ffmodel) for key in program.weights}


@torch.no_grad()
def copy_weights_to_torch(ffmodel, program, module: torch.nn.Module):
    """Write FlexFlow's current weights into `module`'s parameters (in place).

    Each weight key names its PyTorch parameter and layout (`weight_sources`). Tied
    parameters share storage, so writing one writes all."""
    params = dict(module.named_parameters(remove_duplicate=False))
    buffers = dict(module.named_buffers(remove_duplicate=False))
    for key, src in program.weight_sources.items():
        array = layer_parameter(ffmodel, program, key).get_weights(ffmodel)
        name = src["param"]
        target = params.get(name, buffers.get(name))
        if target is None:
            raise ConversionError(f"the PyTorch model has no parameter {name!r} (weight {key!r})")
        if src.get("rows") is not None:          # a slice of the parameter (one group)
            target = target[src["rows"][0]:src["rows"][1]]
        target.copy_(to_torch(array, src, tuple(target.shape)).to(target.dtype))
