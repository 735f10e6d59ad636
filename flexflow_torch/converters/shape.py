"""Shape and data movement: view, permute, expand, cat, split, slice, select,
index with constant indices (FlexFlow: reshape, transpose, concat, split, gather)."""

from __future__ import annotations

import math

import torch

from ..registry import register
from ..context import Const
from ._common import expand, to_float
from ..fused_ops import view_graph as fused_view_graph

aten = torch.ops.aten


def _out(ctx):
    return ctx.out_shape or (1,)


@register(aten.view.default, aten._unsafe_view.default, aten.reshape.default)
def aten_view(ctx, self, size):
    """view(Tensor(a) self, SymInt[] size) -> Tensor(a)"""
    return ctx.reshape(ctx.tensor(self), _out(ctx))


@register(aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default)
def aten_unsqueeze(ctx, self, dim=None):
    """unsqueeze(Tensor(a) self, int dim) -> Tensor(a)   (also squeeze)"""
    return ctx.reshape(ctx.tensor(self), _out(ctx))


@register(aten.flatten.using_ints)
def aten_flatten(ctx, self, start_dim=0, end_dim=-1):
    """flatten.using_ints(Tensor(a) self, int start_dim=0, int end_dim=-1) -> Tensor(a)"""
    return ctx.reshape(ctx.tensor(self), _out(ctx))


@register(aten.permute.default)
def aten_permute(ctx, self, dims):
    """permute(Tensor(a) self, int[] dims) -> Tensor(a)"""
    x = ctx.tensor(self)
    return ctx.transpose(x, [d % x.rank for d in dims])


@register(aten.transpose.int)
def aten_transpose(ctx, self, dim0, dim1):
    """transpose.int(Tensor(a) self, int dim0, int dim1) -> Tensor(a)"""
    x = ctx.tensor(self)
    perm = list(range(x.rank))
    a, b = dim0 % x.rank, dim1 % x.rank
    perm[a], perm[b] = perm[b], perm[a]
    return ctx.transpose(x, perm)


@register(aten.t.default)
def aten_t(ctx, self):
    """t(Tensor(a) self) -> Tensor(a)"""
    x = ctx.tensor(self)
    return ctx.transpose(x, [1, 0]) if x.rank == 2 else x


@register(aten.expand.default)
def aten_expand(ctx, self, size, implicit=False):
    """expand(Tensor(a) self, SymInt[] size, *, bool implicit=False) -> Tensor(a)   (add of zeros)"""
    return expand(ctx, self, _out(ctx))


@register(aten.cat.default)
def aten_cat(ctx, tensors, dim=0):
    """cat(Tensor[] tensors, int dim=0) -> Tensor"""
    vals = [ctx.tensor(t) for t in tensors if not (hasattr(t, "shape") and 0 in tuple(t.shape))]
    if len({v.dtype for v in vals}) > 1:
        vals = [to_float(ctx, v) for v in vals]
    if len(vals) == 1:
        return vals[0]
    return ctx.emit("concat", {"tensors": vals}, {"axis": dim % vals[0].rank})


def split_sizes(ctx, x, sizes, dim):
    sizes = [s for s in sizes]
    if len(sizes) == 1:
        return [x]
    return ctx.emit("split", {"input": x}, {"sizes": sizes, "axis": dim})


@register(aten.split.Tensor)
def aten_split(ctx, self, split_size, dim=0):
    """split.Tensor(Tensor(a -> *) self, SymInt split_size, int dim=0) -> Tensor(a)[]"""
    x = ctx.tensor(self)
    dim %= x.rank
    n = x.shape[dim]
    sizes = [min(split_size, n - i) for i in range(0, n, split_size)]
    return split_sizes(ctx, x, sizes, dim)


@register(aten.split_with_sizes.default)
def aten_split_with_sizes(ctx, self, split_sizes, dim=0):
    """split_with_sizes(Tensor(a -> *) self, SymInt[] split_sizes, int dim=0) -> Tensor(a)[]"""
    x = ctx.tensor(self)
    return globals()["split_sizes"](ctx, x, list(split_sizes), dim % x.rank)


@register(aten.unbind.int)
def aten_unbind(ctx, self, dim=0):
    """unbind.int(Tensor(a -> *) self, int dim=0) -> Tensor(a)[]"""
    x = ctx.tensor(self)
    dim %= x.rank
    parts = split_sizes(ctx, x, [1] * x.shape[dim], dim)
    shape = x.shape[:dim] + x.shape[dim + 1:]
    return [ctx.reshape(p, shape or (1,)) for p in parts]


def _slice(ctx, x, dim, start, end):
    n = x.shape[dim]
    if start == 0 and end == n:
        return x
    sizes = [s for s in (start, end - start, n - end) if s > 0]
    parts = ctx.emit("split", {"input": x}, {"sizes": sizes, "axis": dim})
    return parts[1] if start > 0 else parts[0]


@register(aten.slice.Tensor)
def aten_slice(ctx, self, dim=0, start=None, end=None, step=1):
    """slice.Tensor(Tensor(a) self, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1) -> Tensor(a)

    Contiguous slices are a split; strided ones a gather with constant indices."""
    x = ctx.tensor(self)
    dim %= x.rank
    n = x.shape[dim]
    start, end, step = slice(start, end, step).indices(n)
    if end <= start:
        end = start
    if step != 1:
        return gather_constant(ctx, x, lambda t: t.narrow(dim, 0, n)[(slice(None),) * dim + (slice(start, end, step),)])
    return _slice(ctx, x, dim, start, end)


@register(aten.select.int)
def aten_select(ctx, self, dim, index):
    """select.int(Tensor(a) self, int dim, SymInt index) -> Tensor(a)"""
    x = ctx.tensor(self)
    dim %= x.rank
    index %= x.shape[dim]
    return ctx.reshape(_slice(ctx, x, dim, index, index + 1), _out(ctx))


def gather_constant(ctx, x, index_fn):
    """Any data movement with constant indices: apply `index_fn` to the flat
    positions of x; a plain reshape when the order is unchanged, else a 1-D
    FlexFlow gather over the flattened tensor."""
    src = index_fn(torch.arange(math.prod(x.shape)).reshape(x.shape))
    out_shape = tuple(src.shape) or (1,)
    flat_src = src.reshape(-1)
    if flat_src.numel() == math.prod(x.shape) and torch.equal(flat_src, torch.arange(flat_src.numel())):
        return ctx.reshape(x, out_shape)
    flat = ctx.reshape(x, (math.prod(x.shape),))
    idx = ctx.constant(flat_src.to(torch.int32))
    return ctx.reshape(ctx.emit("gather", {"input": flat, "index": idx}, {"dim": 0}), out_shape)


@register(aten.index.Tensor)
def aten_index(ctx, self, indices):
    """index.Tensor(Tensor self, Tensor?[] indices) -> Tensor   (constant indices only)"""
    from ._common import unsupported
    if any(i is not None and not isinstance(i, Const) for i in indices):
        unsupported("indexing with indices computed from the inputs (FlexFlow has no dynamic gather "
                    "with broadcasting)")
    idx = [None if i is None else i.tensor for i in indices]
    return gather_constant(ctx, ctx.tensor(self), lambda t: torch.ops.aten.index.Tensor(t, idx))


@register(aten.gather.default)
def aten_gather(ctx, self, dim, index, sparse_grad=False):
    """gather(Tensor self, int dim, Tensor index, *, bool sparse_grad=False) -> Tensor"""
    if isinstance(index, Const):
        return gather_constant(ctx, ctx.tensor(self), lambda t: torch.gather(t, dim, index.tensor))
    x, i = ctx.tensor(self), ctx.tensor(index)
    return ctx.emit("gather", {"input": x, "index": i}, {"dim": dim % x.rank})


@register(aten.flip.default)
def aten_flip(ctx, self, dims):
    """flip(Tensor self, int[] dims) -> Tensor   (constant gather; FlexFlow's reverse is unimplemented)"""
    return gather_constant(ctx, ctx.tensor(self), lambda t: torch.flip(t, dims))


@register(aten.roll.default)
def aten_roll(ctx, self, shifts, dims=()):
    """roll(Tensor self, SymInt[1] shifts, int[1] dims=[]) -> Tensor"""
    return gather_constant(ctx, ctx.tensor(self), lambda t: torch.roll(t, shifts, dims))


@register(aten.repeat.default)
def aten_repeat(ctx, self, repeats):
    """repeat(Tensor self, SymInt[] repeats) -> Tensor"""
    return gather_constant(ctx, ctx.tensor(self), lambda t: t.repeat(repeats))


@register(aten.index_select.default)
def aten_index_select(ctx, self, dim, index):
    """index_select(Tensor self, int dim, Tensor index) -> Tensor   (constant index only)"""
    from ._common import unsupported
    if not isinstance(index, Const):
        unsupported("index_select with an index computed from the inputs")
    return gather_constant(ctx, ctx.tensor(self), lambda t: torch.index_select(t, dim, index.tensor))


@register(aten.constant_pad_nd.default)
def aten_constant_pad_nd(ctx, self, pad, value=0):
    """constant_pad_nd(Tensor self, SymInt[] pad, Scalar value=0) -> Tensor

    A gather from the flattened input with one extra element holding `value`."""
    x = ctx.tensor(self)
    n = math.prod(x.shape)
    src = torch.nn.functional.pad(torch.arange(n).reshape(x.shape), list(pad), value=n)
    fill = ctx.constant(torch.full((1,), float(value)), float_=x.dtype == "DT_FLOAT") \
        if x.dtype == "DT_FLOAT" else ctx.constant(torch.full((1,), int(value), dtype=torch.int32))
    if fill.dtype != x.dtype:
        from ..errors import UnsupportedByFlexFlowError
        raise UnsupportedByFlexFlowError("padding an int64 tensor (no int64 constants in FlexFlow)")
    flat = ctx.emit("concat", {"tensors": [ctx.reshape(x, (n,)), fill]}, {"axis": 0})
    idx = ctx.constant(src.reshape(-1).to(torch.int32))
    return ctx.reshape(ctx.emit("gather", {"input": flat, "index": idx}, {"dim": 0}), tuple(src.shape))


@register(fused_view_graph)
def fused_view_graph_converter(ctx, inputs, steps):
    """view_graph(Tensor[] inputs, steps) -> Tensor   (one constant gather over the concatenated inputs)"""
    from ..fused_ops import view_graph
    vals = [ctx.tensor(x) for x in inputs]
    if len({v.dtype for v in vals}) > 1:
        vals = [to_float(ctx, v) for v in vals]
    if len(vals) == 1:
        return gather_constant(ctx, vals[0], lambda t: view_graph([t], steps))
    sizes = [math.prod(v.shape) for v in vals]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    src = view_graph([torch.arange(n).reshape(v.shape) + off for v, n, off in zip(vals, sizes, offsets)], steps)
    flat = ctx.emit("concat", {"tensors": [ctx.reshape(v, (n,)) for v, n in zip(vals, sizes)]}, {"axis": 0})
    idx = ctx.constant(src.reshape(-1).to(torch.int32))
    out = ctx.emit("gather", {"input": flat, "index": idx}, {"dim": 0})
    return ctx.reshape(out, tuple(src.shape) or (1,))
