"""Decomposition of the ops that have no converter: each such node is replaced by
torch.export's own decomposition traced for that node's signature (cached), so the
rest of the program is not traced again; `decompose_all` re-traces the whole program
where that cannot work."""

from __future__ import annotations

import operator
import warnings

import torch

from . import registry
from .capture import KEEP_WHOLE
from .errors import ConversionError

#: run-time checks torch.export records; they compute nothing and are dropped
ASSERTS = {torch.ops.aten._assert_tensor_metadata.default, torch.ops.aten._assert_scalar.default,
           torch.ops.aten.sym_constrain_range_for_size.default}


def missing_converter(node) -> bool:
    return (node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
            and not registry.has_converter(node.target))


def _decomposition_table():
    """torch.export's decompositions, except for the ops we convert whole (and KEEP_WHOLE)."""
    converted = frozenset(t for t in registry.registered_targets() if isinstance(t, torch._ops.OpOverload)) | \
        frozenset(KEEP_WHOLE)
    if _TABLE.get("converted") != converted:
        table = torch.export.default_decompositions()
        for target in converted:
            if target in table:
                del table[target]
        _TABLE.update(converted=converted, table=table)
    return _TABLE["table"]


_TABLE = {}


def decompose_all(ep):
    """Re-trace the whole program with the ops we do not convert decomposed."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        return ep.run_decompositions(_decomposition_table().copy())


def decompose_missing(graph, nodes, host=frozenset()) -> bool:
    """Decompose each of `nodes` (ops without a converter) in place, by tracing only that
    op's decomposition on its recorded fake values, as `decompose_all` would have
    decomposed it; re-tracing the whole program costs as much as the export itself.
    Nodes in `host` read no parameter (passes/host_inputs.py may run them on the host):
    their decompositions may hold ops without converters that a host program may call.

    All or nothing: False (graph untouched) when one of them is an in-place op or
    decomposes into ops without converters (outside `host`)."""
    traced, by_signature = [], {}
    for node in nodes:
        on_host = node in host
        key = (_signature(node), on_host)
        if key not in by_signature:
            # composite ops decompose without a table; building torch.export's costs ~0.5 s
            by_signature[key] = _trace_decomposition(node, {}, on_host) or \
                _trace_decomposition(node, _decomposition_table(), on_host)
        if by_signature[key] is None:
            return False
        traced.append((node, by_signature[key]))
    for node, gm in traced:
        _inline(graph, node, gm)
    return True


def _signature(node):
    """What the decomposition of `node` depends on: its op, its non-tensor arguments and
    the shape, dtype and strides of its tensor arguments."""
    def describe(n):
        v = n.meta.get("val")
        return ("tensor", tuple(v.shape), v.dtype, tuple(v.stride())) if isinstance(v, torch.Tensor) else ("node", id(n))
    return repr((node.target, torch.fx.node.map_arg((node.args, node.kwargs), describe)))


def _slots(node):
    """The node's tensor arguments in argument order, repeats included."""
    found = []
    torch.fx.node.map_arg((node.args, node.kwargs), found.append)
    return found


def _trace_decomposition(node, table, on_host=False):
    from torch._guards import detect_fake_mode
    from torch.fx.experimental.proxy_tensor import make_fx
    from .passes.constant_folding import SHAPE_ONLY
    from .host_program import ALLOWED as HOST_OPS, overload_name
    slots = _slots(node)
    if node.target._schema.is_mutable or any("val" not in n.meta for n in slots):
        return None
    vals = [n.meta["val"] for n in slots]
    fake_mode = detect_fake_mode(vals)
    if fake_mode is None:
        return None

    def call(*values):
        it = iter(values)
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda _: next(it))
        return node.target(*args, **kwargs)
    try:
        with fake_mode:
            gm = make_fx(call, decomposition_table=table)(*vals)
    except Exception:  # noqa: BLE001 - any failure: decompose the whole program instead
        return None
    dynamic = set()
    for n in gm.graph.nodes:
        if n.op == "placeholder" or any(a in dynamic for a in n.all_input_nodes):
            dynamic.add(n)
        if missing_converter(n) and n.target not in ASSERTS and n in dynamic and n.target not in SHAPE_ONLY \
                and not (on_host and overload_name(n.target) in HOST_OPS):
            return None          # constants it creates (scalar_tensor, ...) are folded later
    return gm


def _inline(graph, node, gm):
    """Replace `node` by the traced decomposition (its nodes keep node's source metadata)."""
    env = {}
    placeholders = iter(_slots(node))      # its arguments now (earlier nodes may be replaced)
    result = None
    with graph.inserting_before(node):
        for n in gm.graph.nodes:
            if n.op == "placeholder":
                env[n] = next(placeholders)
            elif n.op == "call_function" and n.target not in ASSERTS:
                new = graph.call_function(n.target, torch.fx.node.map_arg(n.args, env.__getitem__),
                                          torch.fx.node.map_arg(n.kwargs, env.__getitem__))
                new.meta = {k: v for k, v in node.meta.items() if k not in ("val", "tensor_meta")}
                new.meta["val"] = n.meta.get("val")
                env[n] = new
            elif n.op == "output":
                result = torch.fx.node.map_arg(n.args[0], env.__getitem__)
    if isinstance(result, (list, tuple)):
        for user in list(node.users):
            if user.target is operator.getitem:
                user.replace_all_uses_with(result[user.args[1]])
                graph.erase_node(user)
        if node.users:
            raise ConversionError(f"internal: {node} is used other than through its items")
    else:
        node.replace_all_uses_with(result)
    graph.erase_node(node)
