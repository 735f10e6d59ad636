"""Helpers shared by converter families: broadcasting binary ops, scalar ops, casts,
expand, softmax.

FlexFlow's element-wise kernels compute in HALF or FLOAT only (element_binary_kernels.cu
forward_kernel_wrapper:109; INT64 aborts at init, INT32 at the first forward), so all
arithmetic is float: integer operands (masks, ids) are made float first, exactly for
integers below 2**24."""

from __future__ import annotations

import torch

from ..context import Const, Param
from ..errors import UnsupportedByFlexFlowError
from ..graph import Value
from .. import registry

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


def scalar_op(ctx, method, x, s):
    """x <method> s for a Python scalar s, on a float tensor, never in place (in place,
    FlexFlow's backward adds the gradient to itself: element_unary.cc:683-688)."""
    return ctx.emit(method, {"input": to_float(ctx, x)}, {"scalar": float(s), "inplace": False})


def to_float(ctx, x: Value) -> Value:
    """An integer tensor as float: multiply by a float one (FFModel::binary inserts a
    cast of the smaller DataType, element_binary.cc:46-89; FlexFlow has no cast op)."""
    if x.dtype == "DT_FLOAT":
        return x
    one = ctx.constant(torch.ones((x.shape[0],) + (1,) * (x.rank - 1)), float_=True)
    return ctx.emit("multiply", {"x": x, "y": one})


def operands(ctx, a, b):
    """Both operands of an element-wise op as float FlexFlow tensors of equal rank.

    Constants and parameters become per-sample copies aligned to the activation they
    meet; two values that depend on no input stay lifted (see context.py)."""
    real = next((v for v in (a, b) if isinstance(v, Value) and v.id not in ctx.lifted), None)
    x, y = ctx.tensor(a, like=real, float_=True), ctx.tensor(b, like=real, float_=True)
    real = real or next((v for v in (x, y) if v.id not in ctx.lifted), None)
    if real is not None:
        rank = max(ctx.torch_rank(x), ctx.torch_rank(y))
        x, y = (_leading_ones(ctx, ctx.as_torch_rank(v, rank), rank) for v in (x, y))
    else:
        rank = max(ctx.torch_rank(x), ctx.torch_rank(y))
        x, y = (_lifted_to_rank(ctx, v, rank) for v in (x, y))
        if x.rank != y.rank:                     # one broadcast form, one virtual form
            x, y = (_virtual(ctx, v, rank) for v in (x, y))
    return to_float(ctx, x), to_float(ctx, y)


def _leading_ones(ctx, v, rank):
    """An activation of lower rank aligned by leading 1s (PyTorch broadcasting). Its
    axis 0 then no longer holds the batch: FlexFlow's data parallelism cannot split it,
    and the rules mark the program single-GPU."""
    return v if v.rank >= rank else ctx.reshape(v, (1,) * (rank - v.rank) + v.shape)


def _lifted_to_rank(ctx, v, rank):
    shape = ctx.torch_shape(v)
    aligned = (1,) * (rank - len(shape)) + tuple(shape)
    return ctx.as_torch_rank(v, rank) if aligned[0] == 1 else _virtual(ctx, v, rank)


def _virtual(ctx, v, rank):
    """A lifted value as (batch, *PyTorch shape aligned to `rank`)."""
    shape = ctx.torch_shape(v)
    aligned = (1,) * (rank - len(shape)) + tuple(shape)
    return ctx.reshape(v, (ctx.batch_size,) + aligned)


def binary(ctx, method, a, b):
    """Element-wise a <method> b with NumPy broadcasting, method in add/subtract/
    multiply/divide. Scalars use FlexFlow's scalar ops; division by a tensor is
    a * pow(b, -1) (FlexFlow's divide aborts in its kernel set-up)."""
    sa, sb = ctx.scalar(a), ctx.scalar(b)
    if sb is not None and sa is None:
        x, s = ctx.tensor(a), finite(sb)
        if method == "add":
            return x if s == 0 else scalar_op(ctx, "scalar_add", x, s)
        if method == "subtract":
            return x if s == 0 else scalar_op(ctx, "scalar_sub", x, s)
        if method == "multiply":
            return to_float(ctx, x) if s == 1 else scalar_op(ctx, "scalar_multiply", x, s)
        if method == "divide":
            return to_float(ctx, x) if s == 1 else scalar_op(ctx, "scalar_true_divide", x, s)
    if sa is not None and sb is None:
        x, s = ctx.tensor(b), finite(sa)
        if method in ("add", "multiply"):
            return binary(ctx, method, b, a)
        if method == "subtract":      # s - x
            neg = scalar_op(ctx, "scalar_multiply", x, -1.0)
            return neg if s == 0 else scalar_op(ctx, "scalar_add", neg, s)
        if method == "divide":        # s / x
            inv = ctx.emit("pow", {"input": to_float(ctx, x)}, {"exponent": -1.0})
            return inv if s == 1 else scalar_op(ctx, "scalar_multiply", inv, s)
    if method == "divide":
        x, y = operands(ctx, a, b)
        return ctx.emit("multiply", {"x": x, "y": ctx.emit("pow", {"input": y}, {"exponent": -1.0})})
    x, y = operands(ctx, a, b)
    return ctx.emit(method, {"x": x, "y": y})


def expand(ctx, x, shape):
    """Broadcast x to the PyTorch shape `shape` by adding zeros (FlexFlow has no
    expand)."""
    shape = tuple(shape)
    v = ctx.tensor(x)
    if v.id in ctx.lifted and shape[0] == ctx.batch_size:     # a per-sample copy meets the batch
        v = ctx.as_torch_rank(v, len(shape))
        if v.shape == shape:
            return ctx.emit("identity", {"input": v})
        return ctx.emit("add", {"x": ctx.constant(torch.zeros(shape)), "y": to_float(ctx, v)})
    if v.id not in ctx.lifted and v.shape == shape:
        return v
    return binary(ctx, "add", Const(torch.zeros(shape)), v)


def softmax(ctx, x: Value) -> Value:
    """Softmax over the last axis, composed from operators whose FlexFlow backward is
    exact: FlexFlow's softmax copies its gradient through (softmax.cu:254-258), right
    only for a final softmax under a cross-entropy loss.

    p = e * pow(sum(e), -1), e = exp(x - m), where m is the row maximum from a max
    pool2d over the last axis; softmax is shift invariant, so m's gradient (which
    FlexFlow routes to the argmax) is zero up to rounding."""
    x = to_float(ctx, x)
    shape = x.shape
    n = shape[-1]
    x4 = ctx.reshape(x, (shape[0],) + (1,) * (4 - x.rank) + shape[1:]) if x.rank < 4 else x
    if x4.rank != 4:
        raise UnsupportedByFlexFlowError(f"softmax of a {x.rank}-D tensor")
    m = ctx.emit("pool2d", {"input": x4}, {"kernel_h": 1, "kernel_w": n, "stride_h": 1, "stride_w": n,
                                           "padding_h": 0, "padding_w": 0,
                                           "pool_type": {"$enum": "PoolType.POOL_MAX"},
                                           "activation": {"$enum": "ActiMode.AC_MODE_NONE"}})
    e = ctx.emit("exp", {"x": ctx.emit("subtract", {"x": x4, "y": m})})
    total = ctx.emit("reduce_sum", {"input": e}, {"axes": [3], "keepdims": True})
    p = ctx.emit("multiply", {"x": e, "y": ctx.emit("pow", {"input": total}, {"exponent": -1.0})})
    return ctx.reshape(p, shape)


def unsupported(what):
    raise UnsupportedByFlexFlowError(what)


def is_param(x):
    return isinstance(x, Param)


# ----------------------------------------------------------------------------- support checks
#: node.meta key set by analysis.annotate_kinds: how a node's value reaches FlexFlow
KIND = "flexflow_torch.kind"
CONST, PARAM, FIXED, INPUT = "const", "param", "fixed", "input"


def arg_kind(a) -> str:
    """"const" (folded: buffers, constants, Python values), "param" (a trainable
    parameter), "fixed" (computed from parameters and constants only: a per-sample copy
    in FlexFlow) or "input" (depends on a user input)."""
    if not isinstance(a, torch.fx.Node):
        return CONST
    return a.meta.get(KIND, INPUT)


def meta_of(a):
    """The captured value (FakeTensor) of a node argument, or the argument itself."""
    return a.meta.get("val") if isinstance(a, torch.fx.Node) else a


def shape_of(a):
    v = meta_of(a)
    return tuple(v.shape) if hasattr(v, "shape") else ()


def supported_if(check):
    """A registry `supports(node)` from `check(node, **schema arguments)` (FX nodes
    left as nodes) returning None or the reason the node cannot be converted."""
    def supports(node):
        return check(node, **registry.bind_arguments(node.target, node.args, node.kwargs))
    supports.__name__ = getattr(check, "__name__", "supports")
    return supports


_aten = torch.ops.aten
#: targets whose FlexFlow result is float whatever PyTorch's dtype (arithmetic is float)
_FLOAT_RESULTS = {
    _aten.add.Tensor, _aten.add.Scalar, _aten.sub.Tensor, _aten.sub.Scalar, _aten.rsub.Tensor, _aten.rsub.Scalar,
    _aten.mul.Tensor, _aten.mul.Scalar, _aten.div.Tensor, _aten.div.Scalar, _aten.neg.default,
    _aten.pow.Tensor_Scalar, _aten.abs.default, _aten.maximum.default, _aten.minimum.default,
    _aten.expand.default, _aten.cumsum.default, _aten.where.self, _aten.masked_fill.Scalar,
    _aten.masked_fill.Tensor, _aten.bitwise_and.Tensor, _aten.bitwise_or.Tensor, _aten.bitwise_not.default,
    _aten.logical_and.default, _aten.logical_or.default, _aten.logical_not.default, _aten.sum.dim_IntList,
    _aten.sum.default, _aten.mean.dim, _aten.mean.default, _aten.constant_pad_nd.default}


def becomes_float(a) -> bool:
    """Whether FlexFlow holds `a` as float although PyTorch may compute integers: data
    depending on an input that went through arithmetic."""
    stack, seen = [a], set()
    while stack:
        n = stack.pop()
        if not isinstance(n, torch.fx.Node) or n in seen or arg_kind(n) == CONST or n.op != "call_function":
            continue
        seen.add(n)
        if n.target in _FLOAT_RESULTS:
            return True
        stack.extend(n.all_input_nodes)
    return False
