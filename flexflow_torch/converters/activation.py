"""Activations and softmax."""

from __future__ import annotations

import math

import torch

from ..registry import register
from ._common import binary, scalar_op, shape_of, softmax, supported_if, to_float, unsupported

aten = torch.ops.aten


@register(aten.relu.default)
def aten_relu(ctx, self):
    """relu(Tensor self) -> Tensor"""
    return ctx.emit("relu", {"input": to_float(ctx, ctx.tensor(self))}, {"inplace": False})


@register(aten.sigmoid.default)
def aten_sigmoid(ctx, self):
    """sigmoid(Tensor self) -> Tensor"""
    return ctx.emit("sigmoid", {"input": to_float(ctx, ctx.tensor(self))})


@register(aten.tanh.default)
def aten_tanh(ctx, self):
    """tanh(Tensor self) -> Tensor"""
    return ctx.emit("tanh", {"input": to_float(ctx, ctx.tensor(self))})


@register(aten.silu.default)
def aten_silu(ctx, self):
    """silu(Tensor self) -> Tensor

    x * sigmoid(x) (FlexFlow's fused SiLU op is inference-only)."""
    x = to_float(ctx, ctx.tensor(self))
    return ctx.emit("multiply", {"x": x, "y": ctx.emit("sigmoid", {"input": x})})


@register(aten.gelu.default)
def aten_gelu(ctx, self, approximate="none"):
    """gelu(Tensor self, *, str approximate='none') -> Tensor

    'none' is FlexFlow's exact gelu; 'tanh' is composed from pow/tanh/scalar ops:
    0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x^3)))."""
    x = to_float(ctx, ctx.tensor(self))
    if approximate == "none":
        return ctx.emit("gelu", {"input": x}, {"inplace": False})
    cube = ctx.emit("pow", {"input": x}, {"exponent": 3.0})
    inner = binary(ctx, "add", x, scalar_op(ctx, "scalar_multiply", cube, 0.044715))
    t = ctx.emit("tanh", {"input": scalar_op(ctx, "scalar_multiply", inner, math.sqrt(2.0 / math.pi))})
    half = scalar_op(ctx, "scalar_multiply", scalar_op(ctx, "scalar_add", t, 1.0), 0.5)
    return binary(ctx, "multiply", x, half)


def _softmax_support(node, self, dim, **_):
    if len(shape_of(self)) > 4:
        return f"softmax of a {len(shape_of(self))}-D tensor (FlexFlow tensors have at most 4 axes)"
    return None


@register(aten._softmax.default, supports=supported_if(_softmax_support))
def aten__softmax(ctx, self, dim, half_to_float):
    """_softmax(Tensor self, int dim, bool half_to_float) -> Tensor

    Composed (see _common.softmax): FlexFlow's own softmax passes its gradient
    through unchanged. Other axes than the last are moved last and back."""
    return _softmax_along(ctx, self, dim)


@register(aten.softmax.int, supports=supported_if(_softmax_support))
def aten_softmax(ctx, self, dim, dtype=None):
    """softmax.int(Tensor self, int dim, ScalarType? dtype=None) -> Tensor"""
    return _softmax_along(ctx, self, dim)


def _softmax_along(ctx, self, dim):
    x = ctx.tensor(self)
    dim = dim % x.rank
    if dim == x.rank - 1:
        return softmax(ctx, x)
    perm = [i for i in range(x.rank) if i != dim] + [dim]
    inv = [perm.index(i) for i in range(x.rank)]
    return ctx.transpose(softmax(ctx, ctx.transpose(x, perm)), inv)


@register(aten.leaky_relu.default)
def aten_leaky_relu(ctx, self, negative_slope=0.01):
    """leaky_relu(Tensor self, Scalar negative_slope=0.01) -> Tensor

    relu(x) - slope*relu(-x)."""
    x = to_float(ctx, ctx.tensor(self))
    pos = ctx.emit("relu", {"input": x}, {"inplace": False})
    neg = ctx.emit("relu", {"input": scalar_op(ctx, "scalar_multiply", x, -1.0)}, {"inplace": False})
    return binary(ctx, "subtract", pos, scalar_op(ctx, "scalar_multiply", neg, float(negative_slope)))


def _log_softmax_support(node):
    return ("log_softmax: FlexFlow has no log; end the model at the logits and use "
            "ffmodel.softmax with LOSS_SPARSE_CATEGORICAL_CROSSENTROPY instead")


@register(aten._log_softmax.default, supports=_log_softmax_support)
def aten__log_softmax(ctx, self, dim, half_to_float):
    """_log_softmax(Tensor self, int dim, bool half_to_float) -> Tensor

    Never converted: registered so that the report gives the reason."""
    unsupported(_log_softmax_support(ctx.node))
