"""Convolution and pooling (NCHW)."""

from __future__ import annotations

import torch

from ..registry import register
from ..context import Param
from ..graph import enum
from ._common import PARAM, arg_kind, binary, shape_of, supported_if, to_float, unsupported

aten = torch.ops.aten


def _pair(v):
    if isinstance(v, int):
        return v, v
    v = list(v)
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def _conv_support(node, input, weight, bias=None, stride=(1,), padding=(0,), dilation=(1,), groups=1,
                  transposed=False, **_):
    rank = len(shape_of(weight))
    if transposed:
        return "transposed convolution (FlexFlow has none)"
    if rank not in (3, 4):
        return f"{rank - 2}-D convolution (FlexFlow has conv2d only)"
    if isinstance(padding, str):
        return f"convolution with padding={padding!r}"
    if any(d != 1 for d in (dilation if isinstance(dilation, (list, tuple)) else [dilation])):
        return "dilated convolution (FlexFlow conv2d has no dilation)"
    if groups != 1:
        return "grouped convolution (FlexFlow's conv2d weights cannot be set for groups > 1)"
    if arg_kind(weight) != PARAM:
        return "convolution with a computed kernel (FlexFlow's conv2d owns its kernel)"
    return None


@register(aten.conv2d.default, supports=supported_if(_conv_support))
def aten_conv2d(ctx, input, weight, bias=None, stride=(1,), padding=(0,), dilation=(1,), groups=1):
    """conv2d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=1, SymInt[2] padding=0, SymInt[2] dilation=1, SymInt groups=1) -> Tensor"""
    return _conv2d(ctx, to_float(ctx, ctx.tensor(input)), weight, bias, stride, padding, dilation, groups)


@register(aten.conv1d.default, supports=supported_if(_conv_support))
def aten_conv1d(ctx, input, weight, bias=None, stride=(1,), padding=(0,), dilation=(1,), groups=1):
    """conv1d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[1] stride=1, SymInt[1] padding=0, SymInt[1] dilation=1, SymInt groups=1) -> Tensor

    A conv2d over (N, C, 1, L) with a (out, in, 1, k) kernel (the parameter reshaped)."""
    x = ctx.tensor(input)
    if x.rank != 3:
        unsupported(f"conv1d on a {x.rank}-D input")
    n, c, length = x.shape
    def along_w(v, h):
        return h, (v[0] if isinstance(v, (list, tuple)) else v)
    y = _conv2d(ctx, ctx.reshape(x, (n, c, 1, length)), weight, bias, along_w(stride, 1), along_w(padding, 0),
                along_w(dilation, 1), groups, kernel=(1, weight.shape[2]))
    return ctx.reshape(y, ctx.out_shape)


@register(aten.convolution.default, supports=supported_if(_conv_support))
def aten_convolution(ctx, input, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    """convolution(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding, SymInt[] dilation, bool transposed, SymInt[] output_padding, SymInt groups) -> Tensor"""
    if len(weight.shape) == 3:
        return aten_conv1d(ctx, input, weight, bias, stride, padding, dilation, groups)
    return aten_conv2d(ctx, input, weight, bias, stride, padding, dilation, groups)


def _conv2d(ctx, x, weight, bias, stride, padding, dilation, groups, kernel=None):
    if not ctx.is_native(weight):
        unsupported("convolution with a shared kernel (FlexFlow's conv2d owns its kernel)")
    (kh, kw), (sh, sw), (ph, pw) = kernel or weight.shape[2:], _pair(stride), _pair(padding)
    native_b = isinstance(bias, Param) and ctx.is_native(bias)
    key = ctx.weight(weight, {"shape": [weight.shape[0], weight.shape[1], kh, kw]})
    weights = [{"param_id": 0, "key": key}]
    if native_b:
        weights.append({"param_id": 1, "key": ctx.weight(bias)})
    y = ctx.emit("conv2d", {"input": x},
                 {"out_channels": weight.shape[0], "kernel_h": kh, "kernel_w": kw, "stride_h": sh,
                  "stride_w": sw, "padding_h": ph, "padding_w": pw,
                  "activation": enum("ActiMode.AC_MODE_NONE"), "groups": 1, "use_bias": native_b},
                 name=weight.layer_name, weights=weights)
    if bias is not None and not native_b:
        y = binary(ctx, "add", y, _channel(ctx, bias))
    return y


def _channel(ctx, b):
    t = ctx.tensor(b)
    return ctx.view(t, (1, ctx.torch_shape(t)[0], 1, 1))


def _pool(ctx, x, k, s, p, pool_type):
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    return ctx.emit("pool2d", {"input": x},
                    {"kernel_h": kh, "kernel_w": kw, "stride_h": sh, "stride_w": sw, "padding_h": ph,
                     "padding_w": pw, "pool_type": enum("PoolType." + pool_type),
                     "activation": enum("ActiMode.AC_MODE_NONE")})


def _max_pool_support(node, self, kernel_size, stride=(), padding=(0,), dilation=(1,), ceil_mode=False):
    if ceil_mode or _pair(dilation) != (1, 1):
        return "max pooling with ceil_mode or dilation"
    return None


@register(aten.max_pool2d.default, aten.max_pool2d_with_indices.default, supports=supported_if(_max_pool_support))
def aten_max_pool2d(ctx, self, kernel_size, stride=(), padding=(0,), dilation=(1,), ceil_mode=False):
    """max_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, bool ceil_mode=False) -> Tensor
    max_pool2d_with_indices(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, bool ceil_mode=False) -> (Tensor, Tensor)

    The indices output is not kept (None)."""
    k = _pair(kernel_size)
    s = _pair(stride) if stride else k
    y = _pool(ctx, ctx.tensor(self), k, s, _pair(padding), "POOL_MAX")
    if ctx.node.target is aten.max_pool2d_with_indices.default:
        return (y, None)
    return y


def _avg_pool_support(node, self, kernel_size, stride=(), padding=(0,), ceil_mode=False, count_include_pad=True,
                      divisor_override=None):
    if ceil_mode or divisor_override or (_pair(padding) != (0, 0) and count_include_pad):
        return ("average pooling with ceil_mode, divisor_override or padding counted in the average "
                "(FlexFlow excludes padding)")
    return None


@register(aten.avg_pool2d.default, supports=supported_if(_avg_pool_support))
def aten_avg_pool2d(ctx, self, kernel_size, stride=(), padding=(0,), ceil_mode=False, count_include_pad=True,
                    divisor_override=None):
    """avg_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, bool ceil_mode=False, bool count_include_pad=True, int? divisor_override=None) -> Tensor"""
    k = _pair(kernel_size)
    return _pool(ctx, ctx.tensor(self), k, _pair(stride) if stride else k, _pair(padding), "POOL_AVG")


def _adaptive_support(node, self, output_size):
    H, W = shape_of(self)[-2:]
    oh, ow = _pair(output_size)
    return f"adaptive average pooling {H}x{W} -> {oh}x{ow} with uneven windows" if H % oh or W % ow else None


@register(aten.adaptive_avg_pool2d.default, aten._adaptive_avg_pool2d.default, supports=supported_if(_adaptive_support))
def aten_adaptive_avg_pool2d(ctx, self, output_size):
    """adaptive_avg_pool2d(Tensor self, SymInt[2] output_size) -> Tensor
    _adaptive_avg_pool2d(Tensor self, SymInt[2] output_size) -> Tensor

    A pool2d with equal windows (sizes must divide)."""
    x = ctx.tensor(self)
    H, W = x.shape[2:]
    oh, ow = _pair(output_size)
    k = (H // oh, W // ow)
    return _pool(ctx, x, k, k, (0, 0), "POOL_AVG")
