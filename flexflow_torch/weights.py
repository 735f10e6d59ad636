"""Weights in and out: binding PyTorch parameters to FlexFlow layer weights, the layout
change between them, loading them at compile time, and copying trained FlexFlow
weights back into the PyTorch model.

A layout is the one record of how a PyTorch parameter becomes a FlexFlow weight
(`program.weight_sources[key]`): the parameter's name, PyTorch shape and dtype,
whether it is transposed (2-D: a GPT-2 Conv1D kernel, a tied LM head's table), and the
FlexFlow shape it is then viewed as (a conv1d kernel as (out, in, 1, k), a table as
rows x cols), and optionally the rows of axis 0 it holds (one group of a grouped
convolution is a layer of its own). Copy-back applies its inverse.

The program's weight for a float32 CPU parameter is a view of the parameter in the
FlexFlow layout (transposed, sliced or reshaped without copying), so that converting
costs no memory: the FFModel's weights are the one copy. Other parameters (another
dtype, a layout no view can give) are copied when bound. `compile()` and `torch_to_file`
read the views through `current()`, which raises WeightsChangedError when a parameter
was written after conversion (its version counter moved: optimizer steps,
load_state_dict, any in-place op; not writes through `.data`): what they load or save
is what the model held at conversion, never a mix of that and later changes.
`copy_weights_to_torch` writes the trained weights into the model and views them anew."""

from __future__ import annotations

import math

import numpy as np
import torch

from .errors import ConversionError, GraphFileError, WeightsChangedError


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


def _checked(tensor, layout):
    t = tensor.detach()
    if tuple(t.shape) != tuple(layout["torch_shape"]):
        raise ConversionError(f"{layout['param']} has shape {tuple(t.shape)}, the program was converted for "
                              f"{tuple(layout['torch_shape'])}")
    return t


def flexflow_view(tensor: torch.Tensor, layout: dict):
    """The FlexFlow weight as a NumPy view of a float32 CPU parameter (no copy), or None
    when the layout needs a copy or the parameter another dtype or device."""
    t = _checked(tensor, layout)
    if t.dtype != torch.float32 or t.device.type != "cpu" or t.is_sparse:
        return None
    t = held(t, layout)
    try:
        return (t.t() if layout["transpose"] else t).view(layout["shape"]).numpy()
    except RuntimeError:                    # no view gives that layout
        return None


def to_flexflow(tensor: torch.Tensor, layout: dict) -> np.ndarray:
    """The FlexFlow weight for a PyTorch parameter value: a new float32 array, written in
    one pass (cast, transpose and view together: one copy, never an alias)."""
    out = np.empty(layout["shape"], dtype=np.float32)
    t = held(_checked(tensor, layout), layout)
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


def _entry(record, tensor, copy=None):
    """A snapshot entry (layout record, array, origin): a view of `tensor` with its origin
    (view, tensor, version) for `current()`, else `copy` or a new copy of `tensor`."""
    view = flexflow_view(tensor, record)
    if view is not None:
        return record, view, (view, tensor, tensor._version)
    return record, (to_flexflow(tensor, record) if copy is None else copy), None


def _take(program, snapshot, key, record, tensor):
    """program.weights[key]: the snapshot's array for `key`, made on first use."""
    if key not in snapshot or snapshot[key][0] != record:
        snapshot[key] = _entry(record, tensor)
    program.weights[key] = snapshot[key][1]
    if snapshot[key][2] is not None:
        program.weight_origins[key] = snapshot[key][2]


def current(program, key, array=None) -> np.ndarray:
    """`array` (default: program.weights[key]), checked: a view of a PyTorch parameter
    must still hold what the parameter held at conversion."""
    array = program.weights[key] if array is None else array
    origin = program.weight_origins.get(key)
    if origin is not None and origin[0] is array and origin[1]._version != origin[2]:
        raise WeightsChangedError(
            f"the PyTorch parameter {program.weight_sources[key]['param']} was written after conversion "
            "(the converted program reads the model's weights without copying them): convert the model "
            "again after changing it, or change it after compile()")
    return array


def bind(program, param, layout=None, snapshot=None) -> str:
    """Register `param` (a context.Param) as a weight of `program`; returns its key.

    `snapshot` ({key: (layout record, array, origin)}) holds the weights bound by the
    earlier conversions of the same model (eval and training mode, layouts for one or
    more GPUs): a program converted later binds the same array."""
    record = layout_of(param, layout)
    key = param.fqn if "rows" not in record else f"{param.fqn}[{record['rows'][0]}:{record['rows'][1]}]"
    if key in program.weight_sources:
        if program.weight_sources[key] != record:
            raise ConversionError(f"internal: {key} bound twice with different layouts")
        return key
    _take(program, {} if snapshot is None else snapshot, key, record, param.tensor)
    program.weight_sources[key] = record
    return key


def refresh(program, module: torch.nn.Module, snapshot):
    """Bring `program`'s weights up to date with `module`'s current parameters (after a
    copy-back), through `snapshot`: arrays already taken are shared."""
    params = _named_tensors(module)
    for key, src in program.weight_sources.items():
        _take(program, snapshot, key, src, _target(params, key, src))


class WeightLoader:
    """An `ffmodel.attr_tensors` key that loads one layer parameter.

    FlexFlow's `compile()` ends with `for t, arr in attr_tensors.items():
    t.set_tensor(ffmodel, arr)`; this object turns that call into
    `get_layer_by_name(layer).get_parameter_by_id(i).set_weights(...)`, so the
    PyTorch weights are in place right after `compile()` on both backends. (Weights,
    unlike input tensors, survive init_layers.)"""

    def __init__(self, layer_name, param_id, key, program=None):
        self.layer_name, self.param_id, self.key, self.program = layer_name, param_id, key, program

    def set_tensor(self, ffmodel, array):
        if self.program is not None:
            current(self.program, self.key, array)
        param = ffmodel.get_layer_by_name(self.layer_name).get_parameter_by_id(self.param_id)
        copy_in = getattr(param, "copy_in", None)       # the embedded runtime reads views as they are
        if copy_in is not None:
            copy_in(array)
        else:                                           # FlexFlow copies a raw C buffer
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
    through the inverse of its layout, and make them the program's weights too (views of
    the parameters, or FlexFlow's float32 values where no view can be); returns the new
    snapshot.

    Tied parameters share storage, so writing one writes all."""
    params = _named_tensors(module)
    targets = {key: _target(params, key, src) for key, src in program.weight_sources.items()}
    arrays = {}
    for key, src in program.weight_sources.items():
        arrays[key] = np.ascontiguousarray(layer_parameter(ffmodel, program, key, prefix).get_weights(ffmodel),
                                           dtype=np.float32)
        held(targets[key], src).copy_(to_torch(arrays[key], src).to(targets[key].dtype))
    snapshot = {}          # after every write: a tied parameter is written once per key
    for key, src in program.weight_sources.items():
        snapshot[key] = _entry(src, targets[key], copy=arrays.pop(key))
        _take(program, snapshot, key, src, targets[key])
    return snapshot


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
