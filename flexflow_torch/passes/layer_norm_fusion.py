"""Fuse a hand-written LayerNorm over the last axis

    d = x - mean(x, -1, keepdim)        var = mean(d**2, -1, keepdim) | var(x, -1, correction=0)
    y = d / sqrt(var + eps)  |  d * rsqrt(var + eps)       [* w] [+ b]

into `fused_ops.layer_norm`, which maps onto FlexFlow's `layer_norm(axes=[0])`.
(`nn.LayerNorm` / `F.layer_norm` are kept whole by capture and need no fusion.)"""

from __future__ import annotations

from .. import fused_ops
from ._match import aten, strip, follow, replace
from .rms_norm_fusion import _scalar


def _last_axis_mean(node, x=None):
    if getattr(node, "target", None) is not aten.mean.dim:
        return False
    rank = len(node.args[0].meta["val"].shape)
    dims = list(node.args[1]) if len(node.args) > 1 else []
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    return dims in ([-1], [rank - 1]) and keep and (x is None or strip(node.args[0]) is x)


def _centered(node, x):
    """node is x - mean(x, -1, keepdim)."""
    node = strip(node)
    return (getattr(node, "target", None) is aten.sub.Tensor and strip(node.args[0]) is x
            and _last_axis_mean(node.args[1], x))


def _variance_of(var, d, x):
    if _last_axis_mean(var):
        pw = strip(var.args[0])
        return (getattr(pw, "target", None) is aten.pow.Tensor_Scalar and pw.args[1] == 2
                and (strip(pw.args[0]) is d or _centered(pw.args[0], x)))
    if getattr(var, "target", None) is aten.var.correction:
        rank = len(var.args[0].meta["val"].shape)
        dims = list(var.args[1]) if len(var.args) > 1 and var.args[1] is not None else []
        return (strip(var.args[0]) is x and dims in ([-1], [rank - 1]) and var.kwargs.get("correction") == 0
                and var.kwargs.get("keepdim", False))
    return False


def _affine(node, params, length):
    """(last node, weight, bias) after optional `* w` and `+ b` by 1-D parameters."""
    weight = bias = None
    nxt = follow(node)
    if nxt is not None and nxt.target is aten.mul.Tensor:
        other = nxt.args[1] if strip(nxt.args[0]) is node else nxt.args[0]
        if other in params and tuple(params[other].shape) == (length,):
            weight, node, nxt = other, nxt, follow(nxt)
    if nxt is not None and nxt.target is aten.add.Tensor:
        other = nxt.args[1] if strip(nxt.args[0]) is node else nxt.args[0]
        if other in params and tuple(params[other].shape) == (length,):
            bias, node = other, nxt
    return node, weight, bias


def fuse_layer_norm(graph, params, folded) -> int:
    count = 0
    for d in list(graph.nodes):
        if d.op != "call_function" or d.target is not aten.sub.Tensor:
            continue
        x, mu = strip(d.args[0]), d.args[1]
        if not _last_axis_mean(mu, x):
            continue
        for norm in list(d.users):
            if norm.target is aten.div.Tensor and norm.args[0] is d:
                root = norm.args[1]
                if getattr(root, "target", None) is not aten.sqrt.default:
                    continue
                add = root.args[0]
            elif norm.target is aten.mul.Tensor:
                root = norm.args[1] if norm.args[0] is d else norm.args[0]
                if getattr(root, "target", None) is not aten.rsqrt.default:
                    continue
                add = root.args[0]
            else:
                continue
            if getattr(add, "target", None) not in (aten.add.Tensor, aten.add.Scalar):
                continue
            eps = _scalar(add.args[1], folded)
            if eps is None or not _variance_of(add.args[0], d, x):
                continue
            last, weight, bias = _affine(norm, params, x.meta["val"].shape[-1])
            replace(graph, last, fused_ops.layer_norm, (x, weight, bias, eps))
            count += 1
            break
    return count
