"""Linear layers and matrix products: linear, addmm (GPT-2's Conv1D), mm, bmm, matmul.

FlexFlow's batch_matmul needs equal batch axes and, with data parallelism, operands
partitioned alike (batch_matmul.cc:168-171): every product here is per sample, with
parameters and constants as per-sample copies."""

from __future__ import annotations

import math

import torch

from ..registry import register
from ..context import Merged, Param
from ..errors import ConversionError
from ..fused_ops import dense as fused_dense
from ..graph import enum
from ._common import CONST, FIXED, PARAM, arg_kind, binary, expand, meta_of, shape_of, supported_if, to_float

aten = torch.ops.aten


def _float_operands(*args):
    """PyTorch's products take operands of one floating-point dtype."""
    dtypes = {getattr(meta_of(a), "dtype", None) for a in args if a is not None}
    dtypes.discard(None)
    if len(dtypes) > 1 or any(not d.is_floating_point for d in dtypes):
        return f"operands of dtypes {sorted(map(str, dtypes))}: PyTorch's product rejects them"
    return None


def _linear_support(node, input, weight, bias=None):
    return _float_operands(input, weight)


def _dense(ctx, x, weight: Param, bias, activation="AC_MODE_NONE", transpose=False):
    """FlexFlow dense named after the weight's module; kernel (out, in). Over the last
    axis, so a batch-merging view (context.Merged) is computed unmerged."""
    if isinstance(x, Merged):
        y = _dense(ctx, x.value, weight, bias, activation, transpose)
        return Merged(y, x.shape[:-1] + (y.shape[-1],))
    x = to_float(ctx, ctx.tensor(x))
    out_dim = weight.shape[1] if transpose else weight.shape[0]
    weights = [{"param_id": 0, "key": ctx.weight(weight, {"transpose": transpose})}]
    use_bias = bias is not None
    if use_bias:
        weights.append({"param_id": 1, "key": ctx.weight(bias)})
    return ctx.emit("dense", {"input": x},
                    {"out_dim": out_dim, "activation": enum("ActiMode." + activation), "use_bias": use_bias},
                    name=weight.layer_name, weights=weights)


def matmul(ctx, a, b):
    """a @ b with torch.matmul semantics on FlexFlow's batch_matmul: 1-D operands are
    unsqueezed, leading axes broadcast by expand, the batch stays on axis 0."""
    x, y = ctx.tensor(a), ctx.tensor(b)
    sx, sy = ctx.torch_shape(x), ctx.torch_shape(y)
    out_shape = ctx.out_shape
    if len(sx) == 1 or len(sy) == 1 or (x.id in ctx.lifted and y.id in ctx.lifted):
        raise ConversionError(f"matmul of {sx} and {sy}: only products with a batched operand of rank >= 2")
    if len(sx) == 2 and x.id not in ctx.lifted and y.id in ctx.lifted:
        # rows of a (batch, K) activation times a matrix that depends on no input: per sample
        # a (1, K) @ (K, N) product
        B, K = sx
        w = ctx.reshape(to_float(ctx, y), (B,) + tuple(sy))
        out = ctx.emit("batch_matmul", {"A": ctx.reshape(to_float(ctx, x), (B, 1, K)), "B": w})
        return ctx.reshape(out, out_shape)
    if len(sx) == len(sy) == 2 and x.id not in ctx.lifted and y.id not in ctx.lifted:
        # rows of one activation against columns of another (CLIP's text x image logits): a
        # product across samples, as one (1, M, K) @ (1, K, N) batch (one GPU only)
        x3, y3 = ctx.reshape(to_float(ctx, x), (1,) + tuple(sx)), ctx.reshape(to_float(ctx, y), (1,) + tuple(sy))
        return ctx.reshape(ctx.emit("batch_matmul", {"A": x3, "B": y3}), out_shape)
    rank = max(len(sx), len(sy))
    x, y = (ctx.as_torch_rank(to_float(ctx, v), rank) for v in (x, y))
    x, y = (v if v.rank == rank else ctx.reshape(v, (1,) * (rank - v.rank) + v.shape) for v in (x, y))
    lead = tuple(max(p, q) for p, q in zip(x.shape[:-2], y.shape[:-2]))
    x = expand(ctx, x, lead + x.shape[-2:])
    y = expand(ctx, y, lead + y.shape[-2:])
    if x.rank == 2:
        x, y = ctx.reshape(x, (x.shape[0], 1, x.shape[1])), ctx.reshape(y, (y.shape[0],) + y.shape[1:] + (1,))
    out = ctx.emit("batch_matmul", {"A": x, "B": y})
    return ctx.reshape(out, out_shape or (1,))


def _via_table(ctx, x, weight: Param, bias, transposed):
    """x @ W^T (`transposed`) or x @ W for a weight FlexFlow cannot own as a dense
    kernel (tied, shared): W from its table, G copies (see param_plan), feeds
    batch_matmul with the rows of x grouped as (G, rows, K)."""
    x = to_float(ctx, ctx.tensor(x))
    w = ctx.plan.matrix(ctx, weight, transposed)          # (G, K, N)
    G, K = w.shape[0], w.shape[1]
    if x.id in ctx.lifted or math.prod(x.shape) % (G * K):
        raise ConversionError(f"cannot align {x.shape} with the table copies {G} for the shared weight "
                              f"{weight.fqn}")
    x3 = ctx.reshape(x, (G, math.prod(x.shape) // (G * K), K))
    y = ctx.reshape(ctx.emit("batch_matmul", {"A": x3, "B": w}), x.shape[:-1] + (w.shape[2],))
    return y if bias is None else binary(ctx, "add", y, bias)


@register(aten.linear.default, supports=supported_if(_linear_support))
def aten_linear(ctx, input, weight, bias=None):
    """linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor"""
    if isinstance(weight, Param) and ctx.is_native(weight):
        native_bias = bias if isinstance(bias, Param) and ctx.is_native(bias) else None
        y = _dense(ctx, input, weight, native_bias)
        return y if bias is None or native_bias is not None else binary(ctx, "add", y, bias)
    if isinstance(weight, Param):
        return _via_table(ctx, input, weight, bias, transposed=True)
    w = ctx.tensor(weight)
    y = matmul(ctx, input, ctx.transpose(w, list(range(w.rank - 2)) + [w.rank - 1, w.rank - 2]))
    return y if bias is None else binary(ctx, "add", y, bias)


@register(fused_dense, supports=supported_if(lambda node, input, weight, bias, activation: _float_operands(input, weight)))
def fused_dense_activation(ctx, input, weight, bias, activation):
    """flexflow_torch::dense(Tensor input, Tensor weight, Tensor? bias, str activation) -> Tensor

    FlexFlow's dense with a fused RELU or SIGMOID."""
    act = {"relu": "AC_MODE_RELU", "sigmoid": "AC_MODE_SIGMOID"}[activation]
    return _dense(ctx, input, weight, bias, activation=act)


@register(aten.addmm.default)
def aten_addmm(ctx, self, mat1, mat2, beta=1, alpha=1):
    """addmm(Tensor self, Tensor mat1, Tensor mat2, *, Scalar beta=1, Scalar alpha=1) -> Tensor

    With a (in, out) parameter as mat2 (HF Conv1D) this is a dense layer whose
    kernel is the transposed parameter."""
    if (isinstance(mat2, Param) and ctx.is_native(mat2) and beta == 1 and alpha == 1
            and isinstance(self, Param) and ctx.is_native(self) and len(self.shape) == 1):
        return _dense(ctx, mat1, mat2, self, transpose=True)
    if isinstance(mat2, Param) and alpha == 1:
        y = _via_table(ctx, mat1, mat2, None, transposed=False)
    else:
        y = binary(ctx, "multiply", matmul(ctx, mat1, mat2), alpha)
    return binary(ctx, "add", y, binary(ctx, "multiply", self, beta))


def _matmul_support(node, self, other=None, mat2=None, **_):
    b = other if other is not None else mat2
    if _float_operands(self, b):
        return _float_operands(self, b)
    ranks = [len(shape_of(self)), len(shape_of(b))]
    if 1 in ranks:
        return f"a matrix product with a 1-D operand (ranks {ranks[0]} and {ranks[1]})"
    if arg_kind(self) in (CONST, PARAM, FIXED) and arg_kind(b) in (CONST, PARAM, FIXED):
        return "a matrix product of two values that depend on no input (FlexFlow computes per sample)"
    return None


def _product(ctx, a, b):
    if isinstance(b, Param) and len(b.shape) == 2:
        return _via_table(ctx, a, b, None, transposed=False)
    return matmul(ctx, a, b)


@register(aten.matmul.default, supports=supported_if(_matmul_support))
def aten_matmul(ctx, self, other):
    """matmul(Tensor self, Tensor other) -> Tensor"""
    return _product(ctx, self, other)


@register(aten.mm.default, aten.bmm.default, supports=supported_if(_matmul_support))
def aten_mm(ctx, self, mat2):
    """mm(Tensor self, Tensor mat2) -> Tensor
    bmm(Tensor self, Tensor mat2) -> Tensor"""
    return _product(ctx, self, mat2)
