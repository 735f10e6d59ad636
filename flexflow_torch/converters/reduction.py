"""Reductions: sum, mean (reduce_sum + scalar_multiply; FlexFlow's mean is unimplemented)."""

from __future__ import annotations

import math

import torch

from ..registry import register
from ._common import FIXED, PARAM, arg_kind, scalar_op, supported_if, to_float

aten = torch.ops.aten


def _axes(x, dim):
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return list(range(x.rank))
    dim = [dim] if isinstance(dim, int) else dim
    return sorted(d % x.rank for d in dim)


def _reduce_support(node, self, **_):
    return "a reduction of a value that depends on no input" if arg_kind(self) in (PARAM, FIXED) else None


def _reduce(ctx, x, axes, keepdim):
    y = ctx.emit("reduce_sum", {"input": x}, {"axes": axes, "keepdims": True})
    return ctx.reshape(y, ctx.out_shape or (1,))


@register(aten.sum.dim_IntList, supports=supported_if(_reduce_support))
def aten_sum(ctx, self, dim, keepdim=False, dtype=None):
    """sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor"""
    x = to_float(ctx, ctx.tensor(self))
    return _reduce(ctx, x, _axes(x, dim), keepdim)


@register(aten.sum.default, supports=supported_if(_reduce_support))
def aten_sum_all(ctx, self, dtype=None):
    """sum(Tensor self, *, ScalarType? dtype=None) -> Tensor"""
    x = to_float(ctx, ctx.tensor(self))
    return _reduce(ctx, x, list(range(x.rank)), False)


@register(aten.mean.dim, supports=supported_if(_reduce_support))
def aten_mean(ctx, self, dim, keepdim=False, dtype=None):
    """mean.dim(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor"""
    x = to_float(ctx, ctx.tensor(self))
    axes = _axes(x, dim)
    n = math.prod(x.shape[a] for a in axes)
    return scalar_op(ctx, "scalar_multiply", _reduce(ctx, x, axes, keepdim), 1.0 / n)


@register(aten.mean.default, supports=supported_if(_reduce_support))
def aten_mean_all(ctx, self, dtype=None):
    """mean(Tensor self, *, ScalarType? dtype=None) -> Tensor"""
    x = to_float(ctx, ctx.tensor(self))
    return scalar_op(ctx, "scalar_multiply", _reduce(ctx, x, list(range(x.rank)), False), 1.0 / math.prod(x.shape))


@register(aten.cumsum.default)
def aten_cumsum(ctx, self, dim, dtype=None):
    """cumsum(Tensor self, int dim, *, ScalarType? dtype=None) -> Tensor

    A batch_matmul with a constant upper-triangular 0/1 matrix (exact for
    integer values below 2**24). The result is float: FlexFlow cannot cast back
    to an integer, so a cumsum feeding an embedding lookup stays unsupported."""
    x = to_float(ctx, ctx.tensor(self))
    dim %= x.rank
    perm = [i for i in range(x.rank) if i != dim] + [dim]
    moved = ctx.transpose(x, perm)
    n, B = moved.shape[-1], moved.shape[0]
    flat = ctx.reshape(moved, (B, math.prod(moved.shape[1:]) // n, n))
    tri = ctx.constant(torch.triu(torch.ones(n, n)).expand(B, n, n), float_=True)
    out = ctx.reshape(ctx.emit("batch_matmul", {"A": flat, "B": tri}), moved.shape)
    return ctx.transpose(out, [perm.index(i) for i in range(x.rank)])
