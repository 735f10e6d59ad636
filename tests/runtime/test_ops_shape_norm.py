"""Normalisations, shape operators, reductions and softmax: forward and gradients
against PyTorch (align-test style)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flexflow_torch.runtime import DataType, ParameterSyncType
from .rt_helpers import BATCH, align, compile_mse, randn


@pytest.mark.parametrize("axes", [[0], [0, 1]], ids=["last", "last2"])
@pytest.mark.parametrize("affine,use_bias", [(True, True), (True, False), (False, True)],
                         ids=["affine_bias", "affine_nobias", "plain"])
def test_layer_norm(ffmodel, rng, axes, affine, use_bias):
    shape = (BATCH, 3, 5)
    norm_shape = shape[-len(axes):]           # axes are Legion order: [0] = last axis
    x_np = randn(rng, *shape)
    x = ffmodel.create_tensor(shape, DataType.DT_FLOAT)
    out = ffmodel.layer_norm(x, axes, affine, 1e-5, use_bias, name="ln")
    layer = ffmodel.get_layer_by_name("ln")
    n_params = (2 if use_bias else 1) if affine else 0
    assert layer.get_number_parameters() == n_params
    gamma = nn.Parameter(torch.from_numpy(1.0 + 0.3 * randn(rng, *norm_shape)))
    beta = nn.Parameter(torch.from_numpy(0.3 * randn(rng, *norm_shape)))
    params = []
    if affine:
        assert layer.get_weight_tensor().dims == norm_shape
        params.append((layer.get_weight_tensor(), gamma))
        if use_bias:
            params.append((layer.get_bias_tensor(), beta))
    align(ffmodel, [(x, x_np)], out,
          lambda t: F.layer_norm(t, norm_shape, gamma if affine else None,
                                 beta if affine and use_bias else None, 1e-5),
          ["LayerNorm"], params)


def test_rms_norm(ffmodel, rng):
    shape = (BATCH, 3, 6)
    x_np = randn(rng, *shape)
    x = ffmodel.create_tensor(shape, DataType.DT_FLOAT)
    out = ffmodel.rms_norm(x, 1e-6, 6, name="rms")
    weight = ffmodel.get_layer_by_name("rms").get_parameter_by_id(0)
    assert weight.dims == (6,)
    w = nn.Parameter(torch.from_numpy(1.0 + 0.3 * randn(rng, 6)))

    def t5_layer_norm(t):      # HF T5LayerNorm / LlamaRMSNorm
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    align(ffmodel, [(x, x_np)], out, t5_layer_norm, ["RMSNorm"], [(weight, w)])


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_concat(ffmodel, rng, axis):
    base = [BATCH, 3, 4]
    shapes = []
    for extra in (1, 2, 3):
        s = list(base)
        s[axis] = extra if axis != 0 else BATCH     # dim 0 stays the batch size
        shapes.append(tuple(s))
    arrays = [randn(rng, *s) for s in shapes]
    tensors = [ffmodel.create_tensor(s, DataType.DT_FLOAT) for s in shapes]
    out = ffmodel.concat(tensors, axis)
    align(ffmodel, list(zip(tensors, arrays)), out, lambda *ts: torch.cat(ts, dim=axis),
          ["Concat"])


@pytest.mark.parametrize("sizes,axis", [(2, 1), ([1, 2, 3], 2), ([3, 1], 1)],
                         ids=["int", "list_last", "list_mid"])
def test_split(ffmodel, rng, sizes, axis):
    shape = (BATCH, 4, 6)
    x_np = randn(rng, *shape)
    x = ffmodel.create_tensor(shape, DataType.DT_FLOAT)
    pieces = ffmodel.split(x, sizes, axis)
    assert isinstance(pieces, list)
    t_sizes = [shape[axis] // sizes] * sizes if isinstance(sizes, int) else sizes
    assert [p.dims[axis] for p in pieces] == t_sizes
    # Reorder the pieces so the gradient check sees where every piece went.
    out = ffmodel.concat(pieces[::-1], axis)
    res = align(ffmodel, [(x, x_np)], out,
                lambda t: torch.cat(torch.split(t, t_sizes, dim=axis)[::-1], dim=axis),
                ["Split", "Concat"])
    for p, expected in zip(pieces, torch.split(res.torch_inputs[0].detach(), t_sizes, dim=axis)):
        torch.testing.assert_close(torch.from_numpy(p.get_tensor(ffmodel)), expected)


def test_split_single_output_model(ffmodel, rng):
    """One split piece feeding a multiply: the unused piece gets no gradient."""
    x_np = randn(rng, BATCH, 6)
    x = ffmodel.create_tensor((BATCH, 6), DataType.DT_FLOAT)
    a, b = ffmodel.split(x, [2, 4], 1)
    out = ffmodel.scalar_multiply(b, 3.0, inplace=False)
    align(ffmodel, [(x, x_np)], out, lambda t: t[:, 2:] * 3.0, ["Split", "ScalarMultiply"])


@pytest.mark.parametrize("in_shape,out_shape", [
    ((BATCH, 6), (BATCH, 2, 3)), ((BATCH, 2, 3, 2), (BATCH, 12)), ((BATCH, 3, 4), (2, 6, 4))])
def test_reshape(ffmodel, rng, in_shape, out_shape):
    x_np = randn(rng, *in_shape)
    x = ffmodel.create_tensor(in_shape, DataType.DT_FLOAT)
    out = ffmodel.reshape(x, out_shape)
    assert out.dims == out_shape
    align(ffmodel, [(x, x_np)], out, lambda t: t.reshape(out_shape), ["Reshape"])


@pytest.mark.parametrize("perm", [(0, 2, 1), (2, 0, 1), (1, 2, 0)])
def test_transpose(ffmodel, rng, perm):
    shape = (BATCH, 3, 5)
    x_np = randn(rng, *shape)
    x = ffmodel.create_tensor(shape, DataType.DT_FLOAT)
    out = ffmodel.transpose(x, perm)
    assert out.dims == tuple(shape[p] for p in perm)
    align(ffmodel, [(x, x_np)], out, lambda t: t.permute(perm), ["Transpose"])


@pytest.mark.parametrize("dim", [0, 1, 2])
@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64], ids=["int32", "int64"])
def test_gather(ffmodel, rng, dim, idx_dtype):
    shape = (BATCH, 3, 5)
    idx_shape = list(shape)
    idx_shape[dim] = 2 if dim else BATCH        # index axis 0 must equal the batch size
    x_np = randn(rng, *shape)
    idx_np = rng.integers(0, shape[dim], size=idx_shape).astype(idx_dtype)
    x = ffmodel.create_tensor(shape, DataType.DT_FLOAT)
    idx = ffmodel.create_tensor(idx_shape, DataType.DT_INT32 if idx_dtype == np.int32
                                else DataType.DT_INT64)
    out = ffmodel.gather(x, idx, dim)
    assert out.dims == tuple(idx_shape)
    align(ffmodel, [(x, x_np), (idx, idx_np)], out,
          lambda t, i: torch.gather(t, dim, i.long()), ["Gather"])


@pytest.mark.parametrize("axes", [(1,), (2,), (1, 2)])
@pytest.mark.parametrize("keepdims", [False, True], ids=["drop", "keep"])
def test_reduce_sum(ffmodel, rng, axes, keepdims):
    shape = (BATCH, 3, 5)
    x_np = randn(rng, *shape)
    x = ffmodel.create_tensor(shape, DataType.DT_FLOAT)
    out = ffmodel.reduce_sum(x, axes, keepdims)
    res = align(ffmodel, [(x, x_np)], out, lambda t: t.sum(dim=axes, keepdim=keepdims),
                ["ReduceSum"])
    assert out.dims == tuple(res.torch_out.shape)


def test_softmax_internal_gets_true_gradient(ffmodel, rng):
    """A softmax that is NOT the final op is back-propagated exactly (the embedded
    runtime uses the real softmax Jacobian; only the final softmax is special)."""
    shape = (BATCH, 3, 5)
    x_np = randn(rng, *shape)
    x = ffmodel.create_tensor(shape, DataType.DT_FLOAT)
    s = ffmodel.softmax(x, -1)
    out = ffmodel.scalar_multiply(s, 2.0, inplace=False)
    align(ffmodel, [(x, x_np)], out, lambda t: torch.softmax(t, -1) * 2.0,
          ["Softmax", "ScalarMultiply"])


def test_softmax_internal_before_matmul(ffmodel, rng):
    """Hand-built attention: softmax(QK^T) V with a true softmax gradient."""
    q_np, k_np, v_np = (randn(rng, BATCH, 3, 4), randn(rng, BATCH, 4, 3),
                        randn(rng, BATCH, 3, 2))
    q, k, v = (ffmodel.create_tensor(a.shape, DataType.DT_FLOAT) for a in (q_np, k_np, v_np))
    scores = ffmodel.batch_matmul(q, k)
    probs = ffmodel.softmax(scores)
    out = ffmodel.batch_matmul(probs, v)
    align(ffmodel, [(q, q_np), (k, k_np), (v, v_np)], out,
          lambda a, b, c: torch.softmax(a @ b, -1) @ c,
          ["Batch_Matmul", "Softmax", "Batch_Matmul"])


@pytest.mark.parametrize("axis", [-1, 2])
def test_softmax_final_backward_is_identity_copy(ffmodel, rng, axis):
    """FlexFlow's softmax backward copies the incoming gradient: the final softmax's
    input receives exactly the loss gradient written into its output."""
    shape = (BATCH, 3, 5)
    x_np = randn(rng, *shape)
    x = ffmodel.create_tensor(shape, DataType.DT_FLOAT)
    out = ffmodel.softmax(x, axis)
    compile_mse(ffmodel)
    x.set_tensor(ffmodel, x_np)
    label = randn(rng, *shape)
    ffmodel.label_tensor.set_tensor(ffmodel, label)
    ffmodel.init_layers()
    ffmodel.forward()
    ffmodel.zero_gradients()
    ffmodel.backward()
    probs = torch.softmax(torch.from_numpy(x_np), -1)
    torch.testing.assert_close(torch.from_numpy(out.get_tensor(ffmodel)), probs)
    loss_grad = 2.0 * (probs - torch.from_numpy(label)) / label.size
    torch.testing.assert_close(
        torch.from_numpy(out.get_gradients(ffmodel, ParameterSyncType.PS)), loss_grad)
    torch.testing.assert_close(
        torch.from_numpy(x.get_gradients(ffmodel, ParameterSyncType.PS)), loss_grad)
    torch.testing.assert_close(
        torch.from_numpy(out.get_model_output_gradients(ffmodel, ParameterSyncType.PS)),
        loss_grad)


def test_dense_then_final_softmax_weight_gradient(ffmodel, rng):
    """Weights below a final softmax see the loss gradient as if softmax were absent."""
    torch.manual_seed(5)
    lin = nn.Linear(6, 4)
    x_np = randn(rng, BATCH, 6)
    x = ffmodel.create_tensor((BATCH, 6), DataType.DT_FLOAT)
    logits = ffmodel.dense(x, 4, name="fc")
    ffmodel.softmax(logits)
    layer = ffmodel.get_layer_by_name("fc")
    compile_mse(ffmodel)
    layer.get_weight_tensor().set_weights(ffmodel, lin.weight.detach().numpy())
    layer.get_bias_tensor().set_weights(ffmodel, lin.bias.detach().numpy())
    x.set_tensor(ffmodel, x_np)
    label = randn(rng, BATCH, 4)
    ffmodel.label_tensor.set_tensor(ffmodel, label)
    ffmodel.init_layers()
    ffmodel.forward()
    ffmodel.zero_gradients()
    ffmodel.backward()
    z = lin(torch.from_numpy(x_np))
    seed = 2.0 * (torch.softmax(z, -1) - torch.from_numpy(label)) / label.size
    z.backward(seed.detach())
    torch.testing.assert_close(
        torch.from_numpy(layer.get_weight_tensor().get_gradients(ffmodel, ParameterSyncType.PS)),
        lin.weight.grad)
    torch.testing.assert_close(
        torch.from_numpy(layer.get_bias_tensor().get_gradients(ffmodel, ParameterSyncType.PS)),
        lin.bias.grad)
