"""Undo views that merge the batch with the axes after it for row-wise work.

`x.view(-1, d)` of a (batch, seq, d) activation, followed by operations on each row
(linear, layer norm, activations, residual adds) and a view back to (batch, ...) is
how OPT's decoder layers and many MLPs are written. The merged (batch*seq, d) tensor
would need a reshape that changes axis 0, which FlexFlow's data parallelism rejects
(src/ops/reshape.cc:127-146). Every operation in between acts on the last axis alone,
so it computes the same on the unmerged tensor: the merging view is dropped and the
values in between keep their leading axes."""

from __future__ import annotations

import math

import torch

from .. import fused_ops
from ._match import aten

VIEWS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default}
#: operators acting on the last axis alone (their other operands broadcast along it)
ROW_LOCAL = {aten.linear.default, aten.relu.default, aten.gelu.default, aten.sigmoid.default, aten.tanh.default,
             aten.silu.default, aten.dropout.default, aten.clone.default, aten._to_copy.default, aten.add.Tensor,
             aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor, aten.mul.Scalar, aten.add.Scalar,
             aten.exp.default, aten.neg.default, aten.pow.Tensor_Scalar, aten.alias.default,
             aten.layer_norm.default, fused_ops.dense, fused_ops.rms_norm, fused_ops.layer_norm}


#: row-wise operators whose other operands are weights
WEIGHTED = {aten.linear.default, aten.layer_norm.default, fused_ops.dense, fused_ops.rms_norm, fused_ops.layer_norm}


def _shape(node):
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return tuple(val.shape) if isinstance(val, torch.Tensor) else None


def _merging(node, batch):
    """(batch, *mid, d) -> (batch * prod(mid), d): returns the unmerged leading axes."""
    if node.op != "call_function" or node.target not in VIEWS:
        return None
    src, out = _shape(node.args[0]), _shape(node)
    if src is None or out is None or len(src) < 3 or len(out) != 2 or src[0] != batch:
        return None
    if out == (math.prod(src[:-1]), src[-1]):
        return src[:-1]
    return None


def _region(view, lead):
    """The row-wise nodes fed by `view` and the views that end them, or None."""
    rows = math.prod(lead)
    region, ends, stack = set(), set(), [view]
    while stack:
        node = stack.pop()
        for user in node.users:
            if user in region or user in ends:
                continue
            shape = _shape(user)
            if user.op == "call_function" and user.target in VIEWS and shape and \
                    math.prod(shape[:-1]) == rows and shape[:len(lead) - 1] == lead[:-1]:
                ends.add(user)
                continue
            if user.op != "call_function" or user.target not in ROW_LOCAL or shape is None or \
                    len(shape) != 2 or shape[0] != rows:
                return None
            if user.target is aten.layer_norm.default and len(user.args[1]) != 1:
                return None
            region.add(user)
            stack.append(user)
    for node in region:
        operands = [node.args[0]] if node.target in WEIGHTED else node.all_input_nodes
        for other in operands:
            s = _shape(other)
            if other is not view and other not in region and s is not None and len(s) > 1:
                return None              # an operand from outside that is not a row vector
    return region, ends


def unmerge_batch_views(graph, batch) -> int:
    count = 0
    for node in list(graph.nodes):
        lead = _merging(node, batch)
        if lead is None:
            continue
        found = _region(node, lead)
        if found is None:
            continue
        region, _ends = found
        for n in region:
            val = n.meta["val"]
            n.meta["val"] = torch.empty(tuple(lead) + tuple(val.shape[1:]), dtype=val.dtype, device="meta")
        node.replace_all_uses_with(node.args[0])
        graph.erase_node(node)
        count += 1
    return count
