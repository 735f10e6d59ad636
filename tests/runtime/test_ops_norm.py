"""layer_norm, rms_norm and softmax in both semantics modes.

FlexFlow's norms sum a row with a block reduction that keeps whole warps only: for a
normalised size N < 1024 the sums cover the first 32 * floor(N / 32) elements but are
divided by N (layer_norm.cu BlockReduceSum:93, rms_norm_kernels.cu BlockReduceSum:89).
layer_norm's variance is one-pass, E[x^2] - mean^2 clamped at 0 (layer_norm.cu:124).
softmax's backward copies the output gradient (softmax.cu backward_kernel:254-258)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flexflow_torch.errors import UnsupportedByFlexFlowError
from flexflow_torch.runtime import DataType
from .rt_helpers import BATCH, align, compile_mse, randn, set_params, value


def _summed(n):
    """How many leading elements of a row FlexFlow's block reduction adds up."""
    return n if n >= 1024 else 32 * (n // 32)


def ff_layer_norm_stats(rows, eps):
    n = rows.shape[-1]
    part = rows[..., :_summed(n)]
    mean = part.sum(-1, keepdim=True) / n
    var = ((part * part).sum(-1, keepdim=True) / n - mean * mean).clamp_min(0)
    rstd = 1.0 / torch.sqrt(var + eps)
    return (rows - mean) * rstd, rstd


def ff_layer_norm_vjp(g, x, gamma, eps, k):
    """compute_gI (layer_norm.cu:528-540) with the forward's mean and rstd;
    GammaBetaBackward*: dgamma = sum dy * xhat, dbeta = sum dy."""
    rows, grows = x.reshape(*x.shape[:-k], -1), g.reshape(*g.shape[:-k], -1)
    xhat, rstd = ff_layer_norm_stats(rows, eps)
    n = rows.shape[-1]
    gg = grows * gamma.reshape(-1)
    dx = rstd / n * (n * gg - xhat * (gg * xhat).sum(-1, keepdim=True) - gg.sum(-1, keepdim=True))
    lead = tuple(range(rows.dim() - 1))
    dgamma, dbeta = (grows * xhat).sum(lead), grows.sum(lead)
    return [dx.reshape(x.shape), dgamma.reshape(gamma.shape), dbeta.reshape(gamma.shape)]


@pytest.mark.parametrize("shape,axes,eps", [
    ((BATCH, 3, 40), [0], 1e-5),       # 40 -> the first 32 are summed
    ((BATCH, 3, 16), [0], 1e-2),       # 16 -> nothing is summed: y = x * rsqrt(eps) * g + b
    ((BATCH, 3, 64), [0], 1e-5),       # a multiple of 32: exact
    ((BATCH, 5, 8), [0, 1], 1e-5),     # two axes: N = 40
], ids=["n40", "n16", "n64", "axes2_n40"])
def test_layer_norm(ffmodel, mode, rng, shape, axes, eps):
    """eps 0.01 for N = 16 keeps rsqrt(eps), the whole normalisation there, at 10."""
    k = len(axes)
    norm_shape = shape[-k:]
    x = randn(rng, *shape)
    gamma = torch.nn.Parameter(torch.from_numpy(1.0 + 0.3 * randn(rng, *norm_shape)))
    beta = torch.nn.Parameter(torch.from_numpy(0.3 * randn(rng, *norm_shape)))

    def ff_forward(t):
        xhat, _ = ff_layer_norm_stats(t.reshape(*t.shape[:-k], -1), eps)
        return xhat.reshape(t.shape) * gamma + beta

    def exact_forward(t):
        return F.layer_norm(t, norm_shape, gamma, beta, eps)
    res = align(ffmodel, [x], lambda m, t: m.layer_norm(t, axes, True, eps, True, name="ln"),
                exact_forward if mode == "exact" else ff_forward,
                vjp=None if mode == "exact" else
                lambda g, t: ff_layer_norm_vjp(g, t, gamma.detach(), eps, k),
                params=[("ln", 0, gamma), ("ln", 1, beta)], layers=["LayerNorm"])
    if mode == "flexflow" and _summed(int(np.prod(norm_shape))) != np.prod(norm_shape):
        assert not torch.allclose(res.out, exact_forward(torch.from_numpy(x)).detach(), atol=1e-3)


@pytest.mark.parametrize("affine,use_bias", [(False, True), (True, False)], ids=["plain", "nobias"])
def test_layer_norm_forward_only_without_gamma_and_beta(ffmodel, mode, rng, affine, use_bias):
    """Without gamma and beta the forward works and the backward aborts
    (layer_norm.cu backward_kernel_wrapper:690-698)."""
    shape = (BATCH, 3, 64)
    x_np = randn(rng, *shape)
    x = ffmodel.create_tensor(shape, DataType.DT_FLOAT)
    out = ffmodel.layer_norm(x, [0], affine, 1e-5, use_bias)
    assert ffmodel.get_last_layer().get_number_parameters() == (1 if affine else 0)
    compile_mse(ffmodel)
    ffmodel.init_layers()
    x.set_tensor(ffmodel, x_np)
    ffmodel.forward()
    torch.testing.assert_close(value(out, ffmodel), F.layer_norm(torch.from_numpy(x_np), (64,), eps=1e-5))
    with pytest.raises(UnsupportedByFlexFlowError, match="elementwise_affine"):
        ffmodel.zero_gradients()


@pytest.mark.parametrize("n,eps", [(40, 1e-6), (16, 1e-2), (64, 1e-6)], ids=["n40", "n16", "n64"])
def test_rms_norm_forward(ffmodel, mode, rng, n, eps):
    """FlexFlow: rrms = rsqrt(sum of the first 32*floor(N/32) squares / N + eps), y = x*rrms*w
    (rms_norm_kernels.cu RMSNormFusedForwardKernel:106-123). Training aborts: the compiled
    operator's weight has no gradient region (rms_norm.cc:201)."""
    x_np = randn(rng, BATCH, 3, n)
    w = torch.from_numpy(1.0 + 0.3 * randn(rng, n))
    x = ffmodel.create_tensor(x_np.shape, DataType.DT_FLOAT)
    out = ffmodel.rms_norm(x, eps, n, name="rms")
    assert ffmodel.get_layer_by_name("rms").get_parameter_by_id(0).dims == (n,)
    compile_mse(ffmodel)
    set_params(ffmodel, [("rms", 0, w)])
    ffmodel.init_layers()
    x.set_tensor(ffmodel, x_np)
    ffmodel.forward()
    xt = torch.from_numpy(x_np)
    summed = n if mode == "exact" else _summed(n)
    rrms = 1.0 / torch.sqrt((xt[..., :summed] ** 2).sum(-1, keepdim=True) / n + eps)
    torch.testing.assert_close(value(out, ffmodel), xt * rrms * w)
    with pytest.raises(UnsupportedByFlexFlowError, match="gradient region"):
        ffmodel.zero_gradients()


# -- softmax ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(BATCH, 5), (BATCH, 3, 5)], ids=["2d", "3d"])
def test_softmax_final(ffmodel, mode, rng, shape):
    """flexflow: the input gradient is a copy of the output gradient; exact: the Jacobian."""
    x = randn(rng, *shape)
    align(ffmodel, [x], lambda m, t: m.softmax(t), lambda t: torch.softmax(t, -1),
          vjp=None if mode == "exact" else lambda g, t: [g], layers=["Softmax"])


def test_softmax_internal(ffmodel, mode, rng):
    x = randn(rng, BATCH, 3, 5)
    align(ffmodel, [x], lambda m, t: m.scalar_multiply(m.softmax(t), 2.0, inplace=False),
          lambda t: torch.softmax(t, -1) * 2.0,
          vjp=None if mode == "exact" else lambda g, t: [2.0 * g], layers=["Softmax", "ScalarMultiply"])


def test_softmax_inside_attention(ffmodel, mode, rng):
    """Hand-built attention softmax(Q K) V: flexflow passes dP straight to the scores."""
    q, k, v = randn(rng, BATCH, 3, 4), randn(rng, BATCH, 4, 3), randn(rng, BATCH, 3, 2)

    def ff_vjp(g, a, b, c):
        dscores = g @ c.transpose(1, 2)          # dP = g V^T, copied unchanged to the scores
        return [dscores @ b.transpose(1, 2), a.transpose(1, 2) @ dscores,
                torch.softmax(a @ b, -1).transpose(1, 2) @ g]
    align(ffmodel, [q, k, v], lambda m, a, b, c: m.batch_matmul(m.softmax(m.batch_matmul(a, b)), c),
          lambda a, b, c: torch.softmax(a @ b, -1) @ c,
          vjp=None if mode == "exact" else ff_vjp, layers=["Batch_Matmul", "Softmax", "Batch_Matmul"])
