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

The program itself, its format and its validation: `flexflow_torch/host_program.py`."""

from __future__ import annotations

import math
import operator
from collections import OrderedDict

import torch

from ..errors import ConversionError, DataLoaderError
from ..host_program import ALLOWED, SPECIAL, HostProgram, encode, overload_name

aten = torch.ops.aten

#: data movement whose indices may be computed on the host while its data is an activation
MOVES = {aten.index.Tensor: "indices", aten.gather.default: "index", aten.index_select.default: "index"}
_ALIASES = {aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.alias.default,
            aten.clone.default, aten.contiguous.default, aten.detach.default, aten.lift_fresh_copy.default}


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
            op, args, kwargs = "getitem", encode(list(node.args), self.ref), {}
        else:
            op = overload_name(node.target)
            args = encode(list(node.args), self.ref)
            kwargs = {k: encode(v, self.ref) for k, v in node.kwargs.items()}
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
        encoded = encode(args, self.ref)
        encoded[0] = {"$r": positions}
        kwargs = {k: encode(v, self.ref) for k, v in node.kwargs.items()}
        src = f"{node.name}_src"
        self.steps.append({"op": overload_name(node.target), "args": encoded, "kwargs": kwargs,
                           "out": src})
        self.steps.append({"op": SPECIAL, "args": [{"$r": src}, per], "kwargs": {}, "out": f"{node.name}_offsets"})
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
