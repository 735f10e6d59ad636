"""The recorded FlexFlow program: a list of FlexFlow API calls over numbered
values, with the weights and constants they need.

One program serves every purpose: `replay` onto any FFModel (the embedded
runtime or the real `flexflow.core`), print it, save it with its weights to one
safetensors file and load it back without the PyTorch model.

Shapes are NumPy order (FlexFlow's Python convention); dtypes are FlexFlow
`DataType` member names (`DT_FLOAT`, `DT_INT32`, `DT_INT64`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from . import semantics
from .errors import ShapeError, DTypeError, ConversionError

FORMAT_VERSION = 3
#: real FlexFlow builds `<name>_<guid>` and asserts it is < 128 characters: room for a
#: replay prefix (MAX_PREFIX) and the guid
MAX_NAME = 100
MAX_PREFIX = 16


@dataclass(frozen=True)
class Value:
    """One FlexFlow tensor of the program; `part` is the axis FlexFlow splits across
    data-parallel GPUs (0 for everything derived from an input), None if none."""
    id: int
    shape: tuple
    dtype: str
    part: Optional[int] = 0

    @property
    def rank(self):
        return len(self.shape)

    @property
    def meta(self):
        return semantics.Meta(self.shape, self.dtype, self.part)

    def __repr__(self):
        return f"%{self.id}{list(self.shape)}:{self.dtype}"


@dataclass
class OpRecord:
    method: str                      # FFModel method name, or "create_tensor"
    args: dict                       # JSON-able; values as {"$v": id}, enums as {"$enum": ...}
    outputs: List[int]
    name: Optional[str] = None       # FlexFlow layer name
    node: Optional[str] = None       # FX node that produced it (for verify)
    weights: List[dict] = field(default_factory=list)   # [{"param_id", "key"}]
    kind: str = "op"                 # "op" | "input" | "constant"


def enum(name: str) -> dict:
    """An enum argument, e.g. enum("ActiMode.AC_MODE_RELU"), resolved at replay."""
    return {"$enum": name}


class FFProgram:
    def __init__(self):
        self.ops: List[OpRecord] = []
        self.values: Dict[int, Value] = {}
        self.inputs: List[int] = []
        self.input_names: List[str] = []
        self.outputs: List[int] = []
        self.output_names: List[str] = []
        self.constants: Dict[int, np.ndarray] = {}
        self.weights: Dict[str, np.ndarray] = {}
        #: weight key -> (array, tensor, version) where the array views a PyTorch parameter
        self.weight_origins: Dict[str, tuple] = {}
        #: weight key -> how to copy back into PyTorch: {"param": fqn, "shape": [...]}
        self.weight_sources: Dict[str, dict] = {}
        self.node_values: Dict[str, int] = {}
        self.notes: List[str] = []
        self.batch_size: Optional[int] = None
        #: why the program runs on one GPU only (FlexFlow's data-parallel rules)
        self.single_gpu: List[str] = []
        self._names = set()
        #: host_program.HostProgram computing the inputs from the user's arrays, or None
        self.host = None

    @property
    def user_input_names(self) -> List[str]:
        """The arrays a user feeds (the host program computes the program's inputs from them)."""
        return self.host.input_names if self.host is not None else list(self.input_names)

    # ---------------------------------------------------------------- building
    def _new_value(self, shape, dtype, part=0) -> Value:
        v = Value(len(self.values), tuple(int(s) for s in shape), dtype, part)
        self.values[v.id] = v
        return v

    def add_input(self, name, shape, dtype) -> Value:
        v = self._new_value(semantics.model.input_meta(semantics.Checker("input"), shape, dtype).shape, dtype)
        self.ops.append(OpRecord("create_tensor", {"dims": list(v.shape), "data_type": enum("DataType." + dtype)},
                                 [v.id], name=name, kind="input"))
        self.inputs.append(v.id)
        self.input_names.append(name)
        return v

    def add_constant(self, array: np.ndarray, node=None) -> Value:
        array = np.ascontiguousarray(array)
        if array.dtype == np.float32:
            dtype = "DT_FLOAT"
        elif array.dtype == np.int32:
            dtype = "DT_INT32"
        else:
            raise DTypeError(f"constants must be float32 or int32 (FlexFlow's set_tensor), got {array.dtype}")
        if array.ndim == 0:
            array = array.reshape(1)
        semantics.model.input_meta(semantics.Checker("constant"), array.shape, dtype)
        v = self._new_value(array.shape, dtype)
        self.constants[v.id] = array
        self.ops.append(OpRecord("create_tensor", {"dims": list(v.shape), "data_type": enum("DataType." + dtype),
                                                   "create_grad": False}, [v.id], node=node, kind="constant"))
        return v

    def call(self, method, inputs: dict, attrs: dict = None, *, name=None, node=None,
             weights=None, n_outputs=None):
        """Record `ffmodel.<method>(**inputs, **attrs)`; returns the output Value(s).

        The call goes through FlexFlow's rules (`semantics.check`) for any number of
        GPUs: anything FlexFlow rejects, or trains differently from the mathematics,
        raises; what only data parallelism rejects makes the program single-GPU."""
        attrs = dict(attrs or {})
        in_values = {k: v for k, v in inputs.items()}
        args = {k: [x.meta for x in v] if isinstance(v, (list, tuple)) else v.meta for k, v in in_values.items()}
        args.update({k: semantics.enum_name(v) for k, v in attrs.items()})
        metas, problems = semantics.check(method, args, semantics.ANY)
        for problem in problems:
            if not problem.parallel:
                raise problem.exception()
            if problem.message not in self.single_gpu:
                self.single_gpu.append(problem.message)
        outs = [self._new_value(m.shape, m.dtype, m.part) for m in metas]
        args = {k: _encode(v) for k, v in in_values.items()}
        args.update(attrs)
        name = self.unique_name(name)
        self.ops.append(OpRecord(method, args, [o.id for o in outs], name=name, node=node,
                                 weights=list(weights or [])))
        if method == "split":
            return outs
        return outs[0]

    def unique_name(self, name):
        """`name`, shortened to MAX_NAME (its tail and a hash of the whole) and made
        unique in the program: weights are loaded by layer name."""
        if name is None:
            return None
        if len(name) > MAX_NAME:
            name = f"{name[-(MAX_NAME - 9):]}~{zlib.crc32(name.encode()):08x}"
        base, k = name, 1
        while name in self._names:
            name, k = f"{base}.{k}", k + 1
        self._names.add(name)
        return name

    # ---------------------------------------------------------------- replay
    def replay(self, ffmodel, input_tensors, *, tensor_map=None, load_weights=True, constants=None, prefix=""):
        """Add every operator to `ffmodel`, layer names prefixed with `prefix` (so that
        several programs can share one FFModel); returns the list of output Tensors.

        Weights are registered in `ffmodel.attr_tensors`, whose entries FlexFlow's
        `compile()` loads with `set_tensor` right after it has created (and
        initialised) the weights. Constants are input tensors, which `init_layers()`
        zero-fills: they are appended to `constants` as (tensor, array) for the data
        loaders to write after it (see `loaders.InputLoader`)."""
        from .backend import enums_for
        from .semantics.model import degree_of
        from .weights import WeightLoader, current

        if not isinstance(prefix, str) or len(prefix) > MAX_PREFIX:
            raise ConversionError(f"a layer-name prefix is a string of at most {MAX_PREFIX} characters, "
                                  f"got {prefix!r}")
        degree = degree_of(ffmodel._ffconfig)
        if degree > 1 and self.single_gpu:
            raise ConversionError(f"this converted program runs on one GPU only, but the FFModel uses "
                                  f"{degree} (data parallelism): " + "; ".join(self.single_gpu))
        input_tensors = list(input_tensors)
        if len(input_tensors) != len(self.inputs):
            raise ShapeError(f"the converted model takes {len(self.inputs)} inputs "
                             f"({', '.join(self.input_names)}), got {len(input_tensors)}")
        E = enums_for(ffmodel)
        env = {} if tensor_map is None else tensor_map
        for vid, name, t in zip(self.inputs, self.input_names, input_tensors):
            want = self.values[vid]
            if not (hasattr(t, "dims") and hasattr(t, "data_type")):
                raise ShapeError(f"input {name!r}: expected a FlexFlow Tensor (ffmodel.create_tensor), got "
                                 f"{type(t).__name__}")
            dims = tuple(int(d) for d in t.dims)
            if dims != want.shape:
                raise ShapeError(f"input {name!r}: converted for shape {want.shape}, got a tensor of "
                                 f"shape {dims}; convert again with matching batch_size/seq_length")
            dt = getattr(t.data_type, "name", str(t.data_type))
            if dt != want.dtype:
                raise DTypeError(f"input {name!r}: converted for {want.dtype}, got {dt}")
            env[vid] = t
        attr_tensors = getattr(ffmodel, "attr_tensors", None)
        if attr_tensors is None:
            ffmodel.attr_tensors = attr_tensors = {}
        for op in self.ops:
            if op.kind == "input":
                continue
            kwargs = {k: _decode(v, env, E) for k, v in op.args.items()}
            if op.kind == "constant":
                t = ffmodel.create_tensor(**kwargs)
                if constants is not None:
                    constants.append((t, self.constants[op.outputs[0]]))
                env[op.outputs[0]] = t
                continue
            if op.method not in semantics.SPECS:        # only FlexFlow's training operators
                raise ConversionError(f"{op.method!r} is not a FlexFlow operator")
            if op.name is not None:
                kwargs["name"] = prefix + op.name
            result = getattr(ffmodel, op.method)(**kwargs)
            results = list(result) if isinstance(result, (list, tuple)) else [result]
            for vid, t in zip(op.outputs, results):
                env[vid] = t
            if load_weights:
                for w in op.weights:
                    attr_tensors[WeightLoader(prefix + op.name, w["param_id"], w["key"], self)] = \
                        current(self, w["key"])
        return [env[v] for v in self.outputs]

    def index_limits(self):
        """{value id: (bound, what)} for values that index something (embedding ids,
        gather indices), through reshape/concat/split (runtime.dataloader.index_limits)."""
        from .runtime.dataloader import index_limits
        layers = []
        for op in self.ops:
            if op.kind != "op":
                continue
            ins, attrs = {}, {}
            for k, v in op.args.items():
                if isinstance(v, dict) and "$v" in v:
                    ins[k] = v["$v"]
                elif isinstance(v, list) and v and all(isinstance(x, dict) and "$v" in x for x in v):
                    ins[k] = [x["$v"] for x in v]
                else:
                    attrs[k] = v
            layers.append((op.method, ins, attrs, op.outputs, op.name))
        return index_limits(layers, {vid: v.shape for vid, v in self.values.items()})

    # ---------------------------------------------------------------- text
    def ff_ops(self):
        """Method names of the real operators, in order (no inputs/constants)."""
        return [op.method for op in self.ops if op.kind == "op"]

    def __str__(self):
        lines = []
        for op in self.ops:
            outs = ", ".join(repr(self.values[o]) for o in op.outputs)
            args = ", ".join(f"{k}={_fmt(v)}" for k, v in op.args.items())
            extra = f"  # {op.name}" if op.name else ""
            lines.append(f"{outs} = {op.method if op.kind == 'op' else op.kind}({args}){extra}")
        lines.append("return " + ", ".join(f"{n}={self.values[v]!r}" for n, v in zip(self.output_names, self.outputs)))
        return "\n".join(lines)

    # ---------------------------------------------------------------- files
    def to_json(self) -> dict:
        return {
            "format": "flexflow-torch-program", "version": FORMAT_VERSION,
            "values": [[v.id, list(v.shape), v.dtype, v.part] for v in self.values.values()],
            "ops": [op.__dict__ for op in self.ops],
            "inputs": self.inputs, "input_names": self.input_names,
            "outputs": self.outputs, "output_names": self.output_names,
            "weight_sources": self.weight_sources, "node_values": self.node_values,
            "notes": self.notes, "batch_size": self.batch_size, "single_gpu": self.single_gpu,
            "host": self.host.to_json() if self.host is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict, tensors: Dict[str, np.ndarray]) -> "FFProgram":
        """The program of `to_json` (validated first: see serialization.validate)."""
        p = cls()
        for vid, shape, dtype, part in data["values"]:
            p.values[vid] = Value(vid, tuple(shape), dtype, part)
        p.ops = [OpRecord(**op) for op in data["ops"]]
        p._names = {op.name for op in p.ops if op.kind == "op" and op.name is not None}
        p.inputs, p.input_names = data["inputs"], data["input_names"]
        p.outputs, p.output_names = data["outputs"], data["output_names"]
        p.weight_sources, p.node_values = data["weight_sources"], data["node_values"]
        p.notes, p.batch_size = data["notes"], data["batch_size"]
        p.single_gpu = list(data.get("single_gpu", []))
        if data.get("host") is not None:
            from .host_program import HostProgram
            p.host = HostProgram.from_json(data["host"], tensors)
        for k, arr in tensors.items():
            if k.startswith("const/"):
                p.constants[int(k[6:])] = np.ascontiguousarray(arr)
            elif k.startswith("weight/"):
                p.weights[k[7:]] = np.ascontiguousarray(arr)
        return p


def _encode(v):
    if isinstance(v, Value):
        return {"$v": v.id}
    if isinstance(v, (list, tuple)):
        return [_encode(x) for x in v]
    return v


def _decode(v, env, E):
    if isinstance(v, dict) and "$v" in v:
        return env[v["$v"]]
    if isinstance(v, dict) and "$enum" in v:
        cls_name, member = v["$enum"].split(".")
        return getattr(getattr(E, cls_name), member)
    if isinstance(v, list):
        return [_decode(x, env, E) for x in v]
    return v


def _fmt(v):
    if isinstance(v, dict) and "$v" in v:
        return f"%{v['$v']}"
    if isinstance(v, dict) and "$enum" in v:
        return v["$enum"].split(".")[1]
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return repr(v)
