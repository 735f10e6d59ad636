"""Boolean masks on input-dependent data. FlexFlow has no bool tensors,
comparisons or select: a mask is a 0/1 numeric tensor, `and` is a product,
`where(c, a, b)` is a*c + b*(1-c). Comparisons of input-dependent data cannot
be expressed and are reported as unsupported by analyze()."""

from __future__ import annotations

import torch

from ..registry import register
from ..context import Const
from ..graph import Value
from ._common import binary, scalar_op, to_float, finite, expand

aten = torch.ops.aten


def _as_float_mask(ctx, cond):
    if isinstance(cond, Const):
        return Const(cond.tensor.to(torch.float32))
    return to_float(ctx, ctx.tensor(cond))


def _one_minus(ctx, c):
    if isinstance(c, Const):
        return Const(1.0 - c.tensor)
    return scalar_op(ctx, "scalar_add", scalar_op(ctx, "scalar_multiply", c, -1.0), 1.0)


def _term(ctx, value, c):
    s = ctx.scalar(value)
    if s is not None:
        s = finite(float(s))
        if s == 0:
            return None
        if isinstance(c, Const):
            return Const(c.tensor * s)
        return c if s == 1 else scalar_op(ctx, "scalar_multiply", c, s)
    return binary(ctx, "multiply", value, c)


def select(ctx, cond, a, b):
    """where(cond, a, b) = a*cond + b*(1-cond)."""
    c = _as_float_mask(ctx, cond)
    ta, tb = _term(ctx, a, c), _term(ctx, b, _one_minus(ctx, c))
    if ta is None and tb is None:
        out = Const(torch.zeros(ctx.out_shape))
    elif ta is None or tb is None:
        out = ta if tb is None else tb
    else:
        out = binary(ctx, "add", ta, tb)
    out = ctx.tensor(out, float_=True)
    if ctx.torch_shape(out) != ctx.out_shape or (out.id in ctx.lifted and ctx.node in ctx.per_sample):
        out = expand(ctx, out, ctx.out_shape)
    return out


@register(aten.bitwise_and.Tensor, aten.logical_and.default)
def aten_bitwise_and(ctx, self, other):
    """bitwise_and.Tensor(Tensor self, Tensor other) -> Tensor
    logical_and(Tensor self, Tensor other) -> Tensor

    0/1 masks: a * b."""
    for x, y in ((self, other), (other, self)):
        if isinstance(x, Const) and x.tensor.dtype == torch.bool and bool(x.tensor.all()):
            if tuple(y.shape) == ctx.out_shape or not isinstance(y, Value):
                return y
    return binary(ctx, "multiply", self, other)


@register(aten.bitwise_or.Tensor, aten.logical_or.default)
def aten_bitwise_or(ctx, self, other):
    """bitwise_or.Tensor(Tensor self, Tensor other) -> Tensor
    logical_or(Tensor self, Tensor other) -> Tensor

    0/1 masks: a + b - a * b."""
    both = binary(ctx, "multiply", self, other)
    return binary(ctx, "subtract", binary(ctx, "add", self, other), both)


@register(aten.bitwise_not.default, aten.logical_not.default)
def aten_bitwise_not(ctx, self):
    """bitwise_not(Tensor self) -> Tensor
    logical_not(Tensor self) -> Tensor

    0/1 masks: 1 - a."""
    return _one_minus(ctx, to_float(ctx, ctx.tensor(self)))
