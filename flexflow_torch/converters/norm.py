"""Normalisation: layer_norm, rms_norm (fused pattern), eval-mode batch norm.

FlexFlow's own layer_norm and rms_norm cannot train a converted model: their backwards
overwrite the input gradient (the residual stream's), their block reduction drops the
last partial warp of rows not a multiple of 32 below 1024, layer_norm fails with data
parallelism and rms_norm creates its weight without a gradient (semantics/norm.py).
So norms are composed from reduce_sum, multiply and pow, with the weight and bias as
per-sample parameter tensors."""

from __future__ import annotations

import math

import torch

from ..registry import register
from ..context import Param, Const
from ..fused_ops import rms_norm as fused_rms_norm, layer_norm as fused_layer_norm
from ._common import CONST, PARAM, arg_kind, binary, scalar_op, supported_if, to_float, unsupported

aten = torch.ops.aten


def _mean_last(ctx, x):
    total = ctx.emit("reduce_sum", {"input": x}, {"axes": [x.rank - 1], "keepdims": True})
    return scalar_op(ctx, "scalar_multiply", total, 1.0 / x.shape[-1])


def _rsqrt_plus(ctx, v, eps):
    """pow(v + eps, -0.5); pow's input has no other consumer, so its overwriting backward
    loses nothing."""
    return ctx.emit("pow", {"input": scalar_op(ctx, "scalar_add", v, float(eps))}, {"exponent": -0.5})


def _affine(ctx, y, weight, bias):
    if weight is not None:
        y = binary(ctx, "multiply", y, weight)
    if bias is not None:
        y = binary(ctx, "add", y, bias)
    return y


def _rows(ctx, x, k):
    """x with its last k axes flattened into one (the batch stays on axis 0)."""
    return x if k == 1 else ctx.reshape(x, x.shape[:-k] + (math.prod(x.shape[-k:]),))


@register(aten.layer_norm.default)
def aten_layer_norm(ctx, input, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    """layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, Tensor? bias=None, float eps=1e-05, bool cudnn_enable=True) -> Tensor

    (x - mean) * pow(var + eps, -0.5) * w + b over the last k axes, biased variance."""
    x = to_float(ctx, ctx.tensor(input))
    k = len(normalized_shape)
    rows = _rows(ctx, x, k)
    centred = ctx.emit("subtract", {"x": rows, "y": _mean_last(ctx, rows)})
    var = _mean_last(ctx, ctx.emit("multiply", {"x": centred, "y": centred}))
    y = ctx.emit("multiply", {"x": centred, "y": _rsqrt_plus(ctx, var, eps)})
    return _affine(ctx, ctx.reshape(y, x.shape), weight, bias)


@register(fused_layer_norm)
def fused_layer_norm_converter(ctx, input, weight, bias, eps):
    """flexflow_torch::layer_norm(Tensor input, Tensor? weight, Tensor? bias, float eps) -> Tensor

    A hand-written LayerNorm over the last axis (passes.layer_norm_fusion)."""
    return aten_layer_norm(ctx, input, [ctx.out_shape[-1]], weight, bias, eps)


@register(fused_rms_norm)
def fused_rms_norm_converter(ctx, input, weight, eps):
    """flexflow_torch::rms_norm(Tensor input, Tensor weight, float eps) -> Tensor

    x * pow(mean(x^2) + eps, -0.5) * w (T5LayerNorm, LlamaRMSNorm)."""
    x = to_float(ctx, ctx.tensor(input))
    mean_sq = _mean_last(ctx, ctx.emit("multiply", {"x": x, "y": x}))
    y = ctx.emit("multiply", {"x": x, "y": _rsqrt_plus(ctx, mean_sq, eps)})
    return _affine(ctx, y, weight, None)


def _batch_norm_support(node, input, weight, bias, running_mean, running_var, **_):
    if any(arg_kind(a) not in (CONST, PARAM) for a in (weight, bias, running_mean, running_var)):
        return "batch norm statistics or affine parameters computed by the model"
    return None


@register(aten._native_batch_norm_legit_no_training.default, supports=supported_if(_batch_norm_support))
def aten__native_batch_norm_legit_no_training(ctx, input, weight, bias, running_mean, running_var, momentum, eps):
    """_native_batch_norm_legit_no_training(Tensor input, Tensor? weight, Tensor? bias, Tensor running_mean, Tensor running_var, float momentum, float eps) -> (Tensor, Tensor, Tensor)

    FlexFlow's batch_norm cannot be compiled; an eval-mode batch norm is an
    affine map x*scale + shift per channel, folded from the current statistics
    and weights. Its weight and bias are therefore frozen (see analyze())."""
    def t(v, default):
        if v is None:
            return default
        return v.tensor.detach().float() if isinstance(v, (Param, Const)) else unsupported("batch norm statistics computed by the model")
    C = input.shape[1]
    mean, var = t(running_mean, None), t(running_var, None)
    w, b = t(weight, torch.ones(C)), t(bias, torch.zeros(C))
    scale = w / torch.sqrt(var + eps)
    shift = b - mean * scale
    shape = (1, C) + (1,) * (len(input.shape) - 2)
    y = binary(ctx, "multiply", input, Const(scale.reshape(shape)))
    y = binary(ctx, "add", y, Const(shift.reshape(shape)))
    return (y, None, None)
