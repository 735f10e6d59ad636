"""Weights in and out: loading PyTorch weights into FlexFlow at compile time,
and copying trained FlexFlow weights back into the PyTorch model."""

from __future__ import annotations

import numpy as np
import torch

from .errors import ConversionError


class WeightLoader:
    """An `ffmodel.attr_tensors` key that loads one layer parameter.

    FlexFlow's `compile()` ends with `for t, arr in attr_tensors.items():
    t.set_tensor(ffmodel, arr)`; this object turns that call into
    `get_layer_by_name(layer).get_parameter_by_id(i).set_weights(...)`, so the
    PyTorch weights are in place right after `compile()` on both backends."""

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

    Each weight key names its PyTorch parameter (`weight_sources`) and how the
    FlexFlow layout maps to it (a transpose for GPT-2's Conv1D, a reshape for
    parameters held as embedding tables). Tied parameters share storage, so
    writing one writes all."""
    params = dict(module.named_parameters(remove_duplicate=False))
    buffers = dict(module.named_buffers(remove_duplicate=False))
    for key, src in program.weight_sources.items():
        array = layer_parameter(ffmodel, program, key).get_weights(ffmodel)
        name = src["param"]
        target = params.get(name, buffers.get(name))
        if target is None:
            raise ConversionError(f"the PyTorch model has no parameter {name!r} (weight {key!r})")
        value = torch.from_numpy(np.array(array))
        if src.get("transpose"):
            value = value.t()
        target.copy_(value.reshape(target.shape).to(target.dtype))
