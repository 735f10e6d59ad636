"""Collapse chains of data-movement ops that pass through tensors with more
than 4 axes (FlexFlow's limit) into one `fused_ops.view_chain`, converted as a
single constant gather (LLaMA's grouped-query `repeat_kv`: unsqueeze -> 5-D
expand -> reshape)."""

from __future__ import annotations

import torch

from .. import fused_ops
from ._match import aten, replace

MAX_RANK = 4
MOVEMENT = {aten.unsqueeze.default, aten.expand.default, aten.view.default, aten._unsafe_view.default,
            aten.reshape.default, aten.clone.default, aten.permute.default, aten.transpose.int,
            aten.squeeze.dim, aten.squeeze.dims, aten.alias.default, aten.slice.Tensor, aten.select.int}


def _rank(node):
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return len(val.shape) if val is not None and hasattr(val, "shape") else 0


def collapse_high_rank_views(graph) -> int:
    count = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in MOVEMENT or _rank(node) > MAX_RANK:
            continue
        src = node.args[0]
        if not isinstance(src, torch.fx.Node) or _rank(src) <= MAX_RANK:
            continue
        chain = [node]
        while (src.op == "call_function" and src.target in MOVEMENT and _rank(src) > MAX_RANK
               and len(src.users) == 1):
            chain.append(src)
            src = src.args[0]
        if _rank(src) > MAX_RANK or any(isinstance(a, torch.fx.Node) for n in chain for a in n.args[1:]):
            continue
        steps = [(n.target, tuple(n.args[1:]), dict(n.kwargs)) for n in reversed(chain)]
        replace(graph, node, fused_ops.view_chain, (src, steps))
        count += 1
    return count
