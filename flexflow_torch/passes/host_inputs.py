"""Host-side input computations.

Everything in the captured graph that depends only on the integer model inputs (ids,
masks, token types) and constants, and on no parameter, is split off into a
`HostProgram`: comparisons, cumsum, argmax, position ids (RoBERTa's `input_ids != pad`
positions, OPT's `position_ids + 2`), pad masks, last-token indices. FlexFlow has no
integer arithmetic, comparison or cast to integer; PyTorch on the host has them all.
The program runs batch by batch on the host (the data loaders of
`create_data_loaders` call it) and its results feed FlexFlow as extra input tensors:
integers and bools DT_INT32, floats DT_FLOAT, the batch on axis 0.

A data-dependent index into an activation (`hidden[arange(B), last_token]`,
`gather(x, d, host_index)`) becomes data too: the host applies the same indexing to
the element positions of one batch and hands FlexFlow per-sample offsets, and the
graph reads them with a FlexFlow `gather` along axis 1 of the (batch, elements) view,
whose backward scatters the gradient back exactly.

The program is a list of ATen calls from an allow-list, with JSON arguments and
tensor constants: it is saved in graph files and validated when loaded; no code."""

from __future__ import annotations

import math
import operator
from collections import OrderedDict

import numpy as np
import torch

from ..errors import ConversionError, DataLoaderError, GraphFileError, ShapeError

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

#: data movement whose indices may be computed on the host while its data is an activation
MOVES = {aten.index.Tensor: "indices", aten.gather.default: "index", aten.index_select.default: "index"}
_ALIASES = {aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.alias.default,
            aten.clone.default, aten.contiguous.default, aten.detach.default, aten.lift_fresh_copy.default}
_SPECIAL = "flexflow_torch::per_sample_offsets"
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


def _encode(value, ref):
    if isinstance(value, torch.fx.Node):
        return ref(value)
    if isinstance(value, (list, tuple)):
        return [_encode(v, ref) for v in value]
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
                if step["op"] == _SPECIAL:
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
                if step["op"] not in (_SPECIAL, "getitem"):
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


# ---------------------------------------------------------------- the pass
def _allowed(node):
    if node.op != "call_function":
        return False
    if node.target is operator.getitem:
        return True
    return isinstance(node.target, torch._ops.OpOverload) and overload_name(node.target) in ALLOWED


def _val(node):
    return node.meta.get("val") if isinstance(node, torch.fx.Node) else None


def _batched(node, batch):
    v = _val(node)
    return isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == batch


def _host_set(graph, sources, folded, excluded):
    host = set()
    for node in graph.nodes:
        if node in folded or node in excluded or not _allowed(node):
            continue
        deps = node.all_input_nodes
        if deps and all(d in host or d in sources or d in folded for d in deps) and \
                any(d in host or d in sources for d in deps):
            host.add(node)
    return host


def _move_rewrites(graph, host, folded, batch):
    """Data movement of an activation with host-computed indices: {node: index args}."""
    moves = {}
    for node in graph.nodes:
        if node.op != "call_function" or node.target not in MOVES or node in host:
            continue
        data = node.args[0]
        idx = node.args[1] if node.target is aten.index.Tensor else node.args[2]
        idx_nodes = [i for i in (idx if isinstance(idx, (list, tuple)) else [idx]) if isinstance(i, torch.fx.Node)]
        if data in host or data in folded or not idx_nodes or not any(i in host for i in idx_nodes):
            continue
        if not all(i in host or i in folded for i in idx_nodes):
            continue
        if _batched(data, batch) and _batched(node, batch):
            moves[node] = idx_nodes
    return moves


def rows_per_batch(graph, user_inputs, batch) -> int:
    """The leading size of the model's activations: `batch`, or batch * k when every input
    (batch, k, ...) is first viewed as (batch * k, ...) - multiple-choice heads run the
    model on every (sample, choice) row."""
    ks = set()
    for node in user_inputs:
        shape = tuple(_val(node).shape)
        for user in node.users:
            out = _val(user)
            if user.target not in _ALIASES or out is None or len(shape) < 3 or \
                    tuple(out.shape) != (batch * shape[1],) + shape[2:]:
                return batch
            ks.add(shape[1])
    return batch * ks.pop() if len(ks) == 1 else batch


def split_host_inputs(graph, user_inputs: "OrderedDict", folded: dict, example_inputs: "OrderedDict", batch: int,
                      rows=None):
    """Split the host-side computations off `graph` (in place). `rows`: the leading size of
    the activations (see `rows_per_batch`), `batch` by default.

    Returns (HostProgram or None, FlexFlow inputs: placeholder -> name, in order). The
    user placeholders no FlexFlow operator reads any more are left out of the latter;
    every other FlexFlow input is a host output, with the batch on axis 0."""
    rows = rows or batch
    sources = {n for n in user_inputs if not _val(n).is_floating_point()}
    if not sources:
        return None, user_inputs
    excluded = set()
    while True:
        host = _host_set(graph, sources, folded, excluded)
        moves = _move_rewrites(graph, host, folded, rows)
        outside = lambda u: u not in host and u not in moves  # noqa: E731
        boundary = [n for n in host if any(outside(u) for u in n.users)]
        bad = [n for n in boundary if not (_batched(n, batch) or _batched(n, rows))
               and not any(u in moves for u in n.users)]
        if not bad:
            break
        excluded.update(bad)           # not per sample: left to the FlexFlow side
    if not boundary and not moves:
        return None, user_inputs
    return _Splitter(graph, user_inputs, folded, host, example_inputs, batch, rows).split(boundary, moves)


class _Splitter:
    def __init__(self, graph, user_inputs, folded, host, example_inputs, batch, rows):
        self.graph, self.user_inputs, self.folded, self.host = graph, user_inputs, folded, host
        self.example_inputs, self.batch, self.rows = example_inputs, batch, rows
        self.steps, self.constants, self.recorded = [], {}, {}
        self.names = {n: name for n, name in user_inputs.items()}

    def ref(self, node):
        if node in self.recorded:
            return {"$r": self.recorded[node]}
        if node in self.names:
            return {"$r": f"input:{self.names[node]}"}
        if node in self.folded:
            return {"$r": self.const(node.name, self.folded[node])}
        self.record(node)
        return {"$r": self.recorded[node]}

    def const(self, key, value):
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"host program: the folded value {key} is not a tensor")
        self.constants[key] = value.detach().clone()
        return f"const:{key}"

    def record(self, node):
        for dep in node.all_input_nodes:
            if dep not in self.recorded and dep not in self.names and dep not in self.folded:
                self.record(dep)
        if node.target is operator.getitem:
            op, args, kwargs = "getitem", _encode(list(node.args), self.ref), {}
        else:
            op = overload_name(node.target)
            args = _encode(list(node.args), self.ref)
            kwargs = {k: _encode(v, self.ref) for k, v in node.kwargs.items()}
        self.steps.append({"op": op, "args": args, "kwargs": kwargs, "out": node.name})
        self.recorded[node] = node.name

    def placeholder(self, name, val):
        first = next(n for n in self.graph.nodes if n.op != "placeholder")
        with self.graph.inserting_before(first):
            ph = self.graph.placeholder(name.replace(".", "_"))
        ph.meta["val"] = val
        return ph

    def crossing(self, name, ref, val, new_inputs):
        """A FlexFlow input `name` fed by the host value `ref` of meta value `val`: its graph
        node. A value with `rows` (not batch) leading rows crosses as (batch, rest) and is
        viewed back (a reshape of axis 0: one GPU only)."""
        if val.shape[0] == self.batch:
            ph = self.placeholder(name, val)
            new_inputs[ph] = name
            return ph, ref
        flat = f"{ref}_per_sample"
        self.steps.append({"op": "aten::reshape.default", "args": [{"$r": ref}, [self.batch, -1]], "kwargs": {},
                           "out": flat})
        ph = self.placeholder(name, torch.empty((self.batch, val.numel() // self.batch), dtype=val.dtype,
                                                device="meta"))
        new_inputs[ph] = name
        first = next(n for n in self.graph.nodes if n.op != "placeholder")
        with self.graph.inserting_before(first):
            view = self.graph.call_function(aten.view.default, (ph, list(val.shape)))
        view.meta["val"] = val
        return view, flat

    def split(self, boundary, moves):
        refs, new_inputs = {}, OrderedDict()
        for node in boundary:
            alias = _alias_of(node, self.names)
            if alias is not None:
                node.replace_all_uses_with(alias, delete_user_cb=lambda u: u not in self.host)
                continue
            name = f"host.{node.name}"
            fed, refs[name] = self.crossing(name, self.ref(node)["$r"], node.meta["val"], new_inputs)
            node.replace_all_uses_with(fed, delete_user_cb=lambda u: u not in self.host and u is not fed)
        for node in moves:
            name, ref = self.rewrite_move(node, new_inputs)
            refs[name] = ref
        kept = OrderedDict((n, name) for n, name in self.user_inputs.items()
                           if not n.users or any(u not in self.host for u in n.users))
        refs.update({name: f"input:{name}" for name in kept.values()})
        ff_inputs = OrderedDict(list(kept.items()) + list(new_inputs.items()))
        inputs = [(n, str(_val(node).dtype).split(".")[1], list(_val(node).shape))
                  for node, n in self.user_inputs.items()]
        program = HostProgram(inputs, self.steps, [(name, refs[name]) for name in ff_inputs.values()],
                              self.constants, self.batch)
        self.check(program, ff_inputs)
        self.graph.eliminate_dead_code()            # the host-side nodes
        for node in self.user_inputs:
            if node not in ff_inputs and not node.users:
                self.graph.erase_node(node)         # read on the host only
        return program, ff_inputs

    def rewrite_move(self, node, new_inputs):
        """node(data, host indices) -> view(gather(view(data, (B, per)), 1, offsets), out shape)
        with the offsets computed on the host from the positions of data's elements."""
        data = node.args[0]
        shape = tuple(_val(data).shape)
        per, rows = math.prod(shape[1:]), self.rows
        positions = self.const(f"{node.name}_positions", torch.arange(math.prod(shape)).reshape(shape))
        args = list(node.args)
        args[0] = None
        encoded = _encode(args, self.ref)
        encoded[0] = {"$r": positions}
        kwargs = {k: _encode(v, self.ref) for k, v in node.kwargs.items()}
        src = f"{node.name}_src"
        self.steps.append({"op": overload_name(node.target), "args": encoded, "kwargs": kwargs,
                           "out": src})
        self.steps.append({"op": _SPECIAL, "args": [{"$r": src}, per], "kwargs": {}, "out": f"{node.name}_offsets"})
        out = _val(node)
        m = out.numel() // rows
        name = f"host.{node.name}.index"
        index, ref = self.crossing(name, f"{node.name}_offsets",
                                   torch.empty((rows, m), dtype=torch.int32, device="meta"), new_inputs)
        g = self.graph
        with g.inserting_before(node):
            flat = g.call_function(aten.view.default, (data, [rows, per]))
            gathered = g.call_function(aten.gather.default, (flat, 1, index))
            result = g.call_function(aten.view.default, (gathered, list(out.shape)))
        flat.meta = dict(node.meta, val=torch.empty((rows, per), dtype=_val(data).dtype, device="meta"))
        gathered.meta = dict(node.meta, val=torch.empty((rows, m), dtype=out.dtype, device="meta"))
        result.meta = dict(node.meta)
        node.replace_all_uses_with(result)
        g.erase_node(node)
        return name, ref

    def check(self, program, ff_inputs):
        """Run the program on the capture's example inputs: every FlexFlow input must come
        out with the shape the graph expects (and per sample)."""
        try:
            values = program(self.example_inputs)
        except DataLoaderError as exc:
            raise ConversionError(f"host-side inputs: {exc}") from exc
        for ph, name in ff_inputs.items():
            want = tuple(_val(ph).shape)
            if want[0] != self.batch:
                raise ConversionError(f"host-side input {name}: {want} does not have the batch on axis 0")
            if tuple(values[name].shape) != want:
                raise ConversionError(f"host-side input {name}: computed {tuple(values[name].shape)}, "
                                      f"the graph expects {want}")


def _alias_of(node, names):
    """The user input placeholder `node` merely re-views with the same shape and dtype."""
    v = _val(node)
    cur = node
    while isinstance(cur, torch.fx.Node) and cur.op == "call_function" and cur.target in _ALIASES:
        cur = cur.args[0]
    if cur in names and tuple(_val(cur).shape) == tuple(v.shape) and _val(cur).dtype == v.dtype:
        return cur
    return None
