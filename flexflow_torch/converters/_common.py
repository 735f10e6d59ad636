"""Helpers shared by converter families: broadcasting binary ops, expand."""

from __future__ import annotations

import torch

from ..context import Const, Param
from ..errors import UnsupportedByFlexFlowError
from ..graph import Value

#: stands in for +-inf in masks: FlexFlow has no where/masked_fill, masks become
#: multiply/add, and inf * 0 would be NaN (only fully-masked rows differ from torch)
NEG_LARGE = float(torch.finfo(torch.float32).min)
POS_LARGE = float(torch.finfo(torch.float32).max)


def finite(s):
    if s == float("inf"):
        return POS_LARGE
    if s == float("-inf"):
        return NEG_LARGE
    return s


def is_float(ctx, x):
    if isinstance(x, Value):
        return x.dtype == "DT_FLOAT"
    if isinstance(x, (Const, Param)):
        return x.tensor.is_floating_point()
    return isinstance(x, float)


def rank_of(x):
    if isinstance(x, Value):
        return x.rank
    if isinstance(x, (Const, Param)):
        return x.tensor.dim()
    return 0


def scalar_op(ctx, method, x, s):
    """x <method> s for a Python scalar s, never in place."""
    return ctx.emit(method, {"input": x}, {"scalar": float(s), "inplace": False})


def binary(ctx, method, a, b):
    """Element-wise a <method> b with NumPy broadcasting, for method in
    add/subtract/multiply/divide. Scalars use FlexFlow's scalar ops; division by a
    tensor is a * pow(b, -1) (FlexFlow's divide aborts in its CUDA set-up)."""
    sa, sb = ctx.scalar(a), ctx.scalar(b)
    if sb is not None and sa is None:
        x, s = _scalar_operand(ctx, a), finite(sb)
        if x.dtype != "DT_FLOAT" and method in ("add", "subtract", "multiply") and float(s).is_integer():
            return _int_scalar(ctx, method, x, int(s))
        if method == "add":
            return x if s == 0 else scalar_op(ctx, "scalar_add", x, s)
        if method == "subtract":
            return x if s == 0 else scalar_op(ctx, "scalar_sub", x, s)
        if method == "multiply":
            return x if s == 1 else scalar_op(ctx, "scalar_multiply", x, s)
        if method == "divide":
            return x if s == 1 else scalar_op(ctx, "scalar_true_divide", x, s)
    if sa is not None and sb is None:
        x, s = _scalar_operand(ctx, b), finite(sa)
        if x.dtype != "DT_FLOAT" and method == "subtract" and float(s).is_integer():
            neg = _int_scalar(ctx, "multiply", x, -1)
            return _int_scalar(ctx, "add", neg, int(s))
        if method in ("add", "multiply"):
            return binary(ctx, method, b, a)
        if method == "subtract":      # s - x
            neg = scalar_op(ctx, "scalar_multiply", x, -1.0)
            return neg if s == 0 else scalar_op(ctx, "scalar_add", neg, s)
        if method == "divide":        # s / x
            inv = ctx.emit("pow", {"input": to_float(ctx, x)}, {"exponent": -1.0})
            return inv if s == 1 else scalar_op(ctx, "scalar_multiply", inv, s)
    if method == "divide":
        inv = ctx.emit("pow", {"input": to_float(ctx, ctx.tensor(b, float_=True))}, {"exponent": -1.0})
        return binary(ctx, "multiply", a, inv)
    rank = max(rank_of(a), rank_of(b), 1)
    want_float = is_float(ctx, a) or is_float(ctx, b)
    x = ctx.tensor(a, rank=rank, float_=want_float if isinstance(a, Const) else None)
    y = ctx.tensor(b, rank=rank, float_=want_float if isinstance(b, Const) else None)
    return ctx.emit(method, {"x": x, "y": y})


def _int_scalar(ctx, method, x, s):
    """Integer tensor <op> integer scalar as a binary op with an int32 constant
    (the result keeps x's integer type, e.g. position ids feeding an embedding)."""
    if (method in ("add", "subtract") and s == 0) or (method == "multiply" and s == 1):
        return x
    const = ctx.constant(torch.full((1,) * x.rank, s, dtype=torch.int32))
    return ctx.emit(method, {"x": x, "y": const})


def _scalar_operand(ctx, x):
    """The tensor side of a tensor-scalar op; integer tensors whose result is
    float in PyTorch are made float first (FlexFlow's scalar ops keep the input
    dtype, so int64 * 0.5 would stay integer)."""
    v = ctx.tensor(x)
    out = ctx.out_val
    if v.dtype != "DT_FLOAT" and isinstance(out, torch.Tensor) and out.is_floating_point():
        v = to_float(ctx, v)
    return v


def to_float(ctx, x: Value) -> Value:
    """An integer tensor as float: multiply by a float one (FlexFlow casts the
    operand with the smaller DataType up; it has no cast op)."""
    if x.dtype == "DT_FLOAT":
        return x
    one = ctx.constant(torch.ones((1,) * x.rank), float_=True)
    return ctx.emit("multiply", {"x": x, "y": one})


def expand(ctx, x, shape):
    """Broadcast x to `shape` by adding zeros (FlexFlow has no expand)."""
    shape = tuple(shape)
    v = ctx.tensor(x, rank=len(shape))
    if v.shape == shape:
        return v
    zeros = ctx.constant(torch.zeros(shape), float_=v.dtype == "DT_FLOAT")
    if v.dtype == "DT_INT64":
        zeros = ctx.constant(torch.zeros(shape, dtype=torch.int32))
    return ctx.emit("add", {"x": zeros, "y": v})


def unsupported(what):
    raise UnsupportedByFlexFlowError(what)
