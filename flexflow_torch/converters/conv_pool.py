"""Convolution, pooling and upsampling (NCHW)."""

from __future__ import annotations

import math

import torch

from ..registry import register
from ..context import Param
from ..graph import enum
from ._common import binary, shape_of, supported_if, to_float, unsupported

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
                along_w(dilation, 1), groups, kernel=(1, _kernel_shape(ctx, weight)[2]))
    return ctx.reshape(y, ctx.out_shape)


@register(aten.convolution.default, supports=supported_if(_conv_support))
def aten_convolution(ctx, input, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    """convolution(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding, SymInt[] dilation, bool transposed, SymInt[] output_padding, SymInt groups) -> Tensor"""
    if len(_kernel_shape(ctx, weight)) == 3:
        return aten_conv1d(ctx, input, weight, bias, stride, padding, dilation, groups)
    return aten_conv2d(ctx, input, weight, bias, stride, padding, dilation, groups)


def _conv2d(ctx, x, weight, bias, stride, padding, dilation, groups, kernel=None):
    (kh, kw), (sh, sw), (ph, pw) = kernel or _kernel_shape(ctx, weight)[2:], _pair(stride), _pair(padding)
    if not (isinstance(weight, Param) and ctx.is_native(weight)):
        return _computed_kernel(ctx, x, weight, bias, groups, (kh, kw), (sh, sw), (ph, pw))
    native_b = isinstance(bias, Param) and ctx.is_native(bias)
    x, (ph, pw) = _flexflow_padding(ctx, x, (kh, kw), (sh, sw), (ph, pw))
    if groups != 1:
        y = _grouped(ctx, x, weight, bias if native_b else None, groups, (kh, kw), (sh, sw), (ph, pw))
    else:
        key = ctx.weight(weight, {"shape": [weight.shape[0], weight.shape[1], kh, kw]})
        weights = [{"param_id": 0, "key": key}]
        if native_b:
            weights.append({"param_id": 1, "key": ctx.weight(bias)})
        y = _conv_layer(ctx, x, weight.shape[0], (kh, kw), (sh, sw), (ph, pw), native_b, weight.layer_name,
                        weights)
    if bias is not None and not native_b:
        y = binary(ctx, "add", y, _channel(ctx, bias))
    return y


def _kernel_shape(ctx, weight):
    """The kernel's PyTorch shape (a computed kernel is a per-sample value)."""
    return tuple(weight.shape) if isinstance(weight, Param) else ctx.torch_shape(ctx.tensor(weight))


def _conv_layer(ctx, x, out_channels, k, s, p, use_bias, name, weights):
    return ctx.emit("conv2d", {"input": x},
                    {"out_channels": out_channels, "kernel_h": k[0], "kernel_w": k[1], "stride_h": s[0],
                     "stride_w": s[1], "padding_h": p[0], "padding_w": p[1],
                     "activation": enum("ActiMode.AC_MODE_NONE"), "groups": 1, "use_bias": use_bias},
                    name=name, weights=weights)


def _grouped(ctx, x, weight, bias, groups, k, s, p):
    """A grouped (or depthwise) convolution as one FlexFlow conv2d per group: FlexFlow's
    conv2d takes `groups`, but its weight for groups > 1 has a layout Python cannot set
    (set_weights copies a (out, in, kh, kw) array into a buffer of another shape), so the
    input channels are split, each group convolved with its slice of the kernel (a
    weight of its own, copied back into that slice), and the outputs concatenated."""
    out_per, in_per = weight.shape[0] // groups, x.shape[1] // groups
    parts = ctx.emit("split", {"input": x}, {"sizes": [in_per] * groups, "axis": 1})
    outs = []
    for g in range(groups):
        rows = [g * out_per, (g + 1) * out_per]
        weights = [{"param_id": 0, "key": ctx.weight(weight, {"rows": rows, "shape": [out_per, in_per, *k]})}]
        if bias is not None:
            weights.append({"param_id": 1, "key": ctx.weight(bias, {"rows": rows})})
        outs.append(_conv_layer(ctx, parts[g], out_per, k, s, p, bias is not None,
                                f"{weight.layer_name}.group{g}", weights))
    while len(outs) > 1:          # FlexFlow's concat takes at most 256 tensors
        outs = [outs[i] if i + 1 == len(outs) else ctx.emit("concat", {"tensors": outs[i:i + 256]}, {"axis": 1})
                for i in range(0, len(outs), 256)]
    return outs[0]


def _flexflow_padding(ctx, x, k, s, p):
    """(input, padding) for a FlexFlow conv2d that computes PyTorch's convolution.

    FlexFlow's init_task recomputes the padding from the output size and ignores the
    given one (semantics.dense.effective_padding); where that differs (Segformer's and
    Hiera's 7x7 stride-4 patch embeddings), the input is padded and cropped to exactly
    the rows and columns the windows read, by one per-sample gather, and convolved
    without padding (FlexFlow then recomputes 0)."""
    from ..semantics.dense import effective_padding
    H, W = x.shape[2:]
    out = [(size + 2 * pad - kern) // stride + 1 for size, kern, stride, pad in zip((H, W), k, s, p)]
    if all(effective_padding(size, o, kern, stride) == pad
           for size, o, kern, stride, pad in zip((H, W), out, k, s, p)):
        return x, p
    th, tw = [(o - 1) * stride + kern for o, stride, kern in zip(out, s, k)]
    C = x.shape[1]
    positions = torch.arange(C * H * W, dtype=torch.float64).reshape(C, H, W)
    padded = torch.nn.functional.pad(positions, (p[1], max(0, tw - W - p[1]), p[0], max(0, th - H - p[0])),
                                     value=-1.0)[:, :th, :tw]
    return ctx.reshape(_gather_or_zero(ctx, x, padded.reshape(-1).long()), (x.shape[0], C, th, tw)), (0, 0)


def _gather_or_zero(ctx, x, src):
    """x (batch, ...) read per sample at the flat positions `src` (-1 reads a zero)."""
    B, per = x.shape[0], math.prod(x.shape[1:])
    index = src.where(src >= 0, torch.tensor(per)).reshape(1, -1).expand(B, -1)
    zero = ctx.constant(torch.zeros(B, 1), float_=True)
    flat = ctx.emit("concat", {"tensors": [ctx.reshape(x, (B, per)), zero]}, {"axis": 1})
    return ctx.emit("gather", {"input": flat, "index": ctx.constant(index.to(torch.int32))}, {"dim": 1})


def _computed_kernel(ctx, x, weight, bias, groups, k, s, p):
    """A convolution whose kernel is computed (weight norm's g * v / ||v||) or shared: a
    FlexFlow conv2d owns its kernel, so the product is written out - the input patches by
    one per-sample gather with constant indices (padding reads an appended zero), then a
    batch_matmul per group with the kernel per sample. Exact, with exact gradients for
    input and kernel; costs a kh*kw times larger patch tensor."""
    B, C, H, W = x.shape
    w = ctx.tensor(weight)
    c_out = ctx.torch_shape(w)[0]
    if w.id not in ctx.lifted:
        unsupported("a convolution whose kernel depends on the input")
    positions = torch.arange(1, C * H * W + 1, dtype=torch.float64).reshape(1, C, H, W)
    cols = torch.nn.functional.unfold(positions, k, padding=p, stride=s)[0]      # (C*kh*kw, L), 0 = padding
    oh, ow = (H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1
    patches = _gather_or_zero(ctx, x, cols.reshape(-1).long() - 1)
    K = C // groups * k[0] * k[1]
    patches = ctx.reshape(patches, (B, groups, K, oh * ow))
    kernel = ctx.reshape(w, (B, groups, c_out // groups, K))
    y = ctx.reshape(ctx.emit("batch_matmul", {"A": kernel, "B": patches}), (B, c_out, oh, ow))
    return y if bias is None else binary(ctx, "add", y, _channel(ctx, bias))


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


def _interpolation(op, size, args, axis):
    """The (out, size) matrix of a separable interpolation `op(basis, *args)` along one
    spatial axis (axis 2: rows, 3: columns), read off PyTorch's own kernel."""
    shape = (size, 1, size, 1) if axis == 2 else (size, 1, 1, size)
    basis = torch.eye(size, dtype=torch.float64).reshape(shape)
    out = op(basis, *args)
    return out[:, 0, :, 0].t() if axis == 2 else out[:, 0, 0, :].t()


@register(aten.upsample_bilinear2d.vec)
def aten_upsample_bilinear2d(ctx, input, output_size, align_corners, scale_factors):
    """upsample_bilinear2d.vec(Tensor input, SymInt[]? output_size, bool align_corners, float[]? scale_factors) -> Tensor

    A linear map of each (H, W) plane: A_h @ x @ A_w^T, two batch_matmuls with constant
    interpolation matrices (PyTorch's own weights); exact forward and gradient."""
    x = to_float(ctx, ctx.tensor(input))
    B, C, H, W = x.shape
    op, args = aten.upsample_bilinear2d.vec, [output_size, align_corners, scale_factors]
    a_h, a_w = _interpolation(op, H, args, 2), _interpolation(op, W, args, 3)      # (H', H), (W', W)
    oh, ow = a_h.shape[0], a_w.shape[0]
    rows = ctx.constant(a_w.t().float().expand(B, C, W, ow).contiguous())
    y = ctx.emit("batch_matmul", {"A": x, "B": rows})                              # (B, C, H, W')
    cols = ctx.constant(a_h.float().expand(B, C, oh, H).contiguous())
    return ctx.emit("batch_matmul", {"A": cols, "B": y})                           # (B, C, H', W')
