"""scaled_dot_product_attention on FlexFlow primitives.

FlexFlow's `multihead_attention` has no masks, no scaling, no biases, an opaque cuDNN
weight layout and a backward that aborts for cross-attention (attention.cc:728-833), so
attention is composed: batch_matmul(q, k^T) (k^T by a per-sample gather), scalar scale,
additive masks, the exact-gradient softmax of _common.softmax, dropout in training,
batch_matmul with v."""

from __future__ import annotations

import math
import zlib

import torch

from ..registry import register
from ..context import Const
from ._common import NEG_LARGE, binary, scalar_op, shape_of, softmax, supported_if, to_float

aten = torch.ops.aten


def _additive_mask(ctx, mask):
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
        # (1 - m) * NEG_LARGE, written so that m == 1 gives exactly 0
        return scalar_op(ctx, "scalar_add", scalar_op(ctx, "scalar_multiply", m, -NEG_LARGE), NEG_LARGE)
    return to_float(ctx, m)


def dropout(ctx, x, p):
    """FlexFlow's dropout (cuDNN, active in every forward), seeded per layer from its
    name so that a program always draws the same masks."""
    seed = zlib.crc32(f"{ctx.module_path}:{ctx.node.name}".encode()) & 0x7FFFFFFF or 1
    return ctx.emit("dropout", {"input": x}, {"rate": float(p), "seed": seed})


def _sdpa_support(node, query, key, value, **_):
    q, k, v = shape_of(query), shape_of(key), shape_of(value)
    if len(q) != len(k) or len(k) != len(v) or len(q) < 3:
        return f"attention with operands of ranks {len(q)}, {len(k)}, {len(v)}"
    if len(q) == 4 and q[1] != k[1] and k[1] and q[1] % k[1] == 0:      # grouped-query attention
        k = v = q[:2] + tuple(k[2:])
    if q[:-2] != k[:-2] or k[:-2] != v[:-2]:
        return f"attention with different query/key batch or head dims {q} vs {k}"
    return None


@register(aten.scaled_dot_product_attention.default, supports=supported_if(_sdpa_support))
def aten_scaled_dot_product_attention(ctx, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                      scale=None, enable_gqa=False):
    """scaled_dot_product_attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask=None, float dropout_p=0., bool is_causal=False, *, float? scale=None, bool enable_gqa=False) -> Tensor"""
    q, k, v = (to_float(ctx, ctx.tensor(t)) for t in (query, key, value))
    if q.rank == 4 and k.rank == 4 and q.shape[1] != k.shape[1] and q.shape[1] % k.shape[1] == 0:
        rep = q.shape[1] // k.shape[1]      # grouped-query attention: repeat each key/value head
        k = ctx.gather_moves(k, lambda t: t.repeat_interleave(rep, dim=1))
        v = ctx.gather_moves(v, lambda t: t.repeat_interleave(rep, dim=1))
    r = q.rank
    kt = ctx.transpose(k, list(range(r - 2)) + [r - 1, r - 2])
    scores = ctx.emit("batch_matmul", {"A": q, "B": kt})
    s = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    if s != 1.0:
        scores = scalar_op(ctx, "scalar_multiply", scores, s)
    if is_causal:
        L, S = q.shape[-2], k.shape[-2]
        scores = binary(ctx, "add", scores, _additive_mask(ctx, Const(torch.ones(L, S, dtype=torch.bool).tril())))
    if attn_mask is not None:
        scores = binary(ctx, "add", scores, _additive_mask(ctx, attn_mask))
    probs = softmax(ctx, scores)
    if dropout_p:
        probs = dropout(ctx, probs, dropout_p)
    return ctx.emit("batch_matmul", {"A": probs, "B": v})
