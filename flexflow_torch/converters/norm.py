"""Normalisation: layer_norm, rms_norm (fused pattern), eval-mode batch norm."""

from __future__ import annotations

import torch

from ..registry import register
from ..context import Param, Const
from ..fused_ops import rms_norm as fused_rms_norm, layer_norm as fused_layer_norm
from ._common import binary, unsupported, to_float

aten = torch.ops.aten


@register(aten.layer_norm.default)
def aten_layer_norm(ctx, input, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    """layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, Tensor? bias=None, float eps=1e-05, bool cudnn_enable=True) -> Tensor

    FlexFlow layer_norm over the last k axes: axes=[0..k-1] in Legion order."""
    x = to_float(ctx, ctx.tensor(input))
    k = len(normalized_shape)
    native_w = isinstance(weight, Param) and ctx.is_native(weight)
    native_b = isinstance(bias, Param) and ctx.is_native(bias)
    affine = native_w and (bias is None or native_b)
    weights = []
    if affine:
        weights.append({"param_id": 0, "key": ctx.weight(weight)})
        if bias is not None:
            weights.append({"param_id": 1, "key": ctx.weight(bias)})
    name = weight.layer_name if affine else None
    y = ctx.emit("layer_norm", {"input": x},
                 {"axes": list(range(k)), "elementwise_affine": affine, "eps": float(eps),
                  "use_bias": affine and bias is not None}, name=name, weights=weights)
    if not affine:
        if weight is not None:
            y = binary(ctx, "multiply", y, weight)
        if bias is not None:
            y = binary(ctx, "add", y, bias)
    return y


@register(fused_rms_norm)
def fused_rms_norm_converter(ctx, input, weight, eps):
    """rms_norm(Tensor input, Tensor weight, float eps) -> Tensor   (FlexFlow rms_norm, dim = last size)"""
    if not (isinstance(weight, Param) and ctx.is_native(weight)):
        unsupported(f"RMS norm whose weight is shared with another layer ({weight!r})")
    x = to_float(ctx, ctx.tensor(input))
    return ctx.emit("rms_norm", {"input": x}, {"eps": float(eps), "dim": x.shape[-1]},
                    name=weight.layer_name, weights=[{"param_id": 0, "key": ctx.weight(weight)}])


@register(aten._native_batch_norm_legit_no_training.default)
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


@register(fused_layer_norm)
def fused_layer_norm_converter(ctx, input, weight, bias, eps):
    """layer_norm(Tensor input, Tensor? weight, Tensor? bias, float eps) -> Tensor   (last axis)"""
    return aten_layer_norm(ctx, input, [ctx.out_shape[-1]], weight, bias, eps)
