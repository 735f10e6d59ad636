"""Shape and data movement: view, permute, expand, cat, split, slice, select, index
with constant indices (FlexFlow: reshape, concat, split, gather).

FlexFlow's transpose adds into its output on every forward (transpose_kernels.cu:78),
so permutations and other reorderings are gathers with constant indices, per sample
(context.gather_moves). Values depending on no input move per sample (context.move)."""

from __future__ import annotations

import math

import torch

from ..registry import register
from ..context import Const, Merged, lifted_shape, merges_batch
from ..graph import Value
from ._common import (CONST, FIXED, INPUT, PARAM, arg_kind, expand, shape_of, supported_if, to_float,
                      unsupported)
from ..fused_ops import view_graph as fused_view_graph

aten = torch.ops.aten


def _out(ctx):
    return ctx.out_shape or (1,)


def _fn_of_node(ctx):
    """The node's own PyTorch function of its first argument (for per-sample moves)."""
    node = ctx.node
    rest = node.args[1:]
    return lambda t: node.target(t, *rest, **node.kwargs)


def _move(ctx, x, fn):
    x = ctx.tensor(x)
    return ctx.move(x, fn)


@register(aten.view.default, aten._unsafe_view.default)
def aten_view(ctx, self, size):
    """view(Tensor(a) self, SymInt[] size) -> Tensor(a)
    _unsafe_view(Tensor self, SymInt[] size) -> Tensor

    A view merging the batch with the next axes stays unmerged (context.Merged)."""
    return _view(ctx, self)


@register(aten.reshape.default)
def aten_reshape(ctx, self, shape):
    """reshape(Tensor(a) self, SymInt[] shape) -> Tensor(a)"""
    return _view(ctx, self)


def _view(ctx, self):
    target = _out(ctx)
    if isinstance(self, Merged):
        if target == self.value.shape:
            return self.value
        if merges_batch(self.value.shape, target):
            return Merged(self.value, target)
    elif isinstance(self, Value) and self.id not in ctx.lifted and merges_batch(self.shape, target):
        return Merged(self, target)
    return ctx.view(ctx.tensor(self), target)


@register(aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims)
def aten_unsqueeze(ctx, self, dim):
    """unsqueeze(Tensor(a) self, int dim) -> Tensor(a)
    squeeze.dim(Tensor(a) self, int dim) -> Tensor(a)
    squeeze.dims(Tensor(a) self, int[] dim) -> Tensor(a)"""
    return ctx.view(ctx.tensor(self), _out(ctx))


@register(aten.squeeze.default)
def aten_squeeze(ctx, self):
    """squeeze(Tensor(a) self) -> Tensor(a)"""
    return ctx.view(ctx.tensor(self), _out(ctx))


@register(aten.flatten.using_ints)
def aten_flatten(ctx, self, start_dim=0, end_dim=-1):
    """flatten.using_ints(Tensor(a) self, int start_dim=0, int end_dim=-1) -> Tensor(a)"""
    return ctx.view(ctx.tensor(self), _out(ctx))


@register(aten.permute.default)
def aten_permute(ctx, self, dims):
    """permute(Tensor(a) self, int[] dims) -> Tensor(a)"""
    x = ctx.tensor(self)
    rank = ctx.torch_rank(x)
    perm = [d % rank for d in dims]
    if x.id in ctx.lifted:
        return ctx.move(x, lambda t: t.permute(perm))
    return ctx.transpose(x, perm)


@register(aten.transpose.int)
def aten_transpose(ctx, self, dim0, dim1):
    """transpose.int(Tensor(a) self, int dim0, int dim1) -> Tensor(a)"""
    x = ctx.tensor(self)
    rank = ctx.torch_rank(x)
    perm = list(range(rank))
    a, b = dim0 % rank, dim1 % rank
    perm[a], perm[b] = perm[b], perm[a]
    return aten_permute(ctx, x, perm)


@register(aten.t.default)
def aten_t(ctx, self):
    """t(Tensor(a) self) -> Tensor(a)"""
    x = ctx.tensor(self)
    return aten_permute(ctx, x, [1, 0]) if ctx.torch_rank(x) == 2 else x


@register(aten.expand.default)
def aten_expand(ctx, self, size, implicit=False):
    """expand(Tensor(a) self, SymInt[] size, *, bool implicit=False) -> Tensor(a)

    An add of zeros (FlexFlow has no expand)."""
    return expand(ctx, self, _out(ctx))


@register(aten.cat.default)
def aten_cat(ctx, tensors, dim=0):
    """cat(Tensor[] tensors, int dim=0) -> Tensor"""
    parts = [t for t in tensors if not (hasattr(t, "shape") and 0 in tuple(t.shape))]
    real = next((t for t in parts if hasattr(t, "id") and t.id not in ctx.lifted), None)
    if real is None and len(parts) > 1:
        return _cat_lifted(ctx, parts, dim)
    vals = [ctx.tensor(t, like=real) for t in parts]
    if real is not None:        # per-sample copies of batch-less pieces join the batch
        vals = [expand(ctx, v, (ctx.batch_size,) + ctx.torch_shape(v)[1:]) if v.id in ctx.lifted else v
                for v in vals]
    if len({v.dtype for v in vals}) > 1:
        vals = [to_float(ctx, v) for v in vals]
    if len(vals) == 1:
        return vals[0]
    return ctx.emit("concat", {"tensors": vals}, {"axis": dim % vals[0].rank})


def _cat_lifted(ctx, parts, dim):
    """cat of values that depend on no input (parameters, e.g. MobileBERT's LM head
    `cat([decoder.weight.t(), dense.weight])`): per sample, along the axis after the batch."""
    B, out = ctx.batch_size, _out(ctx)
    vals = [ctx.tensor(t) for t in parts]
    vals = [ctx.reshape(v, (B,) + ctx.torch_shape(v)) for v in vals]
    if len({v.dtype for v in vals}) > 1:
        vals = [to_float(ctx, v) for v in vals]
    joined = ctx.emit("concat", {"tensors": vals}, {"axis": dim % len(out) + 1})
    return ctx.lift(ctx.reshape(joined, lifted_shape(B, out)), out)


def split_sizes(ctx, x, sizes, dim):
    if len(sizes) == 1:
        return [x]
    return ctx.emit("split", {"input": x}, {"sizes": list(sizes), "axis": dim})


def _used(ctx, n):
    """Which of the node's `n` results something reads (no FlexFlow op for the others:
    an operator whose output nothing reads is a second sink, and FlexFlow binds the loss
    to one)."""
    import operator
    used = {u.args[1] for u in ctx.node.users if u.target is operator.getitem}
    return [i in used for i in range(n)]


def _split(ctx, self, sizes, dim):
    x = ctx.tensor(self)
    if x.id in ctx.lifted:
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        d = dim % ctx.torch_rank(x)
        return [ctx.move(x, lambda t, s=s, n=n: t.narrow(d, s, n)) if used else None
                for s, n, used in zip(starts, sizes, _used(ctx, len(sizes)))]
    return split_sizes(ctx, x, sizes, dim % x.rank)


@register(aten.split.Tensor)
def aten_split(ctx, self, split_size, dim=0):
    """split.Tensor(Tensor(a -> *) self, SymInt split_size, int dim=0) -> Tensor(a)[]"""
    n = ctx.torch_shape(ctx.tensor(self))[dim]
    return _split(ctx, self, [min(split_size, n - i) for i in range(0, n, split_size)], dim)


@register(aten.split_with_sizes.default)
def aten_split_with_sizes(ctx, self, split_sizes, dim=0):
    """split_with_sizes(Tensor(a -> *) self, SymInt[] split_sizes, int dim=0) -> Tensor(a)[]"""
    return _split(ctx, self, list(split_sizes), dim)


@register(aten.unbind.int)
def aten_unbind(ctx, self, dim=0):
    """unbind.int(Tensor(a -> *) self, int dim=0) -> Tensor(a)[]"""
    x = ctx.tensor(self)
    if x.id in ctx.lifted:
        d = dim % ctx.torch_rank(x)
        n = ctx.torch_shape(x)[d]
        return [ctx.move(x, lambda t, i=i: t.select(d, i)) if used else None
                for i, used in zip(range(n), _used(ctx, n))]
    dim %= x.rank
    parts = split_sizes(ctx, x, [1] * x.shape[dim], dim)
    shape = x.shape[:dim] + x.shape[dim + 1:]
    return [ctx.reshape(p, shape or (1,)) if used else None for p, used in zip(parts, _used(ctx, len(parts)))]


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

    Contiguous slices are a split; strided ones (and slices of values that depend on
    no input) a gather with constant indices."""
    x = ctx.tensor(self)
    rank = ctx.torch_rank(x)
    dim %= rank
    n = ctx.torch_shape(x)[dim]
    start, end, step = slice(start, end, step).indices(n)      # never empty: see analysis.find_unsupported
    if x.id in ctx.lifted or step != 1:
        return ctx.move(x, lambda t: t[(slice(None),) * dim + (slice(start, end, step),)])
    return _slice(ctx, x, dim, start, end)


@register(aten.select.int)
def aten_select(ctx, self, dim, index):
    """select.int(Tensor(a) self, int dim, SymInt index) -> Tensor(a)"""
    x = ctx.tensor(self)
    rank = ctx.torch_rank(x)
    dim %= rank
    index %= ctx.torch_shape(x)[dim]
    if x.id in ctx.lifted:
        return ctx.move(x, lambda t: t.select(dim, index))
    return ctx.reshape(_slice(ctx, x, dim, index, index + 1), _out(ctx))


def _index_support(node, self, indices, **_):
    if any(i is not None and arg_kind(i) != CONST for i in indices):
        return ("indexing with indices computed from the inputs (FlexFlow has no dynamic gather "
                "with broadcasting)")
    return None


@register(aten.index.Tensor, supports=supported_if(_index_support))
def aten_index(ctx, self, indices):
    """index.Tensor(Tensor self, Tensor?[] indices) -> Tensor

    Constant indices only: a gather."""
    idx = [None if i is None else i.tensor for i in indices]
    return _move(ctx, self, lambda t: torch.ops.aten.index.Tensor(t, idx))


@register(aten.gather.default)
def aten_gather(ctx, self, dim, index, sparse_grad=False):
    """gather(Tensor self, int dim, Tensor index, *, bool sparse_grad=False) -> Tensor"""
    if isinstance(index, Const):
        return _move(ctx, self, lambda t: torch.gather(t, dim, index.tensor))
    x, i = to_float(ctx, ctx.tensor(self)), ctx.tensor(index)
    return ctx.emit("gather", {"input": x, "index": i}, {"dim": dim % x.rank})


@register(aten.flip.default)
def aten_flip(ctx, self, dims):
    """flip(Tensor self, int[] dims) -> Tensor

    A constant gather (FlexFlow's reverse is unimplemented)."""
    return _move(ctx, self, lambda t: torch.flip(t, dims))


@register(aten.roll.default)
def aten_roll(ctx, self, shifts, dims=()):
    """roll(Tensor self, SymInt[1] shifts, int[1] dims=[]) -> Tensor"""
    return _move(ctx, self, lambda t: torch.roll(t, shifts, dims))


@register(aten.repeat.default)
def aten_repeat(ctx, self, repeats):
    """repeat(Tensor self, SymInt[] repeats) -> Tensor"""
    return _move(ctx, self, lambda t: t.repeat(repeats))


def _index_select_support(node, self, dim, index, **_):
    return None if arg_kind(index) == CONST else "index_select with an index computed from the inputs"


@register(aten.index_select.default, supports=supported_if(_index_select_support))
def aten_index_select(ctx, self, dim, index):
    """index_select(Tensor self, int dim, Tensor index) -> Tensor

    Constant index only: a gather."""
    return _move(ctx, self, lambda t: torch.index_select(t, dim, index.tensor))


def _pad_support(node, self, **_):
    return "padding a value that depends on no input" if arg_kind(self) in (PARAM, FIXED) else None


@register(aten.constant_pad_nd.default, supports=supported_if(_pad_support))
def aten_constant_pad_nd(ctx, self, pad, value=0):
    """constant_pad_nd(Tensor self, SymInt[] pad, Scalar value=0) -> Tensor

    A per-sample gather from the input with one extra element per sample holding
    `value`."""
    x = to_float(ctx, ctx.tensor(self))
    B, per = x.shape[0], math.prod(x.shape[1:])
    pad = list(pad)
    if len(pad) > 2 * (x.rank - 1):          # pairs for the batch axis: nothing to pad there
        if any(pad[2 * (x.rank - 1):]):
            unsupported("padding along the batch axis")
        pad = pad[:2 * (x.rank - 1)]
    fill = ctx.constant(torch.full((B, 1), float(value)), float_=True)
    padded = ctx.emit("concat", {"tensors": [ctx.reshape(x, (B, per)), fill]}, {"axis": 1})
    src = torch.nn.functional.pad(torch.arange(per).reshape(x.shape[1:]).double(), list(pad), value=per).long()
    idx = ctx.constant(src.reshape(1, -1).expand(B, -1).to(torch.int32))
    return ctx.reshape(ctx.emit("gather", {"input": padded, "index": idx}, {"dim": 1}), _out(ctx))


@register(fused_view_graph)
def fused_view_graph_converter(ctx, inputs, steps):
    """flexflow_torch::view_graph(Tensor[] inputs, str steps) -> Tensor

    One per-sample gather: each sample's inputs (activations per sample, constants and
    other values that depend on no input as one copy each) are concatenated into a row,
    and the steps, applied to the positions of that row, give the gather index."""
    from ..fused_ops import apply_steps, decode_steps
    B = ctx.batch_size
    pieces, layout, total = [], [], 0
    for x in inputs:
        v = to_float(ctx, ctx.tensor(x))
        shared = v.id in ctx.lifted
        shape = ctx.torch_shape(v) if shared else v.shape
        n = math.prod(shape) if shared else math.prod(shape[1:])
        pieces.append(ctx.reshape(v, (B, n)))
        layout.append((shared, shape, total, n))
        total += n
    # every element's position in its sample's row; sample b's own elements carry b * total
    index_inputs, const_spans = [], []
    for shared, shape, offset, n in layout:
        if shared:
            index_inputs.append(torch.arange(offset, offset + n).reshape(shape))
            const_spans.append((offset, offset + n))
        else:
            own = torch.arange(offset, offset + n).unsqueeze(0) + torch.arange(B).unsqueeze(1) * total
            index_inputs.append(own.reshape(shape))
    src = apply_steps(index_inputs, decode_steps(steps))
    joined = pieces[0] if len(pieces) == 1 else ctx.emit("concat", {"tensors": pieces}, {"axis": 1})
    if all(shared for shared, *_ in layout):      # depends on no input: the same row per sample
        idx = ctx.constant(src.reshape(1, -1).expand(B, -1).to(torch.int32))
        out = ctx.emit("gather", {"input": joined, "index": idx}, {"dim": 1})
        return ctx.lift(ctx.reshape(out, lifted_shape(B, src.shape)), tuple(src.shape))
    if src.dim() == 0 or src.shape[0] != B:
        unsupported("a >4-D data movement whose result is not per sample")
    rows = src.reshape(B, -1)
    local = rows % total
    owner = rows // total
    shared = torch.zeros_like(local, dtype=torch.bool)
    for a, b in const_spans:
        shared |= (rows >= a) & (rows < b)
    if not bool(((owner == torch.arange(B).unsqueeze(1)) | shared).all()):
        unsupported("a >4-D data movement that mixes samples")
    out = ctx.emit("gather", {"input": joined, "index": ctx.constant(local.to(torch.int32))}, {"dim": 1})
    return ctx.reshape(out, tuple(src.shape))
