"""Element-wise arithmetic: add, sub, mul, div, neg, pow, exp, sqrt, casts."""

from __future__ import annotations

import torch

from ..registry import register
from ..context import Const
from ._common import CONST, PARAM, arg_kind, binary, expand, meta_of, operands, scalar_op, supported_if, to_float

aten = torch.ops.aten


def _scaled(ctx, other, alpha):
    return other if alpha in (None, 1) else binary(ctx, "multiply", other, alpha)


@register(aten.add.Tensor, aten.add.Scalar)
def aten_add(ctx, self, other, alpha=1):
    """add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor
    add.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor"""
    return binary(ctx, "add", self, _scaled(ctx, other, alpha))


@register(aten.sub.Tensor, aten.sub.Scalar)
def aten_sub(ctx, self, other, alpha=1):
    """sub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor
    sub.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor"""
    return binary(ctx, "subtract", self, _scaled(ctx, other, alpha))


@register(aten.rsub.Scalar, aten.rsub.Tensor)
def aten_rsub(ctx, self, other, alpha=1):
    """rsub.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor
    rsub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor

    other - alpha * self."""
    return binary(ctx, "subtract", other, _scaled(ctx, self, alpha))


@register(aten.mul.Tensor, aten.mul.Scalar)
def aten_mul(ctx, self, other):
    """mul.Tensor(Tensor self, Tensor other) -> Tensor
    mul.Scalar(Tensor self, Scalar other) -> Tensor"""
    return binary(ctx, "multiply", self, other)


@register(aten.div.Tensor, aten.div.Scalar)
def aten_div(ctx, self, other):
    """div.Tensor(Tensor self, Tensor other) -> Tensor
    div.Scalar(Tensor self, Scalar other) -> Tensor

    True division: a * pow(b, -1), or a scalar op."""
    return binary(ctx, "divide", self, other)


@register(aten.neg.default)
def aten_neg(ctx, self):
    """neg(Tensor self) -> Tensor"""
    return scalar_op(ctx, "scalar_multiply", ctx.tensor(self), -1.0)


@register(aten.pow.Tensor_Scalar)
def aten_pow(ctx, self, exponent):
    """pow.Tensor_Scalar(Tensor self, Scalar exponent) -> Tensor"""
    x = to_float(ctx, ctx.tensor(self))
    if exponent == 1:
        return x
    return ctx.emit("pow", {"input": x}, {"exponent": float(exponent)})


@register(aten.sqrt.default)
def aten_sqrt(ctx, self):
    """sqrt(Tensor self) -> Tensor   (pow 0.5)"""
    return ctx.emit("pow", {"input": to_float(ctx, ctx.tensor(self))}, {"exponent": 0.5})


@register(aten.reciprocal.default)
def aten_reciprocal(ctx, self):
    """reciprocal(Tensor self) -> Tensor   (pow -1)"""
    return ctx.emit("pow", {"input": to_float(ctx, ctx.tensor(self))}, {"exponent": -1.0})


@register(aten.rsqrt.default)
def aten_rsqrt(ctx, self):
    """rsqrt(Tensor self) -> Tensor"""
    return ctx.emit("rsqrt", {"input": to_float(ctx, ctx.tensor(self))})


def _unary(method, doc):
    def convert(ctx, self):
        return ctx.emit(method, {"x": to_float(ctx, ctx.tensor(self))})
    convert.__doc__ = doc
    convert.__name__ = "aten_" + method
    return convert


aten_exp = register(aten.exp.default)(_unary("exp", "exp(Tensor self) -> Tensor"))
aten_sin = register(aten.sin.default)(_unary("sin", "sin(Tensor self) -> Tensor"))
aten_cos = register(aten.cos.default)(_unary("cos", "cos(Tensor self) -> Tensor"))


@register(aten.maximum.default, aten.minimum.default)
def aten_maximum(ctx, self, other):
    """maximum(Tensor self, Tensor other) -> Tensor
    minimum(Tensor self, Tensor other) -> Tensor"""
    method = "max" if ctx.node.target is aten.maximum.default else "min"
    x, y = operands(ctx, self, other)
    shape = tuple(max(a, b) for a, b in zip(x.shape, y.shape))
    # FlexFlow's max/min do not broadcast at run time: expand both operands first
    return ctx.emit(method, {"x": expand(ctx, x, shape), "y": expand(ctx, y, shape)})


@register(aten.clone.default, aten.contiguous.default)
def aten_clone(ctx, self, memory_format=None):
    """clone(Tensor self, *, MemoryFormat? memory_format=None) -> Tensor
    contiguous(Tensor(a) self, *, MemoryFormat memory_format=0) -> Tensor(a)

    No op: FlexFlow tensors have no strides."""
    return self


@register(aten.alias.default, aten.lift_fresh_copy.default)
def aten_alias(ctx, self):
    """alias(Tensor(a) self) -> Tensor(a)
    lift_fresh_copy(Tensor self) -> Tensor

    No op."""
    return self


def _detach_support(node, self):
    stack, seen = [self], set()
    while stack:
        n = stack.pop()
        if not isinstance(n, torch.fx.Node) or n in seen or arg_kind(n) == CONST:
            continue
        seen.add(n)
        if arg_kind(n) == PARAM:
            return ("detach of a value computed from trainable parameters: FlexFlow has no stop-gradient, the "
                    "gradient PyTorch drops would train them")
        stack.extend(n.all_input_nodes)
    return None


@register(aten.detach.default, supports=supported_if(_detach_support))
def aten_detach(ctx, self):
    """detach(Tensor(a) self) -> Tensor(a)

    No op: FlexFlow has no stop-gradient, so this is only converted where no trainable
    parameter lies upstream (the gradient it would carry reaches nothing FlexFlow trains)."""
    return self


def _to_copy_support(node, self, dtype=None, **_):
    src = meta_of(self)
    if dtype is not None and not dtype.is_floating_point and getattr(src, "is_floating_point", lambda: False)() \
            and arg_kind(self) != CONST:
        return (f"a cast of float data to {dtype}: FlexFlow has no float-to-integer cast, the values would keep "
                "their fractions")
    return None


@register(aten._to_copy.default, supports=supported_if(_to_copy_support))
def aten__to_copy(ctx, self, dtype=None, layout=None, device=None, pin_memory=None, non_blocking=False,
                  memory_format=None):
    """_to_copy(Tensor self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None, bool non_blocking=False, MemoryFormat? memory_format=None) -> Tensor

    To float: multiply by a float one (FlexFlow's implicit up-cast). Integer to bool or
    to another integer type: kept as is - FlexFlow has no comparison or down-cast, so
    the values are assumed to be 0/1 (attention masks) or in range; see analyze().
    Float to integer is unsupported (the fraction would survive)."""
    if isinstance(self, Const):
        return Const(self.tensor.to(dtype) if dtype is not None else self.tensor)
    x = ctx.tensor(self)
    if dtype is not None and dtype.is_floating_point:
        return to_float(ctx, x)
    return x


@register(aten.dropout.default)
def aten_dropout(ctx, input, p, train):
    """dropout(Tensor input, float p, bool train) -> Tensor

    In a model converted for training, FlexFlow's dropout with the model's rate (even
    0, so the placement shows); in eval, nothing."""
    if not train:
        return input
    from .attention import dropout
    return dropout(ctx, to_float(ctx, ctx.tensor(input)), p)


@register(aten.native_dropout.default)
def aten_native_dropout(ctx, input, p, train):
    """native_dropout(Tensor input, float p, bool? train) -> (Tensor, Tensor)

    The mask output is not kept (None)."""
    return (aten_dropout(ctx, input, p, train), None)


@register(aten.where.self)
def aten_where(ctx, condition, self, other):
    """where.self(Tensor condition, Tensor self, Tensor other) -> Tensor

    c*self + (1-c)*other with c in {0, 1} (FlexFlow has no select)."""
    from .logical import select
    return select(ctx, condition, self, other)


@register(aten.masked_fill.Scalar, aten.masked_fill.Tensor)
def aten_masked_fill(ctx, self, mask, value):
    """masked_fill.Scalar(Tensor self, Tensor mask, Scalar value) -> Tensor
    masked_fill.Tensor(Tensor self, Tensor mask, Tensor value) -> Tensor"""
    from .logical import select
    return select(ctx, mask, value, self)


@register(aten.abs.default)
def aten_abs(ctx, self):
    """abs(Tensor self) -> Tensor

    relu(x) + relu(-x) (FlexFlow has no abs)."""
    x = to_float(ctx, ctx.tensor(self))
    pos = ctx.emit("relu", {"input": x}, {"inplace": False})
    neg = ctx.emit("relu", {"input": scalar_op(ctx, "scalar_multiply", x, -1.0)}, {"inplace": False})
    return ctx.emit("add", {"x": pos, "y": neg})
