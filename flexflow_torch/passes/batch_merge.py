"""Undo views that merge the batch with the axes after it for row-wise work.

`x.view(-1, d)` of a (batch, seq, d) activation, followed by operations on each row
(linear, layer norm, activations, residual adds, a mixture-of-experts router and its
experts) and a view back to (batch, ...) is how OPT's decoder layers, many MLPs and MoE
blocks are written. The merged (batch*seq, d) tensor would need a reshape that changes
axis 0, which FlexFlow's data parallelism rejects (src/ops/reshape.cc:127-146). Every
operation in between treats the merged rows alike, so it computes the same on the
unmerged tensor: the merging view is dropped, the values in between keep their leading
axes, and axis arguments after the rows axis move along."""

from __future__ import annotations

import math
import operator

import torch

from .. import fused_ops
from ._match import aten

VIEWS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default}
#: operators that treat the rows alike and take no axis argument
ROW_LOCAL = {aten.linear.default, aten.relu.default, aten.gelu.default, aten.sigmoid.default, aten.tanh.default,
             aten.silu.default, aten.dropout.default, aten.clone.default, aten._to_copy.default, aten.add.Tensor,
             aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor, aten.mul.Scalar, aten.add.Scalar, aten.rsub.Scalar,
             aten.exp.default, aten.neg.default, aten.pow.Tensor_Scalar, aten.alias.default, aten.one_hot.default,
             aten.layer_norm.default, operator.getitem, fused_ops.dense, fused_ops.rms_norm, fused_ops.layer_norm}
#: operators with axis arguments: (position, keyword, default)
DIMMED = {aten._softmax.default: (1, "dim", None), aten.softmax.int: (1, "dim", None),
          aten.topk.default: (2, "dim", -1), aten.sum.dim_IntList: (1, "dim", None), aten.mean.dim: (1, "dim", None),
          aten.unsqueeze.default: (1, "dim", None), aten.slice.Tensor: (1, "dim", 0),
          aten.select.int: (1, "dim", None), aten.amax.default: (1, "dim", None),
          aten.split.Tensor: (2, "dim", 0), aten.split_with_sizes.default: (2, "dim", 0)}
#: row-wise operators whose other operands are weights (or computed kernels)
WEIGHTED = {aten.linear.default, aten.layer_norm.default, fused_ops.dense, fused_ops.rms_norm, fused_ops.layer_norm}


def _vals(node):
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    if isinstance(val, torch.Tensor):
        return [val]
    if isinstance(val, (list, tuple)) and val and all(isinstance(v, torch.Tensor) for v in val):
        return list(val)
    return None


def _shape(node):
    vals = _vals(node)
    return tuple(vals[0].shape) if vals and len(vals) == 1 else None


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


def _dims(node):
    """The node's axis argument(s) as a list of ints, or None if it has none."""
    pos, key, default = DIMMED[node.target]
    dim = node.args[pos] if len(node.args) > pos else node.kwargs.get(key, default)
    return None if dim is None else ([dim] if isinstance(dim, int) else list(dim))


def _set_dims(node, dims, shift):
    pos, key, _ = DIMMED[node.target]
    old = node.args[pos] if len(node.args) > pos else node.kwargs.get(key, DIMMED[node.target][2])
    new = [d + shift if d > 0 else d for d in dims]
    new = new[0] if isinstance(old, int) else new
    if len(node.args) > pos:
        node.args = node.args[:pos] + (new,) + node.args[pos + 1:]
    else:
        node.kwargs = dict(node.kwargs, **{key: new})


def _region(view, lead):
    """The nodes fed by `view` that treat its rows alike, and the views that end them, or None."""
    rows = math.prod(lead)
    region, ends, stack = set(), set(), [view]
    while stack:
        node = stack.pop()
        for user in node.users:
            if user in region or user in ends:
                continue
            shape = _shape(user)
            if user.op == "call_function" and user.target in VIEWS and shape and len(shape) >= len(lead) and \
                    math.prod(shape[:len(lead)]) == rows and shape[:len(lead) - 1] == lead[:-1]:
                ends.add(user)
                continue
            vals = _vals(user)
            if user.op != "call_function" or vals is None or any(v.dim() < 1 or v.shape[0] != rows for v in vals):
                return None
            if user.target in VIEWS:
                pass                        # a view within each row (axis 0 kept)
            elif user.target in DIMMED:
                dims = _dims(user)
                if dims is None or any(d == 0 or d < -_vals(user.args[0])[0].dim() + 1 for d in dims):
                    return None
            elif user.target not in ROW_LOCAL:
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
            if n.target in DIMMED:
                _set_dims(n, _dims(n), len(lead) - 1)
            elif n.target in VIEWS:
                n.args = (n.args[0], list(lead) + list(_shape(n)[1:])) + tuple(n.args[2:])
            vals = [torch.empty(tuple(lead) + tuple(v.shape[1:]), dtype=v.dtype, device="meta") for v in _vals(n)]
            n.meta["val"] = vals[0] if isinstance(n.meta["val"], torch.Tensor) else type(n.meta["val"])(vals)
        node.replace_all_uses_with(node.args[0])
        graph.erase_node(node)
        count += 1
    return count
