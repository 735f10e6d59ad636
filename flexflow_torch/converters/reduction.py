"""Reductions: sum, mean (reduce_sum + scalar_multiply; FlexFlow's mean is unimplemented)."""

from __future__ import annotations

import math

import torch

from ..registry import register
from ._common import scalar_op, to_float

aten = torch.ops.aten


def _axes(x, dim):
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return list(range(x.rank))
    dim = [dim] if isinstance(dim, int) else dim
    return sorted(d % x.rank for d in dim)


def _reduce(ctx, x, axes, keepdim):
    y = ctx.emit("reduce_sum", {"input": x}, {"axes": axes, "keepdims": True})
    return ctx.reshape(y, ctx.out_shape or (1,))


@register(aten.sum.dim_IntList)
def aten_sum(ctx, self, dim, keepdim=False, dtype=None):
    """sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor"""
    x = ctx.tensor(self)
    return _reduce(ctx, x, _axes(x, dim), keepdim)


@register(aten.sum.default)
def aten_sum_all(ctx, self, dtype=None):
    """sum(Tensor self, *, ScalarType? dtype=None) -> Tensor"""
    x = ctx.tensor(self)
    return _reduce(ctx, x, list(range(x.rank)), False)


@register(aten.mean.dim)
def aten_mean(ctx, self, dim, keepdim=False, dtype=None):
    """mean.dim(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor"""
    x = to_float(ctx, ctx.tensor(self))
    axes = _axes(x, dim)
    n = math.prod(x.shape[a] for a in axes)
    return scalar_op(ctx, "scalar_multiply", _reduce(ctx, x, axes, keepdim), 1.0 / n)


@register(aten.mean.default)
def aten_mean_all(ctx, self, dtype=None):
    """mean(Tensor self, *, ScalarType? dtype=None) -> Tensor"""
    x = to_float(ctx, ctx.tensor(self))
    return scalar_op(ctx, "scalar_multiply", _reduce(ctx, x, list(range(x.rank)), False), 1.0 / math.prod(x.shape))
