"""Weights in and out: binding PyTorch parameters to FlexFlow layer weights, the layout
change between them, loading them at compile time, and copying trained FlexFlow
weights back into the PyTorch model.

A layout is the one record of how a PyTorch parameter becomes a FlexFlow weight
(`program.weight_sources[key]`): the parameter's name, PyTorch shape and dtype,
whether it is transposed (2-D: a GPT-2 Conv1D kernel, a tied LM head's table), and the
FlexFlow shape it is then viewed as (a conv1d kernel as (out, in, 1, k), a table as
rows x cols), and optionally the rows of axis 0 it holds (one group of a grouped
convolution is a layer of its own). Copy-back applies its inverse.

The program holds a copy of every weight, taken when the parameter is bound (one copy,
in the FlexFlow layout, float32): what `compile()` loads and `torch_to_file` saves is
what the PyTorch model held at conversion, never a mix of that and later changes.
`copy_weights_to_torch` brings the program's copy up to date with the trained weights
it writes into the model."""

from __future__ import annotations

import math

import numpy as np
import torch

from .errors import ConversionError, GraphFileError


def layout_of(param, layout=None) -> dict:
    """The layout record of a context.Param bound with `layout` ({"transpose", "shape", "rows"})."""
    layout = layout or {}
    torch_shape = [int(s) for s in param.tensor.shape]
    transpose = bool(layout.get("transpose"))
    if transpose and len(torch_shape) != 2:
        raise ConversionError(f"internal: only 2-D parameters can be transposed, {param.fqn} is {torch_shape}")
    rows = [int(r) for r in layout["rows"]] if layout.get("rows") is not None else None
    held = [rows[1] - rows[0]] + torch_shape[1:] if rows else torch_shape
    natural = list(reversed(held)) if transpose else held
    shape = [int(s) for s in layout["shape"]] if layout.get("shape") is not None else natural
    if math.prod(shape) != math.prod(natural):
        raise ConversionError(f"internal: {param.fqn} {torch_shape} cannot be laid out as {shape}")
    record = {"param": param.fqn, "torch_shape": torch_shape, "dtype": str(param.tensor.dtype).rpartition(".")[2],
              "transpose": transpose, "shape": shape}
    if rows:
        record["rows"] = rows
    return record


def held(tensor, layout: dict):
    """The part of a parameter a weight holds: all of it, or its rows `layout["rows"]`."""
    rows = layout.get("rows")
    return tensor if rows is None else tensor[rows[0]:rows[1]]


def to_flexflow(tensor: torch.Tensor, layout: dict) -> np.ndarray:
    """The FlexFlow weight for a PyTorch parameter value: a new float32 array, written in
    one pass (cast, transpose and view together: one copy, never an alias)."""
    out = np.empty(layout["shape"], dtype=np.float32)
    t = tensor.detach()
    if tuple(t.shape) != tuple(layout["torch_shape"]):
        raise ConversionError(f"{layout['param']} has shape {tuple(t.shape)}, the program was converted for "
                              f"{tuple(layout['torch_shape'])}")
    t = held(t, layout)
    if layout["transpose"]:
        torch.from_numpy(out).copy_(t.t())
    else:
        torch.from_numpy(out).view(t.shape).copy_(t)
    return out


def to_torch(array, layout: dict) -> torch.Tensor:
    """The PyTorch parameter value (float32) for a FlexFlow weight: the inverse of
    `to_flexflow`."""
    array = np.asarray(array, dtype=np.float32)
    if tuple(array.shape) != tuple(layout["shape"]):
        raise ConversionError(f"weight {layout['param']}: FlexFlow holds shape {tuple(array.shape)}, the "
                              f"program says {tuple(layout['shape'])}")
    value = torch.from_numpy(np.ascontiguousarray(array))
    rows = layout.get("rows")
    torch_shape = [rows[1] - rows[0]] + list(layout["torch_shape"][1:]) if rows else layout["torch_shape"]
    if layout["transpose"]:
        return value.reshape(tuple(reversed(torch_shape))).t()
    return value.reshape(torch_shape)


def bind(program, param, layout=None, snapshot=None) -> str:
    """Register `param` (a context.Param) as a weight of `program`; returns its key.

    `snapshot` ({key: (layout record, array)}) holds the copies taken by the earlier
    conversions of the same model (eval and training mode, layouts for one or more GPUs):
    a program converted later binds the same copy, not the model's value by then."""
    record = layout_of(param, layout)
    key = param.fqn if "rows" not in record else f"{param.fqn}[{record['rows'][0]}:{record['rows'][1]}]"
    if key in program.weight_sources:
        if program.weight_sources[key] != record:
            raise ConversionError(f"internal: {key} bound twice with different layouts")
        return key
    snapshot = {} if snapshot is None else snapshot
    if key not in snapshot or snapshot[key][0] != record:
        snapshot[key] = (record, to_flexflow(param.tensor, record))
    program.weights[key] = snapshot[key][1]
    program.weight_sources[key] = record
    return key


def refresh(program, module: torch.nn.Module, snapshot):
    """Bring `program`'s weights up to date with `module`'s current parameters (after a
    copy-back), through `snapshot`: arrays already taken are shared."""
    params = _named_tensors(module)
    for key, src in program.weight_sources.items():
        if key not in snapshot or snapshot[key][0] != src:
            snapshot[key] = (src, to_flexflow(_target(params, key, src), src))
        program.weights[key] = snapshot[key][1]


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


def layer_parameter(ffmodel, program, key, prefix=""):
    """The FlexFlow Parameter holding weight `key` of `program` (replayed with `prefix`)."""
    for op in program.ops:
        for w in op.weights:
            if w["key"] == key:
                return ffmodel.get_layer_by_name(prefix + op.name).get_parameter_by_id(w["param_id"])
    raise ConversionError(f"no FlexFlow layer holds weight {key!r}")


def read_weights(ffmodel, program, prefix=""):
    """{weight key: numpy array} as FlexFlow currently holds them."""
    return {key: layer_parameter(ffmodel, program, key, prefix).get_weights(ffmodel) for key in program.weights}


def _named_tensors(module):
    return {**dict(module.named_buffers(remove_duplicate=False)),
            **dict(module.named_parameters(remove_duplicate=False))}


def _target(params, key, src):
    target = params.get(src["param"])
    if target is None:
        raise ConversionError(f"the PyTorch model has no parameter {src['param']!r} (weight {key!r})")
    if tuple(target.shape) != tuple(src["torch_shape"]):
        raise ConversionError(f"{src['param']} has shape {tuple(target.shape)} in the PyTorch model, the "
                              f"program was converted for {tuple(src['torch_shape'])}")
    return target


@torch.no_grad()
def copy_weights_to_torch(ffmodel, program, module: torch.nn.Module, prefix=""):
    """Write FlexFlow's current weights into `module`'s parameters (in place), each
    through the inverse of its layout, and make them the program's copy too.

    Tied parameters share storage, so writing one writes all."""
    params = _named_tensors(module)
    targets = {key: _target(params, key, src) for key, src in program.weight_sources.items()}
    for key, src in program.weight_sources.items():
        array = layer_parameter(ffmodel, program, key, prefix).get_weights(ffmodel)
        held(targets[key], src).copy_(to_torch(array, src).to(targets[key].dtype))
        program.weights[key] = np.ascontiguousarray(array, dtype=np.float32)


def check_weights(weights: dict, sources: dict, what: str):
    """Weights read from a file agree with their layout records (GraphFileError)."""
    if set(weights) != set(sources):
        missing, extra = sorted(set(sources) - set(weights)), sorted(set(weights) - set(sources))
        raise GraphFileError(f"{what}: weights {missing} missing, {extra} without a layout record")
    for key, array in weights.items():
        src = sources[key]
        if array.dtype != np.float32:
            raise GraphFileError(f"{what}: weight {key!r} is {array.dtype}; FlexFlow weights are float32")
        if list(array.shape) != list(src["shape"]):
            raise GraphFileError(f"{what}: weight {key!r} has shape {list(array.shape)}, its layout record says "
                                 f"{src['shape']}")
