"""Element-wise binary operators in both semantics modes: add, subtract, multiply (with
broadcasting), max, min (FlexFlow's tie rule), the same tensor on both sides, implicit
casts and inplace_a (element_binary.cc, kernels/element_binary_kernels.cu)."""

import numpy as np
import pytest
import torch

from flexflow_torch.runtime import DataType
from .rt_helpers import BATCH, align, compile_mse, grad, mse_grad, randn, step, value

SHAPE = (BATCH, 3, 5)


def reduce_to(g, shape):
    """Sum g over the axes an operand of `shape` was broadcast along (cudnnReduceTensor
    ADD into the operand's gradient, element_binary_kernels.cu backward_kernel:424-558)."""
    axes = tuple(i for i, (a, b) in enumerate(zip(shape, g.shape)) if a == 1 and b != 1)
    return g.sum(axes, keepdim=True) if axes else g


# name: (forward, FlexFlow's gradients (g, a, b) -> [da, db], wrapper)
BINARY = {
    "add": (torch.add, lambda g, a, b: [reduce_to(g, a.shape), reduce_to(g, b.shape)], "Add"),
    "subtract": (torch.sub, lambda g, a, b: [reduce_to(g, a.shape), reduce_to(-g, b.shape)],
                 "Subtract"),
    "multiply": (torch.mul, lambda g, a, b: [reduce_to(g * b, a.shape), reduce_to(g * a, b.shape)],
                 "Multiply"),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shape_a,shape_b", [
    ((BATCH, 5, 6), (BATCH, 5, 6)),
    ((BATCH, 5, 1), (BATCH, 1, 6)),
    ((BATCH, 5, 6), (BATCH, 1, 6)),
    ((BATCH, 1, 6), (BATCH, 5, 6)),
], ids=["equal", "outer", "b_broadcast", "a_broadcast"])
def test_add_subtract_multiply(ffmodel, mode, rng, name, shape_a, shape_b):
    forward, ff_vjp, wrapper = BINARY[name]
    a, b = randn(rng, *shape_a), randn(rng, *shape_b)
    res = align(ffmodel, [a, b], lambda m, x, y: getattr(m, name)(x, y), forward,
                vjp=None if mode == "exact" else ff_vjp, layers=[wrapper])
    assert tuple(res.out.shape) == tuple(torch.broadcast_shapes(shape_a, shape_b))


def _with_ties(rng):
    a, b = randn(rng, *SHAPE), randn(rng, *SHAPE)
    b[:, 0, :] = a[:, 0, :]                       # one tie per (sample, column)
    return a, b


@pytest.mark.parametrize("method", ["max", "min"])
def test_max_min_ties(ffmodel, mode, rng, method):
    """FlexFlow: in1_grad += g where in1 >= in2 (<= for min), in2_grad += g where
    in2 >= in1: at a tie BOTH get the full gradient (elewise_binary_backward_kernel:286-302).
    PyTorch splits it in halves."""
    a, b = _with_ties(rng)
    fwd = torch.maximum if method == "max" else torch.minimum
    cmp = (lambda u, v: u >= v) if method == "max" else (lambda u, v: u <= v)
    res = align(ffmodel, [a, b], lambda m, x, y: getattr(m, method)(x, y), fwd,
                vjp=None if mode == "exact" else lambda g, x, y: [g * cmp(x, y), g * cmp(y, x)],
                layers=[method.capitalize()])
    tie_grad = res.grads[0][:, 0, :]
    half = res.ref_out_grad[:, 0, :] / (2 if mode == "exact" else 1)
    torch.testing.assert_close(tie_grad, half)


# the same tensor on both sides: one gradient buffer receives both contributions
SAME = {
    "add": (lambda t: t + t, lambda g, t: 2 * g, lambda g, t: 2 * g),
    "subtract": (lambda t: t - t, lambda g, t: 0 * g, lambda g, t: 0 * g),
    "multiply": (lambda t: t * t, lambda g, t: 2 * t * g, lambda g, t: 2 * t * g),
    "max": (lambda t: torch.maximum(t, t), lambda g, t: 2 * g, lambda g, t: g),
    "min": (lambda t: torch.minimum(t, t), lambda g, t: 2 * g, lambda g, t: g),
}


@pytest.mark.parametrize("method", sorted(SAME))
def test_same_operand_twice(ffmodel, mode, rng, method):
    forward, ff_grad, exact_grad = SAME[method]
    x = randn(rng, *SHAPE)
    align(ffmodel, [x], lambda m, t: getattr(m, method)(t, t), forward,
          vjp=lambda g, t: [(ff_grad if mode == "flexflow" else exact_grad)(g, t)])


def test_add_promotes_int64_to_float(ffmodel, mode, rng):
    """Operands of different dtypes are cast to the larger DataType (INT64 < FLOAT)."""
    a = rng.integers(-5, 6, size=SHAPE).astype(np.int64)
    b = randn(rng, *SHAPE)
    res = align(ffmodel, [a, b], lambda m, x, y: m.add(x, y), lambda x, y: x.float() + y,
                vjp=lambda g, x, y: [g], layers=["Add"])
    assert res.out.dtype == torch.float32
    assert ffmodel.get_last_layer().get_output_tensor().data_type == DataType.DT_FLOAT


def test_multiply_int32_times_float(ffmodel, mode, rng):
    a = rng.integers(-5, 6, size=SHAPE).astype(np.int32)
    b = randn(rng, *SHAPE)
    align(ffmodel, [b, a], lambda m, y, x: m.multiply(y, x), lambda y, x: y * x.float(),
          vjp=lambda g, y, x: [g * x.float()], layers=["Multiply"])


def test_add_inplace_a(ffmodel, mode, rng):
    """inplace_a=True: input 0 and the output share one gradient buffer, and FlexFlow's
    add backward (cudnnAddTensor with beta 1) then gives both inputs 2g."""
    a_np, b_np = randn(rng, *SHAPE), randn(rng, *SHAPE)
    a, b = (ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT) for _ in range(2))
    ta, tb = ffmodel.identity(a), ffmodel.identity(b)
    out = ffmodel.add(ta, tb, inplace_a=True)
    compile_mse(ffmodel)
    label = randn(rng, *SHAPE)
    step(ffmodel, [(a, a_np), (b, b_np)], label)
    y = torch.from_numpy(a_np + b_np)
    g = mse_grad(y, torch.from_numpy(label))
    torch.testing.assert_close(value(out, ffmodel), y)
    torch.testing.assert_close(value(ta, ffmodel), y)             # x's storage holds the sum
    np.testing.assert_array_equal(a.get_tensor(ffmodel), a_np)    # the graph input does not
    factor = 2 if mode == "flexflow" else 1
    torch.testing.assert_close(grad(ta, ffmodel), factor * g)
    torch.testing.assert_close(grad(tb, ffmodel), factor * g)
