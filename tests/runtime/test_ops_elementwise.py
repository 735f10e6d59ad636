"""Element-wise operators: forward and gradients against PyTorch (align-test style)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flexflow_torch.runtime import DataType, FFConfig, FFModel, ParameterSyncType
from .rt_helpers import BATCH, align, compile_mse, feed, layer_types, randn

SHAPE = (BATCH, 3, 5)

UNARY = {
    # name: (build(ffmodel, x), torch fn, wrapper class, input transform)
    "exp": (lambda m, x: m.exp(x), torch.exp, "Exp", None),
    "sin": (lambda m, x: m.sin(x), torch.sin, "Sin", None),
    "cos": (lambda m, x: m.cos(x), torch.cos, "Cos", None),
    "rsqrt": (lambda m, x: m.rsqrt(x), torch.rsqrt, "Rsqrt", lambda a: np.abs(a) + 0.5),
    "pow": (lambda m, x: m.pow(x, 3.0), lambda t: torch.pow(t, 3.0), "Pow", None),
    "pow_frac": (lambda m, x: m.pow(x, -0.5), lambda t: torch.pow(t, -0.5), "Pow",
                 lambda a: np.abs(a) + 0.5),
    "gelu": (lambda m, x: m.gelu(x), lambda t: F.gelu(t, approximate="none"), "Gelu", None),
    "relu": (lambda m, x: m.relu(x), torch.relu, "Relu", None),
    "identity": (lambda m, x: m.identity(x), lambda t: t * 1, "Identity", None),
    "sigmoid": (lambda m, x: m.sigmoid(x), torch.sigmoid, "Sigmoid", None),
    "tanh": (lambda m, x: m.tanh(x), torch.tanh, "Tanh", None),
    # FlexFlow hands cuDNN an ELU coefficient of 0.0 (as read): it behaves like ReLU.
    "elu": (lambda m, x: m.elu(x), torch.relu, "Elu", None),
    "scalar_multiply": (lambda m, x: m.scalar_multiply(x, 2.5, inplace=False),
                        lambda t: t * 2.5, "ScalarMultiply", None),
    "scalar_add": (lambda m, x: m.scalar_add(x, 1.5, inplace=False),
                   lambda t: t + 1.5, "ScalarAdd", None),
    "scalar_sub": (lambda m, x: m.scalar_sub(x, 0.75, inplace=False),
                   lambda t: t - 0.75, "ScalarSub", None),
    "scalar_true_divide": (lambda m, x: m.scalar_true_divide(x, 4.0, inplace=False),
                           lambda t: t / 4.0, "ScalarTrueDiv", None),
    "dropout_rate0": (lambda m, x: m.dropout(x, 0.0, 7), lambda t: t * 1, "Dropout", None),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_forward_and_gradient(ffmodel, rng, name):
    build, torch_fn, wrapper, transform = UNARY[name]
    x_np = randn(rng, *SHAPE)
    if transform is not None:
        x_np = transform(x_np).astype(np.float32)
    x = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    out = build(ffmodel, x)
    assert out.dims == SHAPE and out.data_type == DataType.DT_FLOAT
    align(ffmodel, [(x, x_np)], out, torch_fn, [wrapper])


@pytest.mark.parametrize("method,scalar,torch_fn", [
    ("scalar_multiply", 3.0, lambda t: t * 3.0),
    ("scalar_add", 2.0, lambda t: t + 2.0),
    ("scalar_sub", 1.0, lambda t: t - 1.0),
    ("scalar_true_divide", 2.0, lambda t: t / 2.0),
])
def test_scalar_inplace_overwrites_input(ffmodel, rng, method, scalar, torch_fn):
    """inplace=True (FlexFlow's default) makes the output share the input's storage,
    so the input tensor's values are overwritten by the op's output."""
    x_np = randn(rng, *SHAPE)
    x = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    out = getattr(ffmodel, method)(x, scalar, inplace=True)
    compile_mse(ffmodel)
    x.set_tensor(ffmodel, x_np)
    ffmodel.label_tensor.set_tensor(ffmodel, randn(rng, *SHAPE))
    ffmodel.init_layers()
    ffmodel.forward()
    expected = torch_fn(torch.from_numpy(x_np))
    torch.testing.assert_close(torch.from_numpy(out.get_tensor(ffmodel)), expected)
    torch.testing.assert_close(torch.from_numpy(x.get_tensor(ffmodel)), expected)


def test_scalar_not_inplace_keeps_input(ffmodel, rng):
    x_np = randn(rng, *SHAPE)
    x = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    ffmodel.scalar_multiply(x, 3.0, inplace=False)
    compile_mse(ffmodel)
    x.set_tensor(ffmodel, x_np)
    ffmodel.label_tensor.set_tensor(ffmodel, randn(rng, *SHAPE))
    ffmodel.init_layers()
    ffmodel.forward()
    np.testing.assert_array_equal(x.get_tensor(ffmodel), x_np)


def _dropout_model(argv, rng, rate, batch=8, features=256):
    argv("-b", batch)
    ffmodel = FFModel(FFConfig())
    x = ffmodel.create_tensor((batch, features), DataType.DT_FLOAT)
    out = ffmodel.dropout(x, rate, 11)
    compile_mse(ffmodel)
    x_np = (np.abs(randn(rng, batch, features)) + 0.1).astype(np.float32)   # no zeros
    return ffmodel, x, out, x_np


def test_dropout_half_rate_drops_and_scales(argv, rng):
    ffmodel, x, out, x_np = _dropout_model(argv, rng, 0.5)
    assert layer_types(ffmodel) == ["Dropout"]
    x.set_tensor(ffmodel, x_np)
    label = randn(rng, *x_np.shape)
    ffmodel.label_tensor.set_tensor(ffmodel, label)
    ffmodel.init_layers()
    ffmodel.forward()
    ffmodel.zero_gradients()
    ffmodel.backward()
    y = out.get_tensor(ffmodel)
    dropped = y == 0
    # 2048 Bernoulli(0.5) draws: the fraction lies in [0.4, 0.6] with overwhelming odds.
    assert 0.4 < dropped.mean() < 0.6
    torch.testing.assert_close(torch.from_numpy(y[~dropped]), torch.from_numpy(2.0 * x_np[~dropped]))
    # Gradient: the same mask, scaled by 1/(1-rate), applied to the loss gradient.
    loss_grad = 2.0 * (y - label) / y.size
    expected = np.where(dropped, 0.0, 2.0 * loss_grad).astype(np.float32)
    torch.testing.assert_close(
        torch.from_numpy(x.get_gradients(ffmodel, ParameterSyncType.PS)), torch.from_numpy(expected))


def test_dropout_active_during_eval(argv, rng):
    """FlexFlow has no train/eval switch: eval() still drops."""
    ffmodel, x, out, x_np = _dropout_model(argv, rng, 0.5)
    x_loader = ffmodel.create_data_loader(x, x_np)
    y_loader = ffmodel.create_data_loader(ffmodel.label_tensor, randn(rng, *x_np.shape))
    ffmodel.init_layers()
    ffmodel.eval(x=x_loader, y=y_loader)
    y = out.get_tensor(ffmodel)
    dropped = y == 0
    assert 0.4 < dropped.mean() < 0.6
    torch.testing.assert_close(torch.from_numpy(y[~dropped]), torch.from_numpy(2.0 * x_np[~dropped]))


# -- binary ---------------------------------------------------------------------------
BINARY = {
    "add": (lambda m, a, b: m.add(a, b), torch.add, "Add"),
    "subtract": (lambda m, a, b: m.subtract(a, b), torch.sub, "Subtract"),
    "multiply": (lambda m, a, b: m.multiply(a, b), torch.mul, "Multiply"),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shape_a,shape_b", [
    ((BATCH, 5, 6), (BATCH, 5, 6)),
    ((BATCH, 5, 1), (BATCH, 1, 6)),
    ((BATCH, 5, 6), (BATCH, 1, 6)),
    ((BATCH, 1, 6), (BATCH, 5, 6)),
], ids=["equal", "outer", "b_broadcast", "a_broadcast"])
def test_binary_broadcasting(ffmodel, rng, name, shape_a, shape_b):
    build, torch_fn, wrapper = BINARY[name]
    a_np, b_np = randn(rng, *shape_a), randn(rng, *shape_b)
    a = ffmodel.create_tensor(shape_a, DataType.DT_FLOAT)
    b = ffmodel.create_tensor(shape_b, DataType.DT_FLOAT)
    out = build(ffmodel, a, b)
    assert out.dims == tuple(torch.broadcast_shapes(shape_a, shape_b))
    align(ffmodel, [(a, a_np), (b, b_np)], out, torch_fn, [wrapper])


@pytest.mark.parametrize("method,torch_fn,wrapper", [
    ("max", torch.maximum, "Max"), ("min", torch.minimum, "Min")])
def test_max_min_equal_shapes(ffmodel, rng, method, torch_fn, wrapper):
    a_np, b_np = randn(rng, *SHAPE), randn(rng, *SHAPE)
    a = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    b = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    out = getattr(ffmodel, method)(a, b)
    align(ffmodel, [(a, a_np), (b, b_np)], out, torch_fn, [wrapper])


def test_add_promotes_int64_to_float(ffmodel, rng):
    """Operands of different dtypes are cast to the larger DataType (INT64 < FLOAT)."""
    a_np = rng.integers(-5, 6, size=SHAPE).astype(np.int64)
    b_np = randn(rng, *SHAPE)
    a = ffmodel.create_tensor(SHAPE, DataType.DT_INT64)
    b = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    out = ffmodel.add(a, b)
    assert out.data_type == DataType.DT_FLOAT
    res = align(ffmodel, [(a, a_np), (b, b_np)], out, lambda x, y: x.float() + y, ["Add"])
    assert res.ff_out.dtype == np.float32


def test_multiply_int32_times_float(ffmodel, rng):
    a_np = rng.integers(-5, 6, size=SHAPE).astype(np.int32)
    b_np = randn(rng, *SHAPE)
    a = ffmodel.create_tensor(SHAPE, DataType.DT_INT32)
    b = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    out = ffmodel.multiply(b, a)
    assert out.data_type == DataType.DT_FLOAT
    align(ffmodel, [(b, b_np), (a, a_np)], out, lambda y, x: y * x.float(), ["Multiply"])


def test_add_inplace_a_overwrites_x(ffmodel, rng):
    a_np, b_np = randn(rng, *SHAPE), randn(rng, *SHAPE)
    a = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    b = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    ffmodel.add(a, b, inplace_a=True)
    compile_mse(ffmodel)
    feed(ffmodel, a, a_np)
    feed(ffmodel, b, b_np)
    ffmodel.label_tensor.set_tensor(ffmodel, randn(rng, *SHAPE))
    ffmodel.init_layers()
    ffmodel.forward()
    torch.testing.assert_close(torch.from_numpy(a.get_tensor(ffmodel)),
                               torch.from_numpy(a_np + b_np))


def test_unary_chain_gradients(ffmodel, rng):
    """Several element-wise ops in a row: gradients flow through all of them."""
    x_np = randn(rng, *SHAPE)
    x = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    t = ffmodel.scalar_multiply(x, 0.5, inplace=False)
    t = ffmodel.tanh(t)
    t = ffmodel.exp(t)
    out = ffmodel.scalar_add(t, -1.0, inplace=False)
    align(ffmodel, [(x, x_np)], out, lambda v: torch.exp(torch.tanh(v * 0.5)) - 1.0,
          ["ScalarMultiply", "Tanh", "Exp", "ScalarAdd"])


def test_dropout_rate_zero_is_exact_copy(ffmodel, rng):
    x_np = randn(rng, *SHAPE)
    x = ffmodel.create_tensor(SHAPE, DataType.DT_FLOAT)
    out = ffmodel.dropout(x, 0.0, 0)
    res = align(ffmodel, [(x, x_np)], out, lambda t: t * 1, ["Dropout"])
    np.testing.assert_array_equal(res.ff_out, x_np)
    np.testing.assert_array_equal(x.get_gradients(ffmodel, ParameterSyncType.PS),
                                  out.get_gradients(ffmodel, ParameterSyncType.PS))


@pytest.mark.parametrize("method", ["scalar_add", "scalar_sub", "scalar_multiply"])
def test_scalar_ops_keep_integer_dtype(ffmodel, method):
    """FlexFlow's scalar ops keep the input's data type (position ids + 2 stay int64)."""
    import torch
    ids = ffmodel.create_tensor((BATCH, 3), DataType.DT_INT64)
    out = getattr(ffmodel, method)(ids, 2.0, inplace=False)
    assert out.data_type == DataType.DT_INT64
    value = torch.arange(BATCH * 3).reshape(BATCH, 3)
    ref = {"scalar_add": value + 2, "scalar_sub": value - 2, "scalar_multiply": value * 2}[method]
    assert torch.equal(out.owner_op.handle.fn([value], [])[0], ref)
