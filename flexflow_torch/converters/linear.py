"""Linear layers and matrix products: linear, addmm (GPT-2's Conv1D), mm, bmm, matmul."""

from __future__ import annotations

import math

import torch

from ..registry import register
from ..context import Param
from ..errors import ShapeError
from ..fused_ops import dense as fused_dense
from ..graph import enum
from ._common import binary, expand

aten = torch.ops.aten


def _dense(ctx, x, weight: Param, bias, activation="AC_MODE_NONE", transpose=False):
    """FlexFlow dense named after the weight's module; kernel (out, in)."""
    x = ctx.tensor(x)
    out_dim = weight.shape[1] if transpose else weight.shape[0]
    weights = [{"param_id": 0, "key": ctx.weight(weight, transpose=transpose)}]
    use_bias = bias is not None
    if use_bias:
        weights.append({"param_id": 1, "key": ctx.weight(bias)})
    return ctx.emit("dense", {"input": x},
                    {"out_dim": out_dim, "activation": enum("ActiMode." + activation), "use_bias": use_bias},
                    name=weight.layer_name, weights=weights)


def matmul(ctx, a, b):
    """a @ b with torch.matmul semantics on FlexFlow's batch_matmul (equal batch
    dims, same rank): 1-D operands are unsqueezed, batch dims broadcast by expand."""
    x, y = ctx.tensor(a), ctx.tensor(b)
    out_shape = ctx.out_shape
    if x.rank == 1:
        x = ctx.reshape(x, (1,) + x.shape)
    if y.rank == 1:
        y = ctx.reshape(y, y.shape + (1,))
    batch = torch.broadcast_shapes(x.shape[:-2], y.shape[:-2]) if max(x.rank, y.rank) > 2 else ()
    if not batch:
        batch = (1,)
    x = expand(ctx, x, tuple(batch) + x.shape[-2:])
    y = expand(ctx, y, tuple(batch) + y.shape[-2:])
    if len(batch) > 2:
        lead = math.prod(batch)
        x = ctx.reshape(x, (lead,) + x.shape[-2:])
        y = ctx.reshape(y, (lead,) + y.shape[-2:])
    out = ctx.emit("batch_matmul", {"A": x, "B": y})
    return ctx.reshape(out, out_shape or (1,))


def _linear_via_matmul(ctx, x, weight: Param, bias, transpose=False):
    """x @ W^T for a weight FlexFlow cannot own as a dense kernel (tied): W comes
    from the parameter's table as (batch, out, in) and feeds batch_matmul."""
    x = ctx.tensor(x)
    B = ctx.batch_size
    w = ctx.plan.param_matrix(ctx, weight)          # (B, rows, cols) = (B, out, in) or (B, in, out)
    wt = w if transpose else ctx.transpose(w, [0, 2, 1])   # (B, in, out)
    k = wt.shape[1]
    if x.shape[0] % B or math.prod(x.shape) % (B * k):
        raise ShapeError(f"cannot align {x.shape} with the batch size {B} for a tied weight")
    x3 = ctx.reshape(x, (B, math.prod(x.shape) // (B * k), k))
    y = ctx.emit("batch_matmul", {"A": x3, "B": wt})
    y = ctx.reshape(y, x.shape[:-1] + (wt.shape[2],))
    return y if bias is None else binary(ctx, "add", y, bias)


@register(aten.linear.default)
def aten_linear(ctx, input, weight, bias=None):
    """linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor"""
    if isinstance(weight, Param) and ctx.is_native(weight):
        native_bias = bias if isinstance(bias, Param) and ctx.is_native(bias) else None
        y = _dense(ctx, input, weight, native_bias)
        return y if bias is None or native_bias is not None else binary(ctx, "add", y, bias)
    if isinstance(weight, Param):
        return _linear_via_matmul(ctx, input, weight, bias)
    y = matmul(ctx, input, _transposed(ctx, weight))
    return y if bias is None else binary(ctx, "add", y, bias)


def _transposed(ctx, w):
    w = ctx.tensor(w)
    return ctx.transpose(w, list(range(w.rank - 2)) + [w.rank - 1, w.rank - 2])


@register(fused_dense)
def fused_dense_activation(ctx, input, weight, bias=None, activation="relu"):
    """dense(Tensor input, Tensor weight, Tensor? bias, str activation) -> Tensor"""
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
        y = _linear_via_matmul(ctx, mat1, mat2, None, transpose=True)
    else:
        y = binary(ctx, "multiply", matmul(ctx, mat1, mat2), alpha)
    return binary(ctx, "add", y, binary(ctx, "multiply", self, beta))


@register(aten.mm.default, aten.bmm.default, aten.matmul.default)
def aten_matmul(ctx, self, other=None, mat2=None):
    """matmul(Tensor self, Tensor other) -> Tensor   (also mm, bmm)"""
    return matmul(ctx, self, other if other is not None else mat2)
