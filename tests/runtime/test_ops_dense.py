"""Operators with weights or spatial structure: dense, conv2d, pool2d, embedding,
flat, batch_matmul, multihead_attention — forward and gradients against PyTorch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flexflow_torch.runtime import ActiMode, AggrMode, DataType, PoolType
from .rt_helpers import BATCH, align, randn

ACTS = {ActiMode.AC_MODE_NONE: lambda t: t, ActiMode.AC_MODE_RELU: torch.relu,
        ActiMode.AC_MODE_SIGMOID: torch.sigmoid}


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", list(ACTS), ids=lambda a: a.name)
@pytest.mark.parametrize("in_shape", [(BATCH, 6), (BATCH, 3, 6), (BATCH, 2, 3, 6)],
                         ids=["2d", "3d", "4d"])
def test_dense(ffmodel, rng, use_bias, activation, in_shape):
    torch.manual_seed(0)
    lin = nn.Linear(6, 5, bias=use_bias)
    x_np = randn(rng, *in_shape)
    x = ffmodel.create_tensor(in_shape, DataType.DT_FLOAT)
    out = ffmodel.dense(x, 5, activation, use_bias=use_bias, name="fc")
    assert out.dims == in_shape[:-1] + (5,)
    layer = ffmodel.get_layer_by_name("fc")
    assert layer.get_weight_tensor().dims == (5, 6)
    assert layer.get_number_parameters() == (2 if use_bias else 1)
    params = [(layer.get_weight_tensor(), lin.weight)]
    if use_bias:
        assert layer.get_bias_tensor().dims == (5,)
        params.append((layer.get_bias_tensor(), lin.bias))
    align(ffmodel, [(x, x_np)], out, lambda t: ACTS[activation](lin(t)), ["Linear"], params)


def test_two_dense_layers(ffmodel, rng):
    torch.manual_seed(1)
    l1, l2 = nn.Linear(6, 8), nn.Linear(8, 3)
    x_np = randn(rng, BATCH, 6)
    x = ffmodel.create_tensor((BATCH, 6), DataType.DT_FLOAT)
    h = ffmodel.dense(x, 8, ActiMode.AC_MODE_RELU)
    out = ffmodel.dense(h, 3)
    ops = list(ffmodel.get_layers().values())
    params = [(ops[0].get_weight_tensor(), l1.weight), (ops[0].get_bias_tensor(), l1.bias),
              (ops[1].get_weight_tensor(), l2.weight), (ops[1].get_bias_tensor(), l2.bias)]
    align(ffmodel, [(x, x_np)], out, lambda t: l2(torch.relu(l1(t))), ["Linear", "Linear"],
          params)


@pytest.mark.parametrize("cin,cout,k,stride,pad,groups,act", [
    (3, 4, 3, 1, 0, 1, ActiMode.AC_MODE_NONE),
    (3, 4, 3, 2, 1, 1, ActiMode.AC_MODE_NONE),
    (2, 3, (3, 2), (1, 2), (1, 0), 1, ActiMode.AC_MODE_RELU),
    (4, 6, 3, 1, 1, 2, ActiMode.AC_MODE_NONE),
    (4, 4, 3, 1, 1, 4, ActiMode.AC_MODE_RELU),
], ids=["plain", "stride_pad", "rect_relu", "groups2", "depthwise_relu"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
def test_conv2d(ffmodel, rng, cin, cout, k, stride, pad, groups, act, use_bias):
    kh, kw = (k, k) if isinstance(k, int) else k
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    torch.manual_seed(2)
    conv = nn.Conv2d(cin, cout, (kh, kw), (sh, sw), (ph, pw), groups=groups, bias=use_bias)
    shape = (BATCH, cin, 7, 6)
    x_np = randn(rng, *shape)
    x = ffmodel.create_tensor(shape, DataType.DT_FLOAT)
    out = ffmodel.conv2d(x, cout, kh, kw, sh, sw, ph, pw, act, groups=groups,
                         use_bias=use_bias, name="conv")
    layer = ffmodel.get_layer_by_name("conv")
    assert layer.get_weight_tensor().dims == tuple(conv.weight.shape)
    params = [(layer.get_weight_tensor(), conv.weight)]
    if use_bias:
        params.append((layer.get_bias_tensor(), conv.bias))
    res = align(ffmodel, [(x, x_np)], out, lambda t: ACTS[act](conv(t)), ["Conv2D"], params)
    assert out.dims == tuple(res.torch_out.shape)


@pytest.mark.parametrize("pool_type,k,stride,pad", [
    (PoolType.POOL_MAX, 2, 2, 0), (PoolType.POOL_MAX, 3, 1, 1),
    (PoolType.POOL_AVG, 2, 2, 0), (PoolType.POOL_AVG, 3, 2, 1),
], ids=["max2", "max3pad", "avg2", "avg3pad"])
def test_pool2d(ffmodel, rng, pool_type, k, stride, pad):
    shape = (BATCH, 3, 6, 7)
    x_np = randn(rng, *shape)
    x = ffmodel.create_tensor(shape, DataType.DT_FLOAT)
    out = ffmodel.pool2d(x, k, k, stride, stride, pad, pad, pool_type)
    if pool_type == PoolType.POOL_MAX:
        fn = lambda t: F.max_pool2d(t, k, stride, pad)  # noqa: E731
    else:
        # cuDNN's "average excluding padding" mode, not PyTorch's default.
        fn = lambda t: F.avg_pool2d(t, k, stride, pad, count_include_pad=False)  # noqa: E731
    align(ffmodel, [(x, x_np)], out, fn, ["Pool2D"])
    assert ffmodel.get_last_layer().get_input_tensor().dims == shape


def test_avg_pool_padding_differs_from_torch_default(ffmodel, rng):
    """The test above would not notice count_include_pad if padding never mattered."""
    x_np = randn(rng, BATCH, 2, 4, 4)
    x = ffmodel.create_tensor(x_np.shape, DataType.DT_FLOAT)
    out = ffmodel.pool2d(x, 3, 3, 1, 1, 1, 1, PoolType.POOL_AVG)
    res = align(ffmodel, [(x, x_np)], out,
                lambda t: F.avg_pool2d(t, 3, 1, 1, count_include_pad=False), ["Pool2D"])
    default = F.avg_pool2d(torch.from_numpy(x_np), 3, 1, 1)
    assert not torch.allclose(torch.from_numpy(res.ff_out), default)


@pytest.mark.parametrize("aggr", [AggrMode.AGGR_MODE_NONE, AggrMode.AGGR_MODE_SUM,
                                  AggrMode.AGGR_MODE_AVG], ids=lambda a: a.name)
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64], ids=["int32", "int64"])
def test_embedding(ffmodel, rng, aggr, id_dtype):
    vocab, dim, seq = 11, 5, 3
    torch.manual_seed(3)
    emb = nn.Embedding(vocab, dim)
    ids_np = rng.integers(0, vocab, size=(BATCH, seq)).astype(id_dtype)
    ids = ffmodel.create_tensor((BATCH, seq), DataType.DT_INT32 if id_dtype == np.int32
                                else DataType.DT_INT64)
    out = ffmodel.embedding(ids, vocab, dim, aggr, name="emb")
    expected_dims = (BATCH, seq, dim) if aggr == AggrMode.AGGR_MODE_NONE else (BATCH, dim)
    assert out.dims == expected_dims
    layer = ffmodel.get_layer_by_name("emb")
    assert layer.get_weight_tensor().dims == (vocab, dim)
    reduce = {AggrMode.AGGR_MODE_NONE: lambda e: e, AggrMode.AGGR_MODE_SUM: lambda e: e.sum(-2),
              AggrMode.AGGR_MODE_AVG: lambda e: e.mean(-2)}[aggr]
    align(ffmodel, [(ids, ids_np)], out, lambda t: reduce(emb(t.long())), ["Embedding"],
          [(layer.get_weight_tensor(), emb.weight)])


def test_flat(ffmodel, rng):
    shape = (BATCH, 3, 2, 4)
    x_np = randn(rng, *shape)
    x = ffmodel.create_tensor(shape, DataType.DT_FLOAT)
    out = ffmodel.flat(x)
    assert out.dims == (BATCH, 24)
    align(ffmodel, [(x, x_np)], out, lambda t: torch.flatten(t, 1), ["Flat"])


def test_conv_pool_flat_dense_stack(ffmodel, rng):
    torch.manual_seed(4)
    conv, lin = nn.Conv2d(1, 3, 3, padding=1), nn.Linear(3 * 3 * 3, 4)
    x_np = randn(rng, BATCH, 1, 6, 6)
    x = ffmodel.create_tensor(x_np.shape, DataType.DT_FLOAT)
    t = ffmodel.conv2d(x, 3, 3, 3, 1, 1, 1, 1, ActiMode.AC_MODE_RELU)
    t = ffmodel.pool2d(t, 2, 2, 2, 2, 0, 0)
    t = ffmodel.flat(t)
    out = ffmodel.dense(t, 4)
    ops = list(ffmodel.get_layers().values())
    params = [(ops[0].get_weight_tensor(), conv.weight), (ops[0].get_bias_tensor(), conv.bias),
              (ops[3].get_weight_tensor(), lin.weight), (ops[3].get_bias_tensor(), lin.bias)]
    align(ffmodel, [(x, x_np)], out,
          lambda v: lin(torch.flatten(F.max_pool2d(torch.relu(conv(v)), 2), 1)),
          ["Conv2D", "Pool2D", "Flat", "Linear"], params)


@pytest.mark.parametrize("shape_a,shape_b", [
    ((BATCH, 3, 5), (BATCH, 5, 2)),
    ((BATCH, 2, 3, 5), (BATCH, 2, 5, 4)),
], ids=["3d", "4d"])
def test_batch_matmul(ffmodel, rng, shape_a, shape_b):
    a_np, b_np = randn(rng, *shape_a), randn(rng, *shape_b)
    a = ffmodel.create_tensor(shape_a, DataType.DT_FLOAT)
    b = ffmodel.create_tensor(shape_b, DataType.DT_FLOAT)
    out = ffmodel.batch_matmul(a, b)
    assert out.dims == shape_a[:-1] + shape_b[-1:]
    align(ffmodel, [(a, a_np), (b, b_np)], out, torch.matmul, ["Batch_Matmul"])


def _mha_reference(q, k, v, w, num_heads, kdim, vdim, embed_dim):
    """FlexFlow's attention with the packed layout documented in ops/reduction.py:
    per head h, row w[h] = Wq (kdim x qf) | Wk (kdim x kf) | Wv (vdim x vf) |
    Wo (embed_dim x vdim), each row-major; no 1/sqrt(d) scaling, no mask, no bias."""
    qf, kf, vf = q.shape[-1], k.shape[-1], v.shape[-1]
    out = 0
    for h in range(num_heads):
        row, o = w[h], 0
        wq = row[o:o + kdim * qf].reshape(kdim, qf); o += kdim * qf
        wk = row[o:o + kdim * kf].reshape(kdim, kf); o += kdim * kf
        wv = row[o:o + vdim * vf].reshape(vdim, vf); o += vdim * vf
        wo = row[o:o + embed_dim * vdim].reshape(embed_dim, vdim)
        qh, kh, vh = q @ wq.T, k @ wk.T, v @ wv.T
        scores = torch.softmax(qh @ kh.transpose(1, 2), dim=-1)
        out = out + (scores @ vh) @ wo.T
    return out


@pytest.mark.parametrize("same_kv", [True, False], ids=["self", "cross"])
def test_multihead_attention(ffmodel, rng, same_kv):
    embed_dim, num_heads, head = 6, 2, 3
    q_np = randn(rng, BATCH, 4, embed_dim)
    kv_shape = (BATCH, 4 if same_kv else 5, 5)
    k_np, v_np = randn(rng, *kv_shape), randn(rng, *kv_shape)
    q = ffmodel.create_tensor(q_np.shape, DataType.DT_FLOAT)
    k = ffmodel.create_tensor(k_np.shape, DataType.DT_FLOAT)
    v = ffmodel.create_tensor(v_np.shape, DataType.DT_FLOAT)
    out = ffmodel.multihead_attention(q, k, v, embed_dim, num_heads, head, head, name="attn")
    assert out.dims == (BATCH, 4, embed_dim)
    weight = ffmodel.get_layer_by_name("attn").get_parameter_by_id(0)
    packed = head * embed_dim + head * 5 + head * 5 + embed_dim * head
    assert weight.dims == (num_heads, packed)
    w = nn.Parameter(torch.from_numpy(randn(rng, num_heads, packed) * 0.5))
    align(ffmodel, [(q, q_np), (k, k_np), (v, v_np)], out,
          lambda a, b, c: _mha_reference(a, b, c, w, num_heads, head, head, embed_dim),
          ["MultiHeadAttention"], [(weight, w)])
