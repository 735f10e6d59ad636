"""Selection over the last axis on activations: topk (mixture-of-experts routing), max
and min over an axis. FlexFlow has no comparison, sort or integer output with a
gradient, so a selection is computed with exact-gradient operators:

* the largest value of a row is a max pool2d over the row (FlexFlow's pool backward
  routes the gradient to the maximum, as PyTorch's topk/max do);
* which entries it was is a float 0/1 row, `1 - min(relu(m - x) * FLT_MAX, 1)`: 0 where
  x < m (any positive float difference times FLT_MAX is >= 1), 1 where x == m; its
  gradient is zero, as the indices' is;
* the k largest come from k such steps, each pushing the entries already chosen far
  below the rest.

The chosen indices travel as that one-hot (`Selection`), which `one_hot` consumers (the
dense expert weighting, see capture.dense_experts) read as data. Entries tied with
the k-th largest are all chosen (PyTorch picks one); continuous activations do not tie."""

from __future__ import annotations

import math

import torch

from ..registry import register
from ..graph import enum
from ._common import POS_LARGE, scalar_op, to_float, unsupported

aten = torch.ops.aten
#: how far chosen entries are pushed down before the next step
PUSH = 1e30


class Selection:
    """Indices chosen along the last axis of a (..., n) tensor, held as a float one-hot
    (..., k, n) FlexFlow value (the index tensor's shape is (..., k)), built when a
    consumer reads it: FlexFlow rejects operators whose outputs nothing uses."""

    stands_for_tensor = True          # context._check_output compares its shape with PyTorch's

    def __init__(self, build, shape, n):
        self._build, self._onehot, self.shape, self.n = build, None, tuple(shape), n

    @property
    def onehot(self):
        if self._onehot is None:
            self._onehot = self._build()
        return self._onehot

    def reshaped(self, ctx, shape):
        """The same selection for an index tensor of `shape`."""
        return Selection(lambda: ctx.reshape(self.onehot, tuple(shape) + (self.n,)), shape, self.n)

    def __repr__(self):
        return f"Selection({list(self.shape)} over {self.n})"


def _rows4(ctx, x):
    """x (..., n) as (batch, 1, rows, n) for pool2d over each row."""
    rows = math.prod(x.shape[1:-1]) if x.rank > 1 else 1
    return ctx.reshape(x, (x.shape[0], 1, rows, x.shape[-1]))


def _row_max(ctx, x4):
    n = x4.shape[-1]
    return ctx.emit("pool2d", {"input": x4}, {"kernel_h": 1, "kernel_w": n, "stride_h": 1, "stride_w": n,
                                              "padding_h": 0, "padding_w": 0, "pool_type": enum("PoolType.POOL_MAX"),
                                              "activation": enum("ActiMode.AC_MODE_NONE")})


def _is_max(ctx, x4, m):
    """1.0 where x4 equals its row maximum m, else 0.0 (zero gradient)."""
    gap = ctx.emit("relu", {"input": ctx.emit("subtract", {"x": m, "y": x4})}, {"inplace": False})
    ones = ctx.constant(torch.ones(x4.shape), float_=True)
    below = ctx.emit("min", {"x": scalar_op(ctx, "scalar_multiply", gap, POS_LARGE), "y": ones})
    return scalar_op(ctx, "scalar_add", scalar_op(ctx, "scalar_multiply", below, -1.0), 1.0)


def select_largest(ctx, x, k):
    """(values (..., k), Selection) of the k largest entries of each last-axis row of x."""
    x = to_float(ctx, ctx.tensor(x))
    if x.id in ctx.lifted:
        unsupported("a selection over a value that depends on no input")
    cur = _rows4(ctx, x)
    B, _, rows, n = cur.shape
    values, hots, steps = [], [], []
    for j in range(k):
        m = _row_max(ctx, cur)
        values.append(m)
        steps.append((cur, m))
        if j + 1 < k:
            hots.append(_is_max(ctx, cur, m))
            cur = ctx.emit("subtract", {"x": cur, "y": scalar_op(ctx, "scalar_multiply", hots[-1], PUSH)})
    vals = values[0] if k == 1 else ctx.emit("concat", {"tensors": values}, {"axis": 3})
    lead = x.shape[:-1]

    def onehot():
        rows_hot = [ctx.reshape(h, (B, rows, 1, n)) for h in hots + [_is_max(ctx, *steps[-1])]]
        joined = rows_hot[0] if k == 1 else ctx.emit("concat", {"tensors": rows_hot}, {"axis": 2})
        return ctx.reshape(joined, lead + (k, n))
    return ctx.reshape(vals, lead + (k,)), Selection(onehot, lead + (k,), n)


def _last_axis(ctx, x, dim):
    rank = ctx.torch_rank(ctx.tensor(x))
    if dim % rank != rank - 1:
        unsupported("a selection along another axis than the last")


@register(aten.topk.default)
def aten_topk(ctx, self, k, dim=-1, largest=True, sorted=True):
    """topk(Tensor self, SymInt k, int dim=-1, bool largest=True, bool sorted=True) -> (Tensor values, Tensor indices)

    The indices come back as a `Selection` (a float one-hot), which only `one_hot` reads."""
    _last_axis(ctx, self, dim)
    x = ctx.tensor(self)
    if not largest:
        values, sel = select_largest(ctx, scalar_op(ctx, "scalar_multiply", x, -1.0), k)
        return scalar_op(ctx, "scalar_multiply", values, -1.0), sel
    return select_largest(ctx, x, k)


@register(aten.max.dim, aten.min.dim)
def aten_max_dim(ctx, self, dim, keepdim=False):
    """max.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)
    min.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)

    Any axis but the batch's: moved last (a per-sample gather) when it is not. The
    indices come back as a `Selection`."""
    x = to_float(ctx, ctx.tensor(self))
    rank = x.rank
    dim %= rank
    if dim == 0:
        unsupported("a max/min over the batch axis")
    if dim != rank - 1:
        x = ctx.transpose(x, [i for i in range(rank) if i != dim] + [dim])
    is_min = ctx.node.target is aten.min.dim
    if is_min:
        x = scalar_op(ctx, "scalar_multiply", x, -1.0)
    values, sel = select_largest(ctx, x, 1)
    if is_min:
        values = scalar_op(ctx, "scalar_multiply", values, -1.0)
    return ctx.reshape(values, ctx.out_val[0].shape), sel.reshaped(ctx, tuple(ctx.out_val[1].shape) or (1,))


@register(aten.amax.default)
def aten_amax(ctx, self, dim=(), keepdim=False):
    """amax(Tensor self, int[1] dim=[], bool keepdim=False) -> Tensor

    Over one axis."""
    dims = list(dim) if isinstance(dim, (list, tuple)) else [dim]
    if len(dims) != 1:
        unsupported("amax over several axes")
    x = to_float(ctx, ctx.tensor(self))
    d = dims[0] % x.rank
    if d == 0:
        unsupported("a max over the batch axis")
    if d != x.rank - 1:
        x = ctx.transpose(x, [i for i in range(x.rank) if i != d] + [d])
    values, _ = select_largest(ctx, x, 1)
    return ctx.reshape(values, ctx.out_shape)


@register(aten.one_hot.default)
def aten_one_hot(ctx, self, num_classes=-1):
    """one_hot(Tensor self, int num_classes=-1) -> Tensor

    Of indices chosen by topk/max (a `Selection`): its float one-hot, widened with zero
    columns to `num_classes`. Indices computed from the integer inputs alone are one-hot
    encoded on the host (passes/host_inputs.py)."""
    if not isinstance(self, Selection):
        unsupported("one_hot of indices that are neither chosen by topk/max nor computed on the host")
    n = ctx.out_shape[-1]
    if n == self.n:
        return self.onehot
    if n < self.n:
        unsupported(f"one_hot with {n} classes of indices over {self.n}")
    hot = self.onehot
    lead = hot.shape[:-1]
    rows = ctx.reshape(hot, (hot.shape[0], math.prod(lead[1:]), self.n))
    zeros = ctx.constant(torch.zeros(rows.shape[0], rows.shape[1], n - self.n), float_=True)
    return ctx.reshape(ctx.emit("concat", {"tensors": [rows, zeros]}, {"axis": 2}), lead + (n,))
