"""Data movement in both semantics modes: concat, split, reshape, gather, reduce_sum
(kernels that copy or accumulate exactly) and transpose, whose FlexFlow kernel adds into
its output buffer and doubles its input gradient (transpose_kernels.cu:78,107,140)."""

import numpy as np
import pytest
import torch

from flexflow_torch.runtime import DataType
from .rt_helpers import BATCH, align, compile_mse, randn, step, value


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_concat(ffmodel, mode, rng, axis):
    shapes = []
    for extra in (1, 2, 3):
        s = [BATCH, 3, 4]
        if axis != 0:
            s[axis] = extra
        shapes.append(tuple(s))
    arrays = [randn(rng, *s) for s in shapes]
    sizes = [s[axis] for s in shapes]
    # FlexFlow: each input's gradient += its slice of the output gradient (add_with_stride)
    align(ffmodel, arrays, lambda m, *ts: m.concat(list(ts), axis), lambda *ts: torch.cat(ts, axis),
          vjp=None if mode == "exact" else lambda g, *ts: list(torch.split(g, sizes, axis)),
          layers=["Concat"])


@pytest.mark.parametrize("sizes,axis", [(2, 1), ([1, 2, 3], 2), ([3, 1], 1)],
                         ids=["int", "list_last", "list_mid"])
def test_split(ffmodel, mode, rng, sizes, axis):
    """The pieces are concatenated in reverse, so the gradient shows where each went."""
    shape = (BATCH, 4, 6)
    x = randn(rng, *shape)
    t_sizes = [shape[axis] // sizes] * sizes if isinstance(sizes, int) else sizes
    pieces = []

    def build(m, t):
        pieces.extend(m.split(t, sizes, axis))
        return m.concat(pieces[::-1], axis)

    def ff_vjp(g, t):
        back = torch.split(g, t_sizes[::-1], axis)
        return [torch.cat(back[::-1], axis)]
    align(ffmodel, [x], build, lambda t: torch.cat(torch.split(t, t_sizes, axis)[::-1], axis),
          vjp=None if mode == "exact" else ff_vjp, layers=["Split", "Concat"])
    assert [p.dims[axis] for p in pieces] == t_sizes
    for p, want in zip(pieces, torch.split(torch.from_numpy(x), t_sizes, axis)):
        torch.testing.assert_close(value(p, ffmodel), want)


def test_split_piece_without_consumer(ffmodel, mode, rng):
    """Only one piece feeds the rest of the model: the other one's gradient stays 0."""
    x = randn(rng, BATCH, 6)
    align(ffmodel, [x], lambda m, t: m.scalar_multiply(m.split(t, [2, 4], 1)[1], 3.0, inplace=False),
          lambda t: t[:, 2:] * 3.0,
          vjp=lambda g, t: [torch.cat([torch.zeros(BATCH, 2), 3.0 * g], 1)])


@pytest.mark.parametrize("in_shape,out_shape", [
    ((BATCH, 6), (BATCH, 2, 3)), ((BATCH, 2, 3, 2), (BATCH, 12)), ((BATCH, 3, 4), (2, 6, 4))])
def test_reshape(ffmodel, mode, rng, in_shape, out_shape):
    x = randn(rng, *in_shape)
    align(ffmodel, [x], lambda m, t: m.reshape(t, out_shape), lambda t: t.reshape(out_shape),
          vjp=lambda g, t: [g.reshape(in_shape)], layers=["Reshape"])


@pytest.mark.parametrize("dim", [0, 1, 2])
@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64], ids=["int32", "int64"])
def test_gather(ffmodel, mode, rng, dim, idx_dtype):
    shape = (BATCH, 3, 5)
    idx_shape = list(shape)
    idx_shape[dim] = 2 if dim else BATCH
    x = randn(rng, *shape)
    idx = rng.integers(0, shape[dim], size=idx_shape).astype(idx_dtype)

    def ff_vjp(g, t, i):          # atomicAdd(&input_grad[index...], output_grad[o])
        return [torch.zeros_like(t).scatter_add(dim, i.long(), g)]
    align(ffmodel, [x, idx], lambda m, t, i: m.gather(t, i, dim), lambda t, i: torch.gather(t, dim, i.long()),
          vjp=None if mode == "exact" else ff_vjp, layers=["Gather"])


@pytest.mark.parametrize("axes", [(1,), (2,), (1, 2)])
@pytest.mark.parametrize("keepdims", [False, True], ids=["drop", "keep"])
def test_reduce_sum(ffmodel, mode, rng, axes, keepdims):
    shape = (BATCH, 3, 5)
    x = randn(rng, *shape)
    kept = tuple(1 if i in axes else s for i, s in enumerate(shape))
    res = align(ffmodel, [x], lambda m, t: m.reduce_sum(t, axes, keepdims),
                lambda t: t.sum(dim=axes, keepdim=keepdims),
                vjp=lambda g, t: [g.reshape(kept).expand(shape)], layers=["ReduceSum"])
    assert tuple(res.out.shape) == (kept if keepdims else tuple(s for i, s in enumerate(shape)
                                                                  if i not in axes))


# -- transpose ---------------------------------------------------------------------------
@pytest.mark.parametrize("perm", [(0, 2, 1), (2, 0, 1), (1, 2, 0)])
def test_transpose_single_pass(ffmodel, mode, rng, perm):
    shape = (BATCH, 3, 5)
    x = randn(rng, *shape)
    inverse = [perm.index(i) for i in range(3)]
    res = align(ffmodel, [x], lambda m, t: m.transpose(t, perm), lambda t: t.permute(perm),
                vjp=lambda g, t: [g.permute(inverse)], layers=["Transpose"])
    assert tuple(res.out.shape) == tuple(shape[p] for p in perm)


def test_transpose_output_is_sum_of_all_forwards(ffmodel, mode, rng):
    """FlexFlow: out[o] += out[o] * 0 + in[i] into a buffer nothing zeroes, so the output
    holds the sum of every forward pass so far (transpose_kernels.cu:78)."""
    shape = (BATCH, 3, 5)
    x = ffmodel.create_tensor(shape, DataType.DT_FLOAT)
    out = ffmodel.transpose(ffmodel.identity(x), (0, 2, 1))
    compile_mse(ffmodel)
    first, second = randn(rng, *shape), randn(rng, *shape)
    label = randn(rng, BATCH, 5, 3)
    step(ffmodel, [(x, first)], label)
    x.set_tensor(ffmodel, second)
    ffmodel.forward()
    ffmodel.forward()
    t1, t2 = (torch.from_numpy(a).permute(0, 2, 1) for a in (first, second))
    torch.testing.assert_close(value(out, ffmodel), t1 + 2 * t2 if mode == "flexflow" else t2)


def test_transpose_backward_doubles_gradient_already_there(ffmodel, mode, rng):
    """t feeds transpose (first in layer order) and scalar_multiply: the scalar op's
    backward runs first and adds 3g; transpose's then computes 2 * old + T(g)
    (transpose_kernels.cu:133-140)."""
    x = randn(rng, BATCH, 4, 4)

    def build(m, t):
        return m.add(m.transpose(t, (0, 2, 1)), m.scalar_multiply(t, 3.0, inplace=False))

    def vjp(g, t):
        factor = 2.0 if mode == "flexflow" else 1.0
        return [g.transpose(1, 2) + factor * 3.0 * g]
    align(ffmodel, [x], build, lambda t: t.transpose(1, 2) + 3.0 * t, vjp=vjp,
          layers=["Transpose", "ScalarMultiply", "Add"])


def test_transpose_last_consumer_no_doubling(ffmodel, mode, rng):
    """With transpose after the other consumer, its backward runs first on a zero
    buffer: no doubling, in either mode."""
    x = randn(rng, BATCH, 4, 4)

    def build(m, t):
        s = m.scalar_multiply(t, 3.0, inplace=False)
        return m.add(m.transpose(t, (0, 2, 1)), s)
    align(ffmodel, [x], build, lambda t: t.transpose(1, 2) + 3.0 * t,
          vjp=lambda g, t: [g.transpose(1, 2) + 3.0 * g])


def test_transpose_gradient_reaches_weights(ffmodel, mode, rng):
    """A transpose between two dense layers: the first layer's weight gradient."""
    x = randn(rng, BATCH, 3, 5)
    w1 = torch.nn.Parameter(torch.from_numpy(randn(rng, 4, 5)))
    w2 = torch.nn.Parameter(torch.from_numpy(randn(rng, 2, 3)))

    def build(m, t):
        h = m.dense(t, 4, use_bias=False, name="fc1")
        return m.dense(m.transpose(h, (0, 2, 1)), 2, use_bias=False, name="fc2")
    align(ffmodel, [x], build, lambda t: (t @ w1.T).transpose(1, 2) @ w2.T,
          params=[("fc1", 0, w1), ("fc2", 0, w2)])

