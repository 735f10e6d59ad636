"""Drop zero-size pieces of concatenations (DINOv3's register tokens when the config has
none): `cat` ignores them, and FlexFlow tensors cannot have a zero-size axis, so the
nodes computing them (an expand of a (1, 0, d) parameter) must not be converted."""

from __future__ import annotations

import torch

from ._match import aten


def _empty(node):
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return isinstance(val, torch.Tensor) and val.numel() == 0


def drop_empty_cat_inputs(graph) -> int:
    count = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not aten.cat.default or _empty(node):
            continue
        tensors = list(node.args[0])
        kept = [t for t in tensors if not _empty(t)]
        if len(kept) == len(tensors) or not kept:
            continue
        if len(kept) == 1:
            node.replace_all_uses_with(kept[0])
            graph.erase_node(node)
        else:
            node.args = (kept,) + tuple(node.args[1:])
        count += 1
    if count:
        graph.eliminate_dead_code()
    return count
