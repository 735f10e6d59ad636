"""Selection by a boolean mask. FlexFlow has no bool tensors, comparisons or select:
masks computed from the inputs (comparisons, and/or/not, casts) are computed on the
host (passes/host_inputs.py) and reach FlexFlow as 0/1 DT_INT32 tensors, and
`where(c, a, b)` is a*c + b*(1-c). Comparisons of activations cannot be expressed and
are reported as unsupported by analyze()."""

from __future__ import annotations

import torch

from ..context import Const
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
