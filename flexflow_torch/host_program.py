"""The host-side input program (`HostProgram`): ATen calls that turn the user's arrays
(one batch) into the extra FlexFlow inputs that `passes/host_inputs.py` split off the
captured graph (position ids, pad masks, last-token indices...).

The program is a list of ATen calls from an allow-list, with JSON arguments and
tensor constants: it is saved in graph files and validated when loaded; no code."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch

from .errors import ConversionError, DataLoaderError, GraphFileError, ShapeError

aten = torch.ops.aten

#: ATen overloads a host program may call: pure functions of tensors and scalars
ALLOWED = frozenset(f"aten::{name}" for name in """
eq.Scalar eq.Tensor ne.Scalar ne.Tensor lt.Scalar lt.Tensor le.Scalar le.Tensor gt.Scalar gt.Tensor ge.Scalar
ge.Tensor logical_and.default logical_or.default logical_not.default logical_xor.default bitwise_and.Tensor
bitwise_and.Scalar bitwise_or.Tensor bitwise_or.Scalar bitwise_not.default bitwise_xor.Tensor
add.Tensor add.Scalar sub.Tensor sub.Scalar rsub.Scalar rsub.Tensor mul.Tensor mul.Scalar div.Tensor div.Scalar
div.Tensor_mode div.Scalar_mode floor_divide.default floor_divide.Scalar remainder.Tensor remainder.Scalar
fmod.Tensor fmod.Scalar neg.default abs.default sign.default clamp.default clamp.Tensor clamp_min.default
clamp_max.default maximum.default minimum.default pow.Tensor_Scalar pow.Tensor_Tensor pow.Scalar exp.default
log.default log1p.default sqrt.default rsqrt.default reciprocal.default floor.default ceil.default round.default
trunc.default
sum.default sum.dim_IntList cumsum.default cumprod.default argmax.default argmin.default max.dim min.dim
max.default min.default amax.default amin.default any.default any.dim any.dims all.default all.dim prod.default
prod.dim_int mean.dim
view.default _unsafe_view.default reshape.default expand.default unsqueeze.default squeeze.default squeeze.dim
squeeze.dims slice.Tensor select.int cat.default stack.default permute.default transpose.int t.default
flip.default roll.default clone.default contiguous.default alias.default _to_copy.default lift_fresh_copy.default
detach.default repeat.default index.Tensor gather.default index_select.default narrow.default split.Tensor
split_with_sizes.default unbind.int where.self masked_fill.Scalar masked_fill.Tensor full_like.default
zeros_like.default ones_like.default new_ones.default new_zeros.default new_full.default fill.Scalar copy.default
slice_scatter.default select_scatter.default index_put.default scatter.src scatter.value one_hot.default
type_as.default flatten.using_ints
""".split())

SPECIAL = "flexflow_torch::per_sample_offsets"
FORMAT = 1


def overload_name(target) -> str:
    """`aten::add.Tensor` for torch.ops.aten.add.Tensor."""
    return f"{target._schema.name}.{target._overloadname}"


def _resolve_op(name):
    if name not in ALLOWED:
        raise GraphFileError(f"host program: {name!r} is not an allowed operator")
    packet, overload = name[len("aten::"):].rsplit(".", 1)
    return getattr(getattr(aten, packet), overload)


def per_sample_offsets(src, per):
    """Global element positions (batch, ...) -> each sample's offsets within its own
    (per)-element row, int32; raises if a sample reads another sample's elements."""
    rows = src.reshape(src.shape[0], -1)
    owner = torch.div(rows, per, rounding_mode="floor")
    if not bool((owner == torch.arange(rows.shape[0]).unsqueeze(1)).all()):
        raise DataLoaderError("a computed index reads another sample's data: FlexFlow gathers within a sample")
    return (rows - owner * per).to(torch.int32)


# ---------------------------------------------------------------- argument encoding
_DTYPES = {str(d).split(".")[1]: d for d in (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
                                            torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)}
_FORMATS = {"contiguous_format": torch.contiguous_format, "preserve_format": torch.preserve_format}


def encode(value, ref):
    if isinstance(value, torch.fx.Node):
        return ref(value)
    if isinstance(value, (list, tuple)):
        return [encode(v, ref) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, float) and not math.isfinite(value):
            return {"$float": str(value)}
        return value
    if isinstance(value, torch.dtype):
        return {"$dtype": str(value).split(".")[1]}
    if isinstance(value, torch.device):
        return {"$device": "cpu"}
    if isinstance(value, torch.layout):
        return {"$layout": "strided"}
    if isinstance(value, torch.memory_format):
        return {"$format": str(value).split(".")[1]}
    raise ConversionError(f"host program: cannot record the argument {value!r}")


def _decode(value, env):
    if isinstance(value, list):
        return [_decode(v, env) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise GraphFileError(f"host program: bad argument {value!r}")
    (kind, v), = value.items()
    try:
        if kind == "$r":
            return env[v]
        if kind == "$float":
            return float({"inf": "inf", "-inf": "-inf", "nan": "nan"}[v])
        if kind == "$dtype":
            return _DTYPES[v]
        if kind == "$device":
            return torch.device("cpu")
        if kind == "$layout":
            return torch.strided
        if kind == "$format":
            return _FORMATS[v]
    except KeyError as exc:
        raise GraphFileError(f"host program: unknown reference {value!r}") from exc
    raise GraphFileError(f"host program: bad argument {value!r}")


# ---------------------------------------------------------------- the program
class HostProgram:
    """ATen calls run on the host: the user's arrays (one batch) -> every FlexFlow input.

    `inputs`: the user's input names and dtypes, in the user's order; `outputs`: for
    each FlexFlow input tensor of the program, in order, its name and the value that
    feeds it (a user input passes through)."""

    def __init__(self, inputs, steps, outputs, constants, batch_size):
        self.inputs = [tuple(i) for i in inputs]    # [(name, dtype name, shape of one batch)]
        self.steps = list(steps)                # [{"op", "args", "kwargs", "out"}]
        self.outputs = list(outputs)            # [(FlexFlow input name, ref)]
        self.constants = dict(constants)        # key -> tensor
        self.batch_size = int(batch_size)

    @property
    def input_names(self):
        return [i[0] for i in self.inputs]

    @property
    def input_shapes(self):
        """The user's inputs' shapes for one batch, by name."""
        return {name: tuple(shape) for name, _, shape in self.inputs}

    @property
    def output_names(self):
        return [n for n, _ in self.outputs]

    def __call__(self, arrays: dict) -> "OrderedDict":
        """One batch: {user input: array} -> {FlexFlow input: tensor}, PyTorch's values."""
        env = {f"const:{k}": v for k, v in self.constants.items()}
        for name, dtype, _ in self.inputs:
            a = arrays[name]
            env[f"input:{name}"] = (a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))).to(
                _DTYPES[dtype])
        with torch.no_grad():
            for step in self.steps:
                args = _decode(step["args"], env)
                kwargs = {k: _decode(v, env) for k, v in step["kwargs"].items()}
                if step["op"] == SPECIAL:
                    env[step["out"]] = per_sample_offsets(*args)
                elif step["op"] == "getitem":
                    env[step["out"]] = args[0][args[1]]
                else:
                    env[step["out"]] = _resolve_op(step["op"])(*args, **kwargs)
        return OrderedDict((name, env[ref]) for name, ref in self.outputs)

    def feed(self, arrays: dict) -> list:
        """The user's arrays (all samples) -> NumPy arrays of every FlexFlow input, computed
        batch by batch (a last partial batch is padded by repeating its last sample)."""
        missing = [n for n in self.input_names if n not in arrays]
        if missing:
            raise ConversionError(f"no array for the inputs {missing}; the model takes {self.input_names}")
        arrays = {n: np.asarray(arrays[n].detach().cpu().numpy() if hasattr(arrays[n], "detach") else arrays[n])
                  for n in self.input_names}
        for name, shape in self.input_shapes.items():
            if tuple(arrays[name].shape[1:]) != shape[1:]:
                raise ShapeError(f"input {name!r}: converted for samples of shape {shape[1:]}, got "
                                 f"{tuple(arrays[name].shape[1:])}; convert again with matching shapes")
        counts = {len(a) for a in arrays.values()}
        if len(counts) != 1:
            raise DataLoaderError(f"every input needs as many samples: {({n: len(a) for n, a in arrays.items()})}")
        total, B = counts.pop(), self.batch_size
        parts = {name: [] for name in self.output_names}
        for start in range(0, total, B):
            batch = {}
            for n, a in arrays.items():
                chunk = a[start:start + B]
                if len(chunk) < B:
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], B - len(chunk), axis=0)])
                batch[n] = chunk
            for name, value in self(batch).items():
                parts[name].append(value.numpy()[:min(B, total - start)])
        return [np.concatenate(parts[name]) for name in self.output_names]

    # ---------------------------------------------------------------- files
    def to_json(self) -> dict:
        return {"format": FORMAT, "inputs": self.inputs, "steps": self.steps, "outputs": self.outputs,
                "constants": {k: [list(v.shape), str(v.dtype).split(".")[1]] for k, v in self.constants.items()},
                "batch_size": self.batch_size}

    @classmethod
    def from_json(cls, data: dict, tensors: dict) -> "HostProgram":
        """Validated: known format, allowed operators only, every reference defined before use."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise GraphFileError("host program: unknown format")
        try:
            inputs = [(str(n), str(d), [int(x) for x in shape]) for n, d, shape in data["inputs"]]
            constants = {}
            for k, (shape, dtype) in data["constants"].items():
                t = torch.as_tensor(np.asarray(tensors[f"host/{k}"]))
                if list(t.shape) != list(shape) or dtype not in _DTYPES:
                    raise GraphFileError(f"host program: constant {k} does not match its record")
                constants[k] = t.to(_DTYPES[dtype])
            defined = {f"const:{k}" for k in constants} | {f"input:{n}" for n, _, _ in inputs}
            for d in {d for _, d, _ in inputs}:
                if d not in _DTYPES:
                    raise GraphFileError(f"host program: unknown dtype {d!r}")
            steps = []
            for step in data["steps"]:
                if set(step) != {"op", "args", "kwargs", "out"} or not isinstance(step["args"], list) \
                        or not isinstance(step["kwargs"], dict) or not isinstance(step["out"], str):
                    raise GraphFileError("host program: malformed step")
                if step["op"] not in (SPECIAL, "getitem"):
                    _resolve_op(step["op"])
                _check_refs(step["args"], defined)
                _check_refs(list(step["kwargs"].values()), defined)
                defined.add(step["out"])
                steps.append(step)
            outputs = [(str(n), str(r)) for n, r in data["outputs"]]
            if any(r not in defined for _, r in outputs):
                raise GraphFileError("host program: an output refers to nothing")
            program = cls(inputs, steps, outputs, constants, int(data["batch_size"]))
        except GraphFileError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise GraphFileError(f"host program: malformed ({exc})") from exc
        program.check_runs()
        return program

    def check_runs(self):
        """One trial batch of zeros: a program that cannot run fails when the file loads,
        not at the first batch of training."""
        zeros = {name: torch.zeros(shape, dtype=_DTYPES[dtype]) for name, dtype, shape in self.inputs}
        try:
            return self(zeros)
        except GraphFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the recorded ATen calls
            raise GraphFileError(f"host program: does not run on a batch of its recorded shapes "
                                 f"({type(exc).__name__}: {exc})") from exc


def _check_refs(value, defined):
    if isinstance(value, list):
        for v in value:
            _check_refs(v, defined)
    elif isinstance(value, dict):
        if "$r" in value and value["$r"] not in defined:
            raise GraphFileError(f"host program: {value['$r']!r} is used before it is defined")
