"""Normalisation layers: layer_norm (src/ops/layer_norm.cc, layer_norm.cu) and rms_norm
(src/ops/rms_norm.cc, kernels/rms_norm_kernels.cu).

Both reduce a row with a block reduction that keeps only whole warps: with N (the
normalised size) below 1024 and not a multiple of 32, the sums cover the first
32*floor(N/32) elements but are divided by N (layer_norm.cu BlockReduceSum:93,
rms_norm_kernels.cu BlockReduceSum:89). Both backwards overwrite the input gradient.
The converter therefore composes norms from primitives; these specs describe what a
hand-written FlexFlow script gets."""

from __future__ import annotations

import math

import torch

from ..errors import DTypeError, ShapeError, UnsupportedByFlexFlowError
from .base import FLOAT, HALF, Stage
from .spec import OVER, OpSpec, WeightDecl, register

LN_SRC = "src/ops/layer_norm.cc, src/ops/layer_norm.cu"
RMS_SRC = "src/ops/rms_norm.cc, src/ops/kernels/rms_norm_kernels.cu"


def reduced_length(n: int) -> int:
    """How many leading elements of a row of n the block reduction actually sums."""
    return n if n >= 1024 else 32 * (n // 32)


def reduction_hazard(ck, n):
    if reduced_length(n) != n:
        ck.hazard(f"rows of {n} elements: the block reduction sums only the first "
                  f"{reduced_length(n)} but divides by {n}",
                  "src/ops/layer_norm.cu BlockReduceSum:93, src/ops/kernels/rms_norm_kernels.cu BlockReduceSum:89")


def _row_sums(x2d, exact):
    n = x2d.shape[-1]
    k = n if exact else reduced_length(n)
    part = x2d[..., :k]
    return part.sum(-1, keepdim=True), (part * part).sum(-1, keepdim=True)


class _LayerNorm(torch.autograd.Function):
    """Forward with FlexFlow's statistics (one-pass variance, truncated sums); backward
    with its formula given those statistics (layer_norm.cu compute_gI:528-540)."""

    @staticmethod
    def forward(ctx, x, gamma, beta, eps, exact):
        n = x.shape[-1]
        s1, s2 = _row_sums(x, exact)
        mean = s1 / n
        rstd = torch.rsqrt((s2 / n - mean * mean).clamp_min(0) + eps)
        xhat = (x - mean) * rstd
        ctx.save_for_backward(xhat, rstd, gamma)
        y = xhat
        if gamma is not None:
            y = y * gamma
        if beta is not None:
            y = y + beta
        return y

    @staticmethod
    def backward(ctx, dy):
        xhat, rstd, gamma = ctx.saved_tensors
        n = xhat.shape[-1]
        dyg = dy * gamma if gamma is not None else dy
        dx = rstd / n * (n * dyg - xhat * (dyg * xhat).sum(-1, keepdim=True) - dyg.sum(-1, keepdim=True))
        lead = tuple(range(dy.dim() - 1))
        dgamma = (dy * xhat).sum(lead) if gamma is not None else None
        dbeta = dy.sum(lead) if ctx.needs_input_grad[2] else None
        return dx, dgamma, dbeta, None, None


@register
class LayerNorm(OpSpec):
    method, op_type = "layer_norm", "LAYER_NORM"
    source = LN_SRC
    input_grad = OVER        # layer_norm.cu compute_gI: dX_i[l] = f_grad_input
    weight_grad = OVER       # GammaBetaBackward*: dg[j] = sum1

    def infer(self, ck, input, axes, elementwise_affine=True, eps=1e-5, use_bias=True):
        axes = list(axes)
        k = len(axes)
        if k == 0 or axes != list(range(k)) or k > input.rank:
            ck.fail(UnsupportedByFlexFlowError, f"axes {axes}: FlexFlow takes axes in reversed (Legion) "
                    "order and requires exactly [0, ..., k-1]; to normalise the last axis pass axes=[0]",
                    "src/ops/layer_norm.cc FFModel::layer_norm:88-90")
        if input.dtype not in (FLOAT, HALF):
            ck.problem(Stage.FORWARD, DTypeError, f"{input.dtype} input: FLOAT or HALF only",
                       "src/ops/layer_norm.cu forward_kernel_wrapper:182-200")
        if not (elementwise_affine and use_bias):
            ck.problem(Stage.BACKWARD, UnsupportedByFlexFlowError, "the backward reads gamma and beta "
                       "unconditionally: train only with elementwise_affine=True and use_bias=True",
                       "src/ops/layer_norm.cu backward_kernel_wrapper:690-698")
        if input.part is not None:
            if elementwise_affine:
                ck.parallel_problem(Stage.COMPILE, "gamma/beta get the sample axis with size 1 and "
                                    "degree N", "src/ops/layer_norm.cc:246-250, src/runtime/model.cc:1964")
            else:
                ck.parallel_problem(Stage.FORWARD, "the effective batch is computed from the global "
                                    "volume but checked per shard", "src/ops/layer_norm.cc:243,612")
        reduction_hazard(ck, math.prod(input.shape[-k:]))
        return [input]

    def weights(self, input, axes, elementwise_affine=True, use_bias=True, **a):
        if not elementwise_affine:
            return []
        shape = tuple(input.shape[-len(axes):])
        ws = [WeightDecl(shape, "gamma", "ones")]
        if use_bias:
            ws.append(WeightDecl(shape, "beta", "zeros"))
        return ws

    def forward(self, run, ins, ws, axes, elementwise_affine=True, eps=1e-5, use_bias=True):
        x = ins[0]
        k = len(axes)
        shape = x.shape[-k:]
        flat = x.reshape(*x.shape[:-k], -1)
        gamma = ws[0].reshape(-1) if elementwise_affine else None
        beta = ws[1].reshape(-1) if elementwise_affine and use_bias else None
        if run.exact:
            y = torch.nn.functional.layer_norm(flat, flat.shape[-1:], gamma, beta, eps)
        else:
            y = _LayerNorm.apply(flat, gamma, beta, float(eps), False)
        return [y.reshape(*x.shape[:-k], *shape)]


class _RMSNorm(torch.autograd.Function):
    """rrms = rsqrt(sum(x^2)/N + eps) with the truncated sum; backward
    dX = rrms*dy*w - x*rrms^3*sum(dy*x*w)/N with the same truncation
    (rms_norm_kernels.cu RMSNormBackwardCUDAKernel:323-331)."""

    @staticmethod
    def forward(ctx, x, w, eps):
        n = x.shape[-1]
        _, s2 = _row_sums(x, False)
        rrms = torch.rsqrt(s2 / n + eps)
        ctx.save_for_backward(x, w, rrms)
        return x * rrms * w

    @staticmethod
    def backward(ctx, dy):
        x, w, rrms = ctx.saved_tensors
        n = x.shape[-1]
        k = reduced_length(n)
        s = (dy * x * w)[..., :k].sum(-1, keepdim=True)
        dx = rrms * dy * w - x * rrms ** 3 * s / n
        dw = (dy * x * rrms).sum(tuple(range(dy.dim() - 1)))
        return dx, dw, None


@register
class RMSNorm(OpSpec):
    method, op_type = "rms_norm", "RMS_NORM"
    source = RMS_SRC
    input_grad = OVER
    weight_grad = OVER

    def infer(self, ck, input, eps, dim):
        if dim != input.shape[-1]:
            ck.fail(ShapeError, f"dim={dim} must equal the size of the last axis ({input.shape[-1]}); "
                    "FlexFlow's dim is a size, not an axis", RMS_SRC)
        if input.dtype not in (FLOAT, HALF):
            ck.problem(Stage.FORWARD, DTypeError, f"{input.dtype} input: FLOAT or HALF only",
                       "src/ops/kernels/rms_norm_kernels.cu forward_kernel_wrapper:157-173")
        ck.problem(Stage.BACKWARD, UnsupportedByFlexFlowError, "the compiled operator creates its "
                   "weight without a gradient region, so it cannot be trained (use it for inference, or "
                   "compose x * pow(mean(x^2) + eps, -0.5) * w)", "src/ops/rms_norm.cc:201, "
                   "src/runtime/substitution.cc:3750")
        if input.part is not None:
            ck.parallel_problem(Stage.COMPILE, "all non-replica dims must be unpartitioned",
                                "src/ops/rms_norm.cc:173-177")
        reduction_hazard(ck, input.shape[-1])
        return [input]

    def weights(self, input, eps, dim):
        return [WeightDecl((int(dim),), "weight")]

    def forward(self, run, ins, ws, eps, dim):
        x, w = ins[0], ws[0]
        if run.exact:
            return [x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w]
        return [_RMSNorm.apply(x, w, float(eps))]
