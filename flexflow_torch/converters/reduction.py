"""Reductions: sum, mean (reduce_sum + scalar_multiply; FlexFlow's mean is unimplemented)."""

from __future__ import annotations

import math

import torch

from ..registry import register
from ._common import scalar_op, to_float, unsupported

aten = torch.ops.aten


def _axes(ctx, x, dim):
    """PyTorch axes (of x's PyTorch shape: a value depending on no input has no batch axis)."""
    rank = ctx.torch_rank(x)
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return list(range(rank))
    dim = [dim] if isinstance(dim, int) else dim
    return sorted(d % rank for d in dim)


def _reduce(ctx, x, axes, keepdim):
    if x.id in ctx.lifted:
        return _reduce_lifted(ctx, x, axes)
    y = ctx.emit("reduce_sum", {"input": x}, {"axes": axes, "keepdims": True})
    return ctx.reshape(y, ctx.out_shape or (1,))


def _reduce_lifted(ctx, x, axes):
    """A sum over PyTorch axes `axes` of a value that depends on no input (e.g. the norm
    of a weight-normed kernel): per sample, over the axes after the batch axis."""
    shape = ctx.torch_shape(x)
    if len(shape) + 1 > 4:
        unsupported(f"a reduction of a {len(shape)}-D value that depends on no input")
    per_sample = ctx.reshape(x, (ctx.batch_size,) + tuple(shape))
    y = ctx.emit("reduce_sum", {"input": per_sample}, {"axes": [a + 1 for a in axes], "keepdims": True})
    return ctx.view(ctx.lift(y, (1,) + tuple(y.shape[1:])), ctx.out_shape or (1,))


@register(aten.sum.dim_IntList)
def aten_sum(ctx, self, dim, keepdim=False, dtype=None):
    """sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor"""
    x = to_float(ctx, ctx.tensor(self))
    return _reduce(ctx, x, _axes(ctx, x, dim), keepdim)


@register(aten.sum.default)
def aten_sum_all(ctx, self, dtype=None):
    """sum(Tensor self, *, ScalarType? dtype=None) -> Tensor"""
    x = to_float(ctx, ctx.tensor(self))
    return _reduce(ctx, x, _axes(ctx, x, None), False)


@register(aten.mean.dim)
def aten_mean(ctx, self, dim, keepdim=False, dtype=None):
    """mean.dim(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor"""
    x = to_float(ctx, ctx.tensor(self))
    axes = _axes(ctx, x, dim)
    n = math.prod(ctx.torch_shape(x)[a] for a in axes)
    return scalar_op(ctx, "scalar_multiply", _reduce(ctx, x, axes, keepdim), 1.0 / n)


@register(aten.mean.default)
def aten_mean_all(ctx, self, dtype=None):
    """mean(Tensor self, *, ScalarType? dtype=None) -> Tensor"""
    x = to_float(ctx, ctx.tensor(self))
    return scalar_op(ctx, "scalar_multiply", _reduce(ctx, x, _axes(ctx, x, None), False),
                     1.0 / math.prod(ctx.torch_shape(x)))


@register(aten.linalg_vector_norm.default)
def aten_linalg_vector_norm(ctx, self, ord=2, dim=None, keepdim=False, dtype=None):
    """linalg_vector_norm(Tensor self, Scalar ord=2, int[1]? dim=None, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor

    The 2-norm, pow(sum(x * x), 0.5) (weight norm's ||v||); other orders have no exact
    FlexFlow form (no abs with a usable gradient at 0, no max over a reduction)."""
    if ord != 2:
        unsupported(f"a vector norm of order {ord}")
    x = to_float(ctx, ctx.tensor(self))
    squares = ctx.emit("multiply", {"x": x, "y": x})
    if x.id in ctx.lifted:
        ctx.lift(squares, ctx.torch_shape(x))
    total = _reduce(ctx, squares, _axes(ctx, x, dim), keepdim)
    root = ctx.emit("pow", {"input": total}, {"exponent": 0.5})
    return ctx.lift(root, ctx.torch_shape(total)) if total.id in ctx.lifted else root


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
