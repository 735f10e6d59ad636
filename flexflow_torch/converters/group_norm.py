"""GroupNorm, composed like LayerNorm (converters/norm.py) from reduce_sum, multiply and
pow(-0.5), whose FlexFlow backwards are exact: FlexFlow has no group norm (and its
layer_norm overwrites the input gradient, semantics/norm.py).

Each sample's channels are viewed as (groups, channels/groups * spatial) rows,
normalised per row with the biased variance, then scaled and shifted per channel."""

from __future__ import annotations

import math

import torch

from ..registry import register
from ._common import binary, scalar_op, to_float, unsupported

aten = torch.ops.aten


def group_norm(ctx, input, groups, weight, bias, eps):
    x = to_float(ctx, ctx.tensor(input))
    if x.id in ctx.lifted:
        unsupported("group norm of a value that depends on no input")
    B, C = x.shape[0], x.shape[1]
    if C % groups:
        unsupported(f"group norm of {C} channels in {groups} groups")
    rows = ctx.reshape(x, (B, groups, math.prod(x.shape[1:]) // groups))
    n = rows.shape[-1]

    def mean(v):
        return scalar_op(ctx, "scalar_multiply", ctx.emit("reduce_sum", {"input": v}, {"axes": [2], "keepdims": True}),
                         1.0 / n)
    centred = ctx.emit("subtract", {"x": rows, "y": mean(rows)})
    var = mean(ctx.emit("multiply", {"x": centred, "y": centred}))
    inv = ctx.emit("pow", {"input": scalar_op(ctx, "scalar_add", var, float(eps))}, {"exponent": -0.5})
    y = ctx.reshape(ctx.emit("multiply", {"x": centred, "y": inv}), x.shape)
    per_channel = (C,) + (1,) * (x.rank - 2)
    if weight is not None:
        y = binary(ctx, "multiply", y, ctx.view(ctx.tensor(weight), per_channel))
    if bias is not None:
        y = binary(ctx, "add", y, ctx.view(ctx.tensor(bias), per_channel))
    return y


@register(aten.group_norm.default)
def aten_group_norm(ctx, input, num_groups, weight=None, bias=None, eps=1e-05, cudnn_enabled=True):
    """group_norm(Tensor input, int num_groups, Tensor? weight=None, Tensor? bias=None, float eps=1.0000000000000001e-05, bool cudnn_enabled=True) -> Tensor"""
    return group_norm(ctx, input, num_groups, weight, bias, eps)
