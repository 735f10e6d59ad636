"""A tensor with two consumers, one of whose backward OVERWRITES its input gradient
(softmax, dropout, gelu, rsqrt, pow, layer_norm, multihead_attention).

FlexFlow zeroes the buffer, then runs the backwards in reverse operator order
(model.cc FFModel::backward:2931-2948), the accumulating ones adding (+=) and the
overwriting ones replacing (=). So when the overwriting consumer comes FIRST in layer
order, its backward runs last and the other consumer's contribution is lost; when it
comes last, nothing is lost. Exact mode always sums both.

Model: t = identity(x); a = OP(t); b = scalar_multiply(t, 3) (not in place); out = a + b."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from .rt_helpers import BATCH, align, randn
from .test_ops_dense import mha_reference

SHAPE = (BATCH, 3, 32)      # 32: layer_norm's block reduction is exact for this width


def _autograd_vjp(fn):
    def vjp(g, t):
        t = t.clone().requires_grad_(True)
        return torch.autograd.grad(fn(t), t, g)[0]
    return vjp


def _ops(rng):
    """name: (build(m, t, *extra), forward(t), input array). FlexFlow's formula for each
    op alone is the exact derivative except softmax's (a copy of g)."""
    x = randn(rng, *SHAPE)
    u = randn(rng, *SHAPE)
    w = torch.from_numpy(randn(rng, 1, 3 * 32 * 3 + 32 * 3) * 0.2)
    gamma, beta = torch.ones(32), torch.zeros(32)
    ut = torch.from_numpy(u)
    return {
        "softmax": (lambda m, t: m.softmax(t), lambda t: torch.softmax(t, -1), x),
        "gelu": (lambda m, t: m.gelu(t), F.gelu, x),
        "rsqrt": (lambda m, t: m.rsqrt(t), torch.rsqrt, (np.abs(x) + 0.5).astype(np.float32)),
        "pow": (lambda m, t: m.pow(t, 2.0), lambda t: t * t, x),
        "layer_norm": (lambda m, t: m.layer_norm(t, [0]),
                       lambda t: F.layer_norm(t, (32,), gamma, beta), x),
        # value = t; query = key = a second input (FlexFlow trains q = k != v)
        "multihead_attention": (lambda m, t, q: m.multihead_attention(q, q, t, 32, 1, 3, 3, name="attn"),
                                lambda t: mha_reference(ut, ut, t, w, 1, 3, 3, 32), x),
    }, u, w


@pytest.mark.parametrize("op", ["softmax", "gelu", "rsqrt", "pow", "layer_norm",
                                "multihead_attention"])
@pytest.mark.parametrize("first", [True, False], ids=["overwriter_first", "overwriter_last"])
def test_overwriting_consumer(ffmodel, mode, rng, op, first):
    ops, u, w = _ops(rng)
    build_op, forward_op, x = ops[op]
    arrays, params = [x], []
    if op == "multihead_attention":
        arrays, params = [x, u], [("attn", 0, torch.nn.Parameter(w))]

    def build(m, t, *q):
        if first:
            a = build_op(m, t, *q)
            b = m.scalar_multiply(t, 3.0, inplace=False)
        else:
            b = m.scalar_multiply(t, 3.0, inplace=False)
            a = build_op(m, t, *q)
        return m.add(a, b)

    op_vjp = (lambda g, t: g) if (op == "softmax" and mode == "flexflow") else _autograd_vjp(forward_op)
    kept = 0.0 if (mode == "flexflow" and first) else 3.0

    def vjp(g, t, *q):
        return [op_vjp(g, t) + kept * g] + [None] * (len(arrays) - 1 + len(params))
    # only t's gradient is the subject here (attention's own gradients: test_ops_dense.py)
    align(ffmodel, arrays, build, lambda t, *q: forward_op(t) + 3.0 * t, vjp=vjp, params=params,
          check=[True] + [False] * (len(arrays) - 1 + len(params)))


@pytest.mark.parametrize("mode_first", [True, False], ids=["dropout_first", "dropout_last"])
def test_dropout_overwrites(ffmodel, mode, rng, mode_first):
    """Dropout's cudnnDropoutBackward writes dx (dropout_kernels.cu:118-125). Its mask is
    read from the output (the input has no zeros)."""
    x = (np.abs(randn(rng, BATCH, 64)) + 0.1).astype(np.float32)
    masks = {}

    def build(m, t):
        if mode_first:
            a = m.dropout(t, 0.5, 3)
            b = m.scalar_multiply(t, 3.0, inplace=False)
        else:
            b = m.scalar_multiply(t, 3.0, inplace=False)
            a = m.dropout(t, 0.5, 3)
        masks["out"] = a
        return m.add(a, b)

    def forward(t):
        kept = torch.from_numpy(masks["out"].get_tensor(masks["model"]) != 0)
        masks["kept"] = kept
        return t * kept * 2.0 + 3.0 * t

    def vjp(g, t):
        lost = mode == "flexflow" and mode_first
        return [g * masks["kept"] * 2.0 + (0.0 if lost else 3.0) * g]
    masks["model"] = ffmodel
    align(ffmodel, [x], build, forward, vjp=vjp)
