"""Fuse the RMS norm pattern of T5LayerNorm / LlamaRMSNorm

    w * (x * rsqrt(mean(x**2, -1, keepdim=True) + eps))   (casts allowed)

into `fused_ops.rms_norm(x, w, eps)`, which maps onto FlexFlow's `rms_norm`."""

from __future__ import annotations

from .. import fused_ops
from ._match import aten, strip, follow, replace


def _scalar(a, folded):
    if isinstance(a, (int, float)):
        return float(a)
    v = folded.get(a) if a is not None else None
    if v is not None and hasattr(v, "numel") and v.numel() == 1:
        return float(v.item())
    return None


def fuse_rms_norm(graph, params, folded) -> int:
    count = 0
    for rs in list(graph.nodes):
        if rs.op != "call_function" or rs.target is not aten.rsqrt.default:
            continue
        add = rs.args[0]
        if getattr(add, "target", None) not in (aten.add.Tensor, aten.add.Scalar):
            continue
        mean, eps = add.args[0], _scalar(add.args[1], folded)
        if eps is None or getattr(mean, "target", None) is not aten.mean.dim:
            continue
        rank = len(mean.args[0].meta["val"].shape)
        dims = list(mean.args[1]) if len(mean.args) > 1 else []
        keep = mean.args[2] if len(mean.args) > 2 else mean.kwargs.get("keepdim", False)
        if dims not in ([-1], [rank - 1]) or not keep:
            continue
        pw = strip(mean.args[0])
        if getattr(pw, "target", None) is not aten.pow.Tensor_Scalar or pw.args[1] != 2:
            continue
        x = strip(pw.args[0])
        m1 = follow(rs)
        if m1 is None or m1.target is not aten.mul.Tensor:
            continue
        other = m1.args[0] if m1.args[1] is rs or strip(m1.args[1]) is rs else m1.args[1]
        if strip(other) is not x:
            continue
        m2 = follow(m1)
        if m2 is None or m2.target is not aten.mul.Tensor:
            continue
        w = m2.args[0] if strip(m2.args[1]) is m1 else m2.args[1]
        if w not in params or params[w].tensor.dim() != 1 or params[w].tensor.shape[0] != x.meta["val"].shape[-1]:
            continue
        replace(graph, m2, fused_ops.rms_norm, (x, w, eps))
        count += 1
    return count
