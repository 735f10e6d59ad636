"""Collapse data movement that passes through tensors with more than 4 axes
(FlexFlow's limit) into one `fused_ops.view_graph`, converted as a single
constant gather: LLaMA's grouped-query `repeat_kv` (unsqueeze -> 5-D expand ->
reshape), GPT-J's rotary `stack` (unsqueeze x2 -> 5-D cat -> view)."""

from __future__ import annotations

import torch

from .. import fused_ops
from ._match import aten, replace

MAX_RANK = 4
MOVEMENT = {aten.unsqueeze.default, aten.expand.default, aten.view.default, aten._unsafe_view.default,
            aten.reshape.default, aten.clone.default, aten.permute.default, aten.transpose.int,
            aten.squeeze.dim, aten.squeeze.dims, aten.alias.default, aten.slice.Tensor, aten.select.int,
            aten.cat.default, aten.flatten.using_ints}


def _rank(node):
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return len(val.shape) if val is not None and hasattr(val, "shape") else 0


def _node_args(node):
    return [a for a in torch.fx.node.map_aggregate(node.args, lambda x: x)
            if isinstance(a, torch.fx.Node)] if node.target is not aten.cat.default else list(node.args[0])


def _collect(end):
    """Steps (in graph order) and leaves of the >4-D movement DAG ending at `end`, or None."""
    inner, leaves, stack = [], [], [end]
    while stack:
        node = stack.pop()
        for a in node.all_input_nodes:
            if _rank(a) <= MAX_RANK:
                if a not in leaves:
                    leaves.append(a)
            elif a.op == "call_function" and a.target in MOVEMENT:
                if a not in inner:
                    inner.append(a)
                    stack.append(a)
            else:
                return None
    return inner, leaves


def _encode(value, index):
    """Replace FX nodes in args by ("$", position) references."""
    return torch.fx.node.map_aggregate(value, lambda a: ("$", index[a]) if isinstance(a, torch.fx.Node) else a)


def collapse_high_rank_views(graph) -> int:
    count = 0
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in MOVEMENT or _rank(node) > MAX_RANK:
            continue
        if not any(_rank(a) > MAX_RANK for a in node.all_input_nodes):
            continue
        found = _collect(node)
        if found is None:
            continue
        inner, leaves = found
        steps_nodes = sorted(inner, key=order.get) + [node]
        index = {leaf: i for i, leaf in enumerate(leaves)}
        steps = []
        for i, n in enumerate(steps_nodes):
            steps.append((n.target, _encode(tuple(n.args), index), _encode(dict(n.kwargs), index)))
            index[n] = len(leaves) + i
        replace(graph, node, fused_ops.view_graph, (list(leaves), fused_ops.encode_steps(steps)))
        count += 1
    return count
