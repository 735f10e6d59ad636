"""scaled_dot_product_attention on FlexFlow primitives.

FlexFlow's `multihead_attention` has no masks, no scaling, no biases and an
opaque cuDNN weight layout, so attention is composed: transpose, batch_matmul,
scalar_multiply, add (mask), softmax (last axis), batch_matmul."""

from __future__ import annotations

import math

import torch

from ..registry import register
from ..context import Const
from ._common import NEG_LARGE, scalar_op, to_float, unsupported, binary

aten = torch.ops.aten


def _additive_mask(ctx, mask, rank):
    """A bool mask (True = attend) or a float mask -> something to add to the scores."""
    if isinstance(mask, Const):
        t = mask.tensor
        if t.dtype == torch.bool:
            t = torch.where(t, torch.zeros((), dtype=torch.float32), torch.tensor(NEG_LARGE))
        else:
            t = t.float().clamp(min=NEG_LARGE)
        return Const(t)
    m = ctx.tensor(mask)
    node = ctx.node.kwargs.get("attn_mask", ctx.node.args[3] if len(ctx.node.args) > 3 else None)
    if node.meta["val"].dtype == torch.bool:
        m = to_float(ctx, m)
        # (1 - m) * NEG_LARGE, written so that m == 1 gives exactly 0
        return scalar_op(ctx, "scalar_add", scalar_op(ctx, "scalar_multiply", m, -NEG_LARGE), NEG_LARGE)
    return to_float(ctx, m)


@register(aten.scaled_dot_product_attention.default)
def aten_scaled_dot_product_attention(ctx, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                      scale=None, enable_gqa=False):
    """scaled_dot_product_attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask=None, float dropout_p=0., bool is_causal=False, *, float? scale=None, bool enable_gqa=False) -> Tensor"""
    if dropout_p:
        unsupported("attention dropout inside the captured graph (capture in eval mode)")
    q, k, v = ctx.tensor(query), ctx.tensor(key), ctx.tensor(value)
    if q.rank == 4 and k.rank == 4 and q.shape[1] != k.shape[1] and q.shape[1] % k.shape[1] == 0:
        # grouped-query attention: repeat each key/value head (a constant gather)
        from .shape import gather_constant
        rep = q.shape[1] // k.shape[1]
        k = gather_constant(ctx, k, lambda t: t.repeat_interleave(rep, dim=1))
        v = gather_constant(ctx, v, lambda t: t.repeat_interleave(rep, dim=1))
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2]:
        unsupported(f"attention with different query/key batch or head dims {q.shape} vs {k.shape} "
                    "(grouped-query attention: repeat the key/value heads in the model)")
    r = q.rank
    kt = ctx.transpose(k, list(range(r - 2)) + [r - 1, r - 2])
    scores = ctx.emit("batch_matmul", {"A": q, "B": kt})
    s = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    if s != 1.0:
        scores = scalar_op(ctx, "scalar_multiply", scores, s)
    if is_causal:
        L, S = q.shape[-2], k.shape[-2]
        causal = torch.ones(L, S, dtype=torch.bool).tril()
        scores = binary(ctx, "add", scores, _additive_mask(ctx, Const(causal), r))
    if attn_mask is not None:
        scores = binary(ctx, "add", scores, _additive_mask(ctx, attn_mask, r))
    probs = ctx.emit("softmax", {"input": scores}, {"axis": -1})
    return ctx.emit("batch_matmul", {"A": probs, "B": v})
