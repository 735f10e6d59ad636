"""Element-wise unary operators, scalar operators and dropout, in both semantics modes.

flexflow mode is checked against FlexFlow's kernel formulas (element_unary.cu
elewise_unary_forward_kernel / elewise_unary_backward_kernel, cuDNN activations,
dropout_kernels.cu), exact mode against PyTorch autograd. Multi-consumer effects of
the overwriting backwards are in test_ops_consumers.py."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flexflow_torch.runtime import AggrMode, DataType, FFConfig, FFModel
from .rt_helpers import (BATCH, align, compile_mse, grad, layer_types, mse_grad, randn,
                         set_params, step, value)

SHAPE = (BATCH, 3, 5)
SQRT1_2 = 1.0 / math.sqrt(2.0)


def _phi(x):
    return torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _positive(a):
    return (np.abs(a) + 0.5).astype(np.float32)


# name: (build, wrapper, forward, FlexFlow's input gradient (g, x), input transform,
#        exact-mode forward if it differs)
UNARY = {
    "exp": (lambda m, t: m.exp(t), "Exp", torch.exp, lambda g, x: g * torch.exp(x), None, None),
    "sin": (lambda m, t: m.sin(t), "Sin", torch.sin, lambda g, x: g * torch.cos(x), None, None),
    "cos": (lambda m, t: m.cos(t), "Cos", torch.cos, lambda g, x: -g * torch.sin(x), None, None),
    "identity": (lambda m, t: m.identity(t), "Identity", lambda x: x * 1, lambda g, x: g, None, None),
    "rsqrt": (lambda m, t: m.rsqrt(t), "Rsqrt", torch.rsqrt,
              lambda g, x: -0.5 * g * torch.rsqrt(x) ** 3, _positive, None),
    "gelu": (lambda m, t: m.gelu(t), "Gelu", lambda x: x * 0.5 * torch.erfc(-x * SQRT1_2),
             lambda g, x: g * (0.5 * torch.erfc(-x * SQRT1_2) + x * _phi(x)), None, None),
    "relu": (lambda m, t: m.relu(t), "Relu", torch.relu, lambda g, x: g * (x > 0), None, None),
    "sigmoid": (lambda m, t: m.sigmoid(t), "Sigmoid", torch.sigmoid,
                lambda g, x: g * torch.sigmoid(x) * (1 - torch.sigmoid(x)), None, None),
    "tanh": (lambda m, t: m.tanh(t), "Tanh", torch.tanh,
             lambda g, x: g * (1 - torch.tanh(x) ** 2), None, None),
    # cuDNN gets FlexFlow's ELU coefficient 0.0 as alpha: ReLU (element_unary.cu:46-47)
    "elu": (lambda m, t: m.elu(t), "Elu", torch.relu, lambda g, x: g * (x > 0), None, F.elu),
    "pow3": (lambda m, t: m.pow(t, 3.0), "Pow", lambda x: torch.pow(x, 3.0),
             lambda g, x: g * 3.0 * torch.pow(x, 2.0), None, None),
    "pow_frac": (lambda m, t: m.pow(t, -0.5), "Pow", lambda x: torch.pow(x, -0.5),
                 lambda g, x: g * -0.5 * torch.pow(x, -1.5), _positive, None),
    "scalar_multiply": (lambda m, t: m.scalar_multiply(t, 2.5, inplace=False), "ScalarMultiply",
                        lambda x: x * 2.5, lambda g, x: g * 2.5, None, None),
    "scalar_add": (lambda m, t: m.scalar_add(t, 1.5, inplace=False), "ScalarAdd",
                   lambda x: x + 1.5, lambda g, x: g, None, None),
    "scalar_sub": (lambda m, t: m.scalar_sub(t, 0.75, inplace=False), "ScalarSub",
                   lambda x: x - 0.75, lambda g, x: g, None, None),
    "scalar_true_divide": (lambda m, t: m.scalar_true_divide(t, 4.0, inplace=False), "ScalarTrueDiv",
                           lambda x: x / 4.0, lambda g, x: g / 4.0, None, None),
    "dropout_rate0": (lambda m, t: m.dropout(t, 0.0, 7), "Dropout", lambda x: x * 1,
                      lambda g, x: g, None, None),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(ffmodel, mode, rng, name):
    build, wrapper, forward, ff_vjp, transform, exact_forward = UNARY[name]
    x = randn(rng, *SHAPE)
    if transform is not None:
        x = transform(x)
    if mode == "exact":
        align(ffmodel, [x], build, exact_forward or forward, layers=[wrapper])
    else:
        align(ffmodel, [x], build, forward, vjp=lambda g, t: [ff_vjp(g, t)], layers=[wrapper])


def test_elu_is_relu_only_in_flexflow_mode(ffmodel, mode, rng):
    x = randn(rng, *SHAPE)
    res = align(ffmodel, [x], UNARY["elu"][0], torch.relu if mode == "flexflow" else F.elu)
    assert (res.out.min() >= 0) == (mode == "flexflow")


# -- in place: the output reuses the input's storage and gradient buffer ----------------
# FlexFlow's gradient in place (g: gradient arriving at the output, x: input, y: output):
#   accumulating ops  input_grad[i] += f(g)  with input_grad == output_grad: g + f(g)
#   overwriting ops   input_grad[i]  = f(g), evaluated on the output's pointer (y)
SCALAR_INPLACE = {
    "scalar_multiply": (3.0, lambda x, s: x * s, lambda g, s: g + g * s, lambda g, s: g * s),
    "scalar_add": (2.0, lambda x, s: x + s, lambda g, s: 2 * g, lambda g, s: g),
    "scalar_sub": (1.0, lambda x, s: x - s, lambda g, s: 2 * g, lambda g, s: g),
    "scalar_true_divide": (2.0, lambda x, s: x / s, lambda g, s: g + g / s, lambda g, s: g / s),
}


@pytest.mark.parametrize("method", sorted(SCALAR_INPLACE))
def test_scalar_inplace_default(ffmodel, mode, rng, method):
    """Python's default inplace=True: FlexFlow gives g*(1+s) (multiply), 2g (add, sub),
    g*(1+1/s) (divide); the output and its input share the buffer, so both read it."""
    s, fwd, ff_grad, exact_grad = SCALAR_INPLACE[method]
    x_np = randn(rng, *SHAPE)
    x = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    t = ffmodel.identity(x)
    out = getattr(ffmodel, method)(t, s)                 # inplace defaults to True
    compile_mse(ffmodel)
    label = randn(rng, *SHAPE)
    step(ffmodel, [(x, x_np)], label)
    y = fwd(torch.from_numpy(x_np), s)
    g = mse_grad(y, torch.from_numpy(label))
    torch.testing.assert_close(value(out, ffmodel), y)
    torch.testing.assert_close(value(t, ffmodel), y)     # t's storage now holds the output
    if mode == "flexflow":
        torch.testing.assert_close(grad(t, ffmodel), ff_grad(g, s))
        torch.testing.assert_close(grad(out, ffmodel), ff_grad(g, s))
    else:
        torch.testing.assert_close(grad(t, ffmodel), exact_grad(g, s))
        torch.testing.assert_close(grad(out, ffmodel), g)


def test_scalar_not_inplace_keeps_input(ffmodel, mode, rng):
    x_np = randn(rng, *SHAPE)
    x = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    t = ffmodel.identity(x)
    ffmodel.scalar_multiply(t, 3.0, inplace=False)
    compile_mse(ffmodel)
    step(ffmodel, [(x, x_np)], randn(rng, *SHAPE))
    np.testing.assert_array_equal(t.get_tensor(ffmodel), x_np)


def test_inplace_on_graph_input_leaves_input_intact(ffmodel, mode, rng):
    """In place on a graph input writes into the input's Repartition copy: the input
    keeps its values and a second forward computes the same output."""
    x_np = randn(rng, *SHAPE)
    x = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    out = ffmodel.scalar_multiply(x, 3.0)
    compile_mse(ffmodel)
    label = randn(rng, *SHAPE)
    step(ffmodel, [(x, x_np)], label)
    y = torch.from_numpy(x_np) * 3.0
    g = mse_grad(y, torch.from_numpy(label))
    # FlexFlow never writes a graph input's gradient; the output shares the Repartition
    # copy's buffer, which the in-place backward turns into g + 3g
    torch.testing.assert_close(grad(x, ffmodel), torch.zeros(SHAPE) if mode == "flexflow" else 3 * g)
    torch.testing.assert_close(grad(out, ffmodel), 4 * g if mode == "flexflow" else g)
    ffmodel.forward()
    np.testing.assert_array_equal(x.get_tensor(ffmodel), x_np)
    torch.testing.assert_close(value(out, ffmodel), y)


# relu, rsqrt and pow pass their `name` into the C++ inplace flag (flexflow_c.cc:403,414,1095)
NAMED = {
    "relu": (lambda m, t: m.relu(t, name="r"), torch.relu,
             lambda g, x, y: g + g * (y > 0), lambda g, x, y: g * (x > 0)),
    "rsqrt": (lambda m, t: m.rsqrt(t, name="r"), torch.rsqrt,
              lambda g, x, y: -0.5 * g * y ** 3, lambda g, x, y: -0.5 * g * y ** 3),
    "pow": (lambda m, t: m.pow(t, 3.0, name="r"), lambda x: torch.pow(x, 3.0),
            lambda g, x, y: g * 3.0 * torch.pow(y, 2.0), lambda g, x, y: g * 3.0 * x * x),
}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_ops_run_in_place(ffmodel, mode, rng, name):
    build, fwd, ff_grad, exact_grad = NAMED[name]
    x_np = _positive(randn(rng, *SHAPE)) if name == "rsqrt" else randn(rng, *SHAPE)
    x = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    t = ffmodel.identity(x)
    out = build(ffmodel, t)
    compile_mse(ffmodel)
    label = randn(rng, *SHAPE)
    step(ffmodel, [(x, x_np)], label)
    xt = torch.from_numpy(x_np)
    y = fwd(xt)
    g = mse_grad(y, torch.from_numpy(label))
    torch.testing.assert_close(value(out, ffmodel), y)
    torch.testing.assert_close(value(t, ffmodel), y)
    expect = (ff_grad if mode == "flexflow" else exact_grad)(g, xt, y)
    torch.testing.assert_close(grad(t, ffmodel), expect)


@pytest.mark.parametrize("name", ["gelu", "sigmoid"])
def test_other_unary_ops_never_in_place(ffmodel, rng, name):
    """gelu ignores inplace=True; sigmoid has no such flag: the input keeps its values."""
    x_np = randn(rng, *SHAPE)
    x = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    t = ffmodel.identity(x)
    getattr(ffmodel, name)(t, name="n")
    compile_mse(ffmodel)
    step(ffmodel, [(x, x_np)], randn(rng, *SHAPE))
    np.testing.assert_array_equal(t.get_tensor(ffmodel), x_np)


@pytest.mark.parametrize("method,scalar,ref", [
    ("scalar_multiply", 2.5, lambda i: i * 2),           # (int)2.5 == 2
    ("scalar_add", 2.0, lambda i: i + 2),
    ("scalar_sub", 1.0, lambda i: i - 1),
    ("scalar_true_divide", 2.0, lambda i: i // 2),      # C integer division
])
def test_scalar_ops_on_integer_ids(ffmodel, mode, rng, method, scalar, ref):
    """Integer tensors compute in their own type with the scalar cast to it
    (element_unary.cu forward_kernel:136): position ids feed an embedding."""
    ids_np = rng.integers(1, 5, (BATCH, 3)).astype(np.int32)
    ids = ffmodel.create_tensor((BATCH, 3), DataType.DT_INT32)
    shifted = getattr(ffmodel, method)(ids, scalar, inplace=False)
    assert shifted.data_type == DataType.DT_INT32
    out = ffmodel.embedding(shifted, 12, 4, AggrMode.AGGR_MODE_NONE, name="emb")
    compile_mse(ffmodel)
    table = torch.from_numpy(randn(rng, 12, 4))
    set_params(ffmodel, [("emb", 0, table)])
    step(ffmodel, [(ids, ids_np)], randn(rng, BATCH, 3, 4))
    torch.testing.assert_close(value(out, ffmodel), table[torch.from_numpy(ref(ids_np)).long()])


# -- dropout ---------------------------------------------------------------------------
def _dropout_step(argv, rng, seed=11, batch=8, features=256):
    argv("-b", batch)
    ffmodel = FFModel(FFConfig())
    x = ffmodel.create_tensor((batch, features), DataType.DT_FLOAT)
    t = ffmodel.identity(x)
    out = ffmodel.dropout(t, 0.5, seed)
    compile_mse(ffmodel)
    x_np = (np.abs(randn(rng, batch, features)) + 0.1).astype(np.float32)    # no zeros
    label = randn(rng, batch, features)
    step(ffmodel, [(x, x_np)], label)
    return ffmodel, x, t, out, x_np, label


def test_dropout_half_rate_drops_scales_and_masks_gradient(argv, mode, rng):
    ffmodel, x, t, out, x_np, label = _dropout_step(argv, rng)
    assert layer_types(ffmodel) == ["Identity", "Dropout"]
    y = value(out, ffmodel)
    kept = y != 0
    # 2048 Bernoulli(0.5) draws: the kept fraction lies in [0.4, 0.6] with overwhelming odds
    assert 0.4 < kept.float().mean() < 0.6
    torch.testing.assert_close(y, torch.from_numpy(x_np) * kept * 2.0)
    g = mse_grad(y, torch.from_numpy(label))
    torch.testing.assert_close(grad(out, ffmodel), g)
    torch.testing.assert_close(grad(t, ffmodel), g * kept * 2.0)     # dx = dy * mask / (1 - p)


def test_dropout_active_during_eval(argv, rng):
    """FlexFlow has no train/eval switch: eval() still drops."""
    ffmodel, x, t, out, x_np, label = _dropout_step(argv, rng)
    xl = ffmodel.create_data_loader(x, x_np)
    yl = ffmodel.create_data_loader(ffmodel.label_tensor, label)
    ffmodel.eval(x=xl, y=yl)
    y = value(out, ffmodel)
    kept = y != 0
    assert 0.4 < kept.float().mean() < 0.6
    torch.testing.assert_close(y, torch.from_numpy(x_np) * kept * 2.0)


def test_dropout_seeded_masks(argv, rng):
    """A fixed seed gives the same mask sequence in a new model; each forward draws anew."""
    masks = []
    for _ in range(2):
        ffmodel, _, _, out, _, _ = _dropout_step(argv, rng, seed=5)
        first = out.get_tensor(ffmodel) == 0
        ffmodel.forward()
        masks.append((first, out.get_tensor(ffmodel) == 0))
    np.testing.assert_array_equal(masks[0][0], masks[1][0])
    np.testing.assert_array_equal(masks[0][1], masks[1][1])
    assert not np.array_equal(masks[0][0], masks[0][1])
