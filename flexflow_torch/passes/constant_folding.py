"""Fold every subgraph that depends on neither a user input nor a trainable
parameter into constants: relative-position buckets, causal masks, arange,
position ids, buffers. Folded nodes need no converter; only those used by
input-dependent nodes end up as FlexFlow constants."""

from __future__ import annotations

import torch
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

_aten = torch.ops.aten
#: ops whose value depends only on the *shape* of their tensor input
SHAPE_ONLY = {_aten.ones_like.default, _aten.zeros_like.default, _aten.full_like.default,
              _aten.empty_like.default, _aten.new_ones.default, _aten.new_zeros.default,
              _aten.new_full.default, _aten.new_empty.default, _aten.sym_size.int}


def _stand_in(node):
    """A tensor with `node`'s shape and dtype (for shape-only ops)."""
    val = node.meta.get("val")
    return torch.zeros(tuple(val.shape), dtype=val.dtype)


def _is_random(target):
    tags = getattr(target, "tags", ())
    return torch.Tag.nondeterministic_seeded in tags


def fold_constants(graph, constant_placeholders: dict, dynamic_placeholders: set) -> dict:
    """Returns {node: value} for every foldable node (placeholders included).

    `constant_placeholders`: placeholder node -> tensor (buffers, lifted constants).
    `dynamic_placeholders`: user inputs and trainable parameters."""
    folded = {}
    for node in graph.nodes:
        if node.op == "placeholder":
            if node in constant_placeholders:
                folded[node] = constant_placeholders[node]
            elif node not in dynamic_placeholders:
                # non-tensor user inputs (e.g. a bool flag passed as a kwarg)
                folded[node] = None
            continue
        if node.op != "call_function" or _is_random(node.target):
            continue
        deps = node.all_input_nodes
        # a shape that depends on input values (torch.nonzero) cannot be folded
        shape_only = node.target in SHAPE_ONLY and not any(free_unbacked_symbols(d.meta.get("val")) for d in deps)
        if not shape_only and not all(d in folded for d in deps):
            continue

        def value(a):
            if not isinstance(a, torch.fx.Node):
                return a
            return folded[a] if a in folded else _stand_in(a)

        args = torch.fx.node.map_aggregate(node.args, value)
        kwargs = torch.fx.node.map_aggregate(node.kwargs, value)
        with torch.no_grad():
            folded[node] = node.target(*args, **kwargs)
    return folded
