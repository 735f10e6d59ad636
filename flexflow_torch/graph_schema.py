"""The graph file's schema, checked before anything is replayed.

A loaded program must be one the converter could have recorded: every key and type
as `FFProgram.to_json` writes them; only FlexFlow's training operators
(`semantics.SPECS`), called with the arguments of their FFModel method, each
argument of its type; every tensor reference defined once, before use; every output
shape, dtype and data-parallel partition re-derived through FlexFlow's rules
(`semantics.check`, as the recorder did); layer names unique; every weight bound once,
float32, of its layer's declared shape, with an invertible layout record; sizes
bounded before any allocation. Every failure is a `GraphFileError` naming where."""

from __future__ import annotations

import functools
import inspect
import math
import re

import numpy as np

from . import semantics
from .errors import GraphFileError
from .graph import FORMAT_VERSION, MAX_NAME

FORMAT = "flexflow-torch-program"
MAX_ELEMENTS = 2 ** 31 - 1          # per tensor: FlexFlow's int32 volumes
MAX_INT = 2 ** 31 - 1
MAX_TEXT = 4096                     # notes, node names, weight keys
TOP_KEYS = {"format", "version", "values", "ops", "inputs", "input_names", "outputs", "output_names",
            "weight_sources", "node_values", "notes", "batch_size", "single_gpu", "host"}
OP_KEYS = {"method", "args", "outputs", "name", "node", "weights", "kind"}
LAYOUT_KEYS = {"param", "torch_shape", "dtype", "transpose", "shape"}
HOST_DTYPES = {"F32", "F64", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"}
DTYPES = {"DT_FLOAT": "<f4", "DT_INT32": "<i4"}
WEIGHT_DTYPES = {"float32", "float16", "bfloat16", "float64"}
#: FFModel parameters a file never carries (objects, or the layer name kept apart)
NOT_IN_FILES = {"name", "shared_op", "kernel_initializer", "bias_initializer", "kernel_regularizer"}

INT, BOOL, FLOAT, INTS, OPT_INT = "int", "bool", "float", "int list", "int or null"
#: every operator attribute a program may carry, by FlexFlow's parameter name
ATTR_TYPES = {
    "out_dim": INT, "use_bias": BOOL, "out_channels": INT, "kernel_h": INT, "kernel_w": INT,
    "stride_h": INT, "stride_w": INT, "padding_h": INT, "padding_w": INT, "groups": INT,
    "num_embeddings": INT, "embedding_dim": INT, "axes": INTS, "dims": INTS, "keepdims": BOOL,
    "axis": INT, "sizes": INTS, "shape": INTS, "perm": INTS, "dim": INT, "exponent": FLOAT,
    "scalar": FLOAT, "inplace": BOOL, "inplace_a": BOOL, "rate": FLOAT, "seed": INT, "eps": FLOAT,
    "elementwise_affine": BOOL, "relu": BOOL, "a_seq_length_dim": OPT_INT, "b_seq_length_dim": OPT_INT,
    "embed_dim": INT, "num_heads": INT, "kdim": INT, "vdim": INT, "dropout": FLOAT, "bias": BOOL,
    "add_bias_kv": BOOL, "add_zero_attn": BOOL,
    "activation": "ActiMode", "datatype": "DataType", "dtype": "DataType", "pool_type": "PoolType",
    "aggr": "AggrMode",
}


class _Where:
    def __init__(self, path):
        self.path = path

    def fail(self, what, message):
        raise GraphFileError(f"{self.path}: {what}: {message}")


def check_version(data, path):
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise GraphFileError(f"{path} is not a flexflow-torch program")
    version = data.get("version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise GraphFileError(f"{path}: graph file format version {version!r} is not supported: this "
                             f"flexflow-torch reads version {FORMAT_VERSION}; convert the model again")


def check_header(headers: dict, path):
    """Tensor names, dtypes and sizes from the safetensors header, before reading data."""
    w = _Where(path)
    for name, (dtype, shape) in headers.items():
        kind, _, rest = name.partition("/")
        weight = kind == "weight" and rest and dtype == "F32"
        constant = kind == "const" and re.fullmatch(r"\d{1,9}", rest) and dtype in ("F32", "I32")
        host = kind == "host" and re.fullmatch(r"\w{1,200}", rest) and dtype in HOST_DTYPES
        if not (weight or constant or host):
            w.fail(f"tensor {name!r}", f"unexpected tensor ({dtype}); a graph file holds float32 "
                   "weight/<key>, float32/int32 const/<id> and host/<key> (host-side inputs) tensors")
        ranks = range(0, 9) if host else range(1, 5)
        if len(shape) not in ranks or math.prod(shape) > MAX_ELEMENTS or (0 in shape and not host):
            w.fail(f"tensor {name!r}", f"shape {list(shape)} is out of bounds")


# --------------------------------------------------------------------------- JSON types
def _int(w, v, what, lo=-MAX_INT, hi=MAX_INT):
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        w.fail(what, f"expected an integer in [{lo}, {hi}], got {_short(v)}")
    return v


def _str(w, v, what, limit=MAX_TEXT):
    if not isinstance(v, str) or len(v) > limit:
        w.fail(what, f"expected a string of at most {limit} characters, got {_short(v)}")
    return v


def _list(w, v, what, limit=10 ** 7):
    if not isinstance(v, list) or len(v) > limit:
        w.fail(what, f"expected a list, got {_short(v)}")
    return v


def _keys(w, v, keys, what):
    if not isinstance(v, dict) or set(v) != set(keys):
        got = sorted(v) if isinstance(v, dict) else _short(v)
        w.fail(what, f"expected the keys {sorted(keys)}, got {got}")
    return v


def _shape(w, v, what):
    _list(w, v, what, 4)
    if not v:
        w.fail(what, "a shape has 1 to 4 axes")
    dims = [_int(w, d, what, 1) for d in v]
    if math.prod(dims) > MAX_ELEMENTS:
        w.fail(what, f"{dims} holds more than {MAX_ELEMENTS} elements")
    return tuple(dims)


def _short(v):
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _enum(w, v, cls, what):
    from .runtime import enums
    if not (isinstance(v, dict) and set(v) == {"$enum"} and isinstance(v["$enum"], str)):
        w.fail(what, f"expected a {cls} member, got {_short(v)}")
    name, _, member = v["$enum"].partition(".")
    if name != cls or member not in getattr(enums, cls).__members__:
        w.fail(what, f"{v['$enum']!r} is not a {cls} member")
    return member


def _attr(w, v, kind, what):
    if kind in (INT, OPT_INT):
        return None if v is None and kind == OPT_INT else _int(w, v, what)
    if kind == BOOL:
        if not isinstance(v, bool):
            w.fail(what, f"expected true or false, got {_short(v)}")
        return v
    if kind == FLOAT:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            w.fail(what, f"expected a finite number, got {_short(v)}")
        return v
    if kind == INTS:
        return [_int(w, x, what) for x in _list(w, v, what, 64)]
    _enum(w, v, kind, what)
    return v


@functools.lru_cache(maxsize=None)
def method_parameters(method):
    """(tensor parameters, {attribute: required?}) of an FFModel training operator."""
    from .runtime.model import FFModel
    spec = semantics.SPECS[method]
    params = inspect.signature(getattr(FFModel, method)).parameters
    attrs = {k: p.default is inspect.Parameter.empty for k, p in params.items()
             if k != "self" and k not in spec.tensors and k not in NOT_IN_FILES}
    return tuple(spec.tensors), attrs


# --------------------------------------------------------------------------- the program
def validate(data: dict, tensors: dict, path):
    """Raise GraphFileError unless `data` (a parsed program) and `tensors` are a program
    `FFProgram.to_json` could have written."""
    w = _Where(path)
    _keys(w, data, TOP_KEYS, "program")
    values = {}
    for i, entry in enumerate(_list(w, data["values"], "values")):
        what = f"values[{i}]"
        if not isinstance(entry, list) or len(entry) != 4:
            w.fail(what, "expected [id, shape, dtype, partition axis]")
        vid, shape, dtype, part = entry
        if _int(w, vid, what, 0) != i:
            w.fail(what, f"value ids are 0, 1, ... in order; got {vid}")
        shape = _shape(w, shape, what)
        if not isinstance(dtype, str) or dtype not in DTYPES:
            w.fail(what, f"dtype {_short(dtype)} is not one of {sorted(DTYPES)}")
        if part is not None:
            _int(w, part, what, 0, len(shape) - 1)
        values[vid] = semantics.Meta(shape, dtype, part)
    batch = _int(w, data["batch_size"], "batch_size", 1)
    sources = _weight_sources(w, data["weight_sources"])
    defined, names, used_keys, parallel, inputs, input_names = set(), set(), set(), [], [], []
    constants = set()

    def define(vid, what):
        if vid not in values:
            w.fail(what, f"output %{_short(vid)} is not in the value table")
        if vid in defined:
            w.fail(what, f"redefines %{vid} (a repeated op record?)")
        defined.add(vid)

    for i, op in enumerate(_list(w, data["ops"], "ops")):
        _keys(w, op, OP_KEYS, f"ops[{i}]")
        what = f"ops[{i}] ({_short(op['method'])})"
        outputs = [_int(w, o, what, 0) for o in _list(w, op["outputs"], what, 64)]
        if op["node"] is not None:
            _str(w, op["node"], what)
        if op["kind"] in ("input", "constant"):
            meta = _create_tensor(w, op, values, outputs, what)
            if op["kind"] == "input":
                if meta.shape[0] != batch:
                    w.fail(what, f"input of shape {list(meta.shape)} does not hold the batch ({batch}) on axis 0")
                inputs.append(outputs[0])
                input_names.append(_str(w, op["name"], what, MAX_NAME))
            else:
                constants.add(outputs[0])
            define(outputs[0], what)
            continue
        if op["kind"] != "op":
            w.fail(what, f"kind {_short(op['kind'])} is not input, constant or op")
        if not isinstance(op["method"], str) or op["method"] not in semantics.SPECS:
            w.fail(what, f"{_short(op['method'])} is not a FlexFlow training operator")
        rule, metas, limits = _check_op(w, op, values, defined, what)
        for o in outputs:
            define(o, what)
        if len(metas) != len(outputs) or any(values[o] != m for o, m in zip(outputs, metas)):
            w.fail(what, f"the recorded outputs {[_fmt(values.get(o)) for o in outputs]} are not what FlexFlow "
                   f"computes: {[_fmt(m) for m in metas]}")
        parallel += [p for p in limits if p not in parallel]
        if op["name"] is not None:
            name = _str(w, op["name"], what, MAX_NAME)
            if name in names:
                w.fail(what, f"layer name {name!r} is used twice (a repeated op record?)")
            names.add(name)
        _check_weights(w, op, semantics.SPECS[op["method"]].weights(**rule), sources, used_keys, tensors, what)
    if set(values) != defined:
        w.fail("values", f"values {sorted(set(values) - defined)[:5]} are defined by no op")
    if data["inputs"] != inputs or data["input_names"] != input_names or len(set(input_names)) != len(inputs):
        w.fail("inputs", "the inputs and their names must be the input ops', in order, names unique")
    outputs = [_int(w, o, "outputs", 0) for o in _list(w, data["outputs"], "outputs")]
    output_names = [_str(w, n, "output_names") for n in _list(w, data["output_names"], "output_names")]
    if not outputs or len(outputs) != len(output_names) or not set(outputs) <= defined:
        w.fail("outputs", "one defined value per output name, at least one")
    if used_keys != set(sources):
        w.fail("weight_sources", f"weights {sorted(set(sources) - used_keys)[:5]} belong to no layer")
    if not isinstance(data["node_values"], dict):
        w.fail("node_values", "expected an object")
    for name, vid in data["node_values"].items():
        _str(w, name, "node_values")
        if not _is_id(vid) or vid not in defined:
            w.fail("node_values", f"{_short(name)} names an undefined value")
    for key in ("notes", "single_gpu"):
        [_str(w, n, key) for n in _list(w, data[key], key, 10 ** 5)]
    if data["single_gpu"] != parallel:
        w.fail("single_gpu", f"the program's data-parallel limits are {parallel}, the file says "
               f"{data['single_gpu']}")
    expected = {f"weight/{k}" for k in sources} | {f"const/{v}" for v in constants} | \
        _check_host(w, data, input_names, [values[i] for i in inputs], batch, tensors)
    if set(tensors) != expected:
        w.fail("tensors", f"missing {sorted(expected - set(tensors))[:5]}, unexpected "
               f"{sorted(set(tensors) - expected)[:5]}")
    for vid in constants:
        array, meta = tensors[f"const/{vid}"], values[vid]
        if tuple(array.shape) != meta.shape or array.dtype.str != DTYPES[meta.dtype]:
            w.fail(f"const/{vid}", f"{array.dtype} {list(array.shape)} does not match its value "
                   f"{meta.dtype} {list(meta.shape)}")
        if array.dtype == np.float32 and not np.isfinite(array).all():
            w.fail(f"const/{vid}", "holds NaN or infinity")
    _check_constant_indices(w, data, values, constants, tensors)


def _check_constant_indices(w, data, values, constants, tensors):
    """Constant embedding ids and gather indices lie in range (FlexFlow does not check)."""
    from .graph import FFProgram
    from .runtime.dataloader import check_index_range
    program = FFProgram.from_json(dict(data, host=None), {})
    for vid, (bound, what) in program.index_limits().items():
        if vid in constants:
            try:
                check_index_range(tensors[f"const/{vid}"], bound, what, f"const/{vid}")
            except GraphFileError:
                raise
            except Exception as exc:  # noqa: BLE001 - DataLoaderError, reported as a file problem
                w.fail(f"const/{vid}", str(exc))


def _check_host(w, data, input_names, input_metas, batch, tensors):
    """The host-side input program (passes/host_inputs.py): allowed ATen calls only, every
    reference defined before use, runs on a batch of zeros, its outputs exactly the
    program's inputs (names and shapes). Returns the names of its tensors."""
    if data["host"] is None:
        return set()
    from .host_program import HostProgram
    host = HostProgram.from_json(data["host"], {k: v for k, v in tensors.items() if k.startswith("host/")})
    if host.output_names != input_names:
        w.fail("host", f"the host program computes {host.output_names[:5]}, the program takes {input_names[:5]}")
    if host.batch_size != batch or len(set(host.input_names)) != len(host.input_names):
        w.fail("host", "the host program's batch or input names do not fit the program")
    shapes = [list(t.shape) for t in host.check_runs().values()]
    if shapes != [list(m.shape) for m in input_metas]:
        w.fail("host", f"the host program computes shapes {shapes[:5]}, the program takes "
               f"{[list(m.shape) for m in input_metas][:5]}")
    return {f"host/{k}" for k in host.constants}


def _is_id(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _fmt(meta):
    return None if meta is None else f"{list(meta.shape)} {meta.dtype} part={meta.part}"


def _weight_sources(w, sources):
    if not isinstance(sources, dict):
        w.fail("weight_sources", "expected an object")
    for key, src in sources.items():
        what = f"weight_sources[{_short(key)}]"
        _str(w, key, what)
        _keys(w, src, LAYOUT_KEYS | ({"rows"} if isinstance(src, dict) and "rows" in src else set()), what)
        _str(w, src["param"], what)
        torch_shape = [_int(w, s, what, 1) for s in _list(w, src["torch_shape"], what, 8)]
        if "rows" in src:           # one slice of axis 0 (a group of a grouped convolution)
            rows = [_int(w, r, what, 0, torch_shape[0]) for r in _list(w, src["rows"], what, 2)]
            if len(rows) != 2 or rows[0] >= rows[1]:
                w.fail(what, f"rows {rows} are no slice of axis 0 of {torch_shape}")
            torch_shape = [rows[1] - rows[0]] + torch_shape[1:]
        shape = list(_shape(w, src["shape"], what))
        if not isinstance(src["dtype"], str) or src["dtype"] not in WEIGHT_DTYPES:
            w.fail(what, f"parameter dtype {_short(src['dtype'])} is not a floating-point type")
        if not isinstance(src["transpose"], bool):
            w.fail(what, "transpose is true or false")
        natural = list(reversed(torch_shape)) if src["transpose"] else torch_shape
        if (src["transpose"] and len(torch_shape) != 2) or math.prod(natural) != math.prod(shape):
            w.fail(what, f"a {torch_shape} parameter cannot be laid out as {shape}")
    return sources


def _create_tensor(w, op, values, outputs, what):
    if op["method"] != "create_tensor" or len(outputs) != 1 or op["weights"] != []:
        w.fail(what, "an input or constant is one create_tensor with one output and no weights")
    keys = {"dims", "data_type"} | ({"create_grad"} if op["kind"] == "constant" else set())
    args = _keys(w, op["args"], keys, what)
    if op["kind"] == "constant" and (args["create_grad"] is not False or op["name"] is not None):
        w.fail(what, "a constant has create_grad false and no name")
    dims = _shape(w, args["dims"], what)
    dtype = _enum(w, args["data_type"], "DataType", what)
    meta = values.get(outputs[0])
    if meta is None or meta.shape != dims or meta.dtype != dtype or meta.part != 0:
        w.fail(what, f"creates {list(dims)} {dtype}, the value table says {_fmt(meta)}")
    try:
        semantics.model.input_meta(semantics.Checker(op["kind"]), dims, dtype)
    except Exception as exc:  # noqa: BLE001
        w.fail(what, str(exc))
    return meta


def _ref(w, v, values, defined, what):
    if not (isinstance(v, dict) and set(v) == {"$v"}):
        w.fail(what, f"expected a tensor reference, got {_short(v)}")
    if not _is_id(v["$v"]) or v["$v"] not in defined:
        w.fail(what, f"uses %{_short(v['$v'])} before any op defines it")
    return values[v["$v"]]


def _rule_args(w, op, values, defined, what):
    """The op's arguments as FlexFlow's rules see them (tensors as Meta, enums as names)."""
    tensors, attrs = method_parameters(op["method"])
    args = op["args"]
    if not isinstance(args, dict):
        w.fail(what, "args must be an object")
    unknown = set(args) - set(tensors) - set(attrs)
    missing = [k for k in tensors if k not in args] + [k for k, req in attrs.items() if req and k not in args]
    if unknown or missing:
        w.fail(what, f"unknown arguments {sorted(unknown)}, missing {missing}")
    rule = {}
    for k, v in args.items():
        if k in tensors:
            if isinstance(v, list):
                rule[k] = [_ref(w, x, values, defined, f"{what} {k}") for x in _list(w, v, what, 256)]
            else:
                rule[k] = _ref(w, v, values, defined, f"{what} {k}")
        else:
            kind = ATTR_TYPES.get(k)
            if kind is None:
                w.fail(what, f"argument {k!r} cannot be stored in a file")
            rule[k] = semantics.enum_name(_attr(w, v, kind, f"{what} {k}"))
    return rule


def _check_op(w, op, values, defined, what):
    """(rule arguments, output metas, data-parallel limits) of an op, through the rules
    the recorder applied (FFProgram.call)."""
    rule = _rule_args(w, op, values, defined, what)
    try:
        metas, problems = semantics.check(op["method"], rule, semantics.ANY)
    except Exception as exc:  # noqa: BLE001 - the rules' own error, named
        w.fail(what, f"FlexFlow rejects this call: {exc}")
    bad = [p for p in problems if not p.parallel]
    if bad:
        w.fail(what, f"FlexFlow rejects or mis-trains this call: {bad[0]}")
    return rule, metas, [p.message for p in problems]


def _check_weights(w, op, decls, sources, used_keys, tensors, what):
    weights = _list(w, op["weights"], what, 8)
    ids = []
    for entry in weights:
        _keys(w, entry, {"param_id", "key"}, what)
        pid = _int(w, entry["param_id"], what, 0, max(len(decls) - 1, 0))
        key = _str(w, entry["key"], what)
        if key not in sources or key in used_keys:
            w.fail(what, f"weight {key!r} has no layout record, or belongs to another layer too")
        used_keys.add(key)
        ids.append(pid)
        array = tensors.get(f"weight/{key}")
        if array is None:
            w.fail(what, f"weight {key!r} is missing from the file")
        if list(array.shape) != list(decls[pid].shape) or list(sources[key]["shape"]) != list(decls[pid].shape):
            w.fail(what, f"weight {key!r} has shape {list(array.shape)}, the layer's parameter {pid} is "
                   f"{list(decls[pid].shape)}")
        if array.dtype != np.float32 or not np.isfinite(array).all():
            w.fail(what, f"weight {key!r} must be finite float32")
    if sorted(ids) != list(range(len(decls))) or (decls and op["name"] is None):
        w.fail(what, f"the layer's {len(decls)} parameters must each be bound once (got {sorted(ids)}), "
               "and a layer with weights needs a name")
