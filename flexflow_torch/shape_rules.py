"""Output shape and dtype of each FlexFlow operator, as FlexFlow computes them.

Used while recording a program, so converters can rely on the shape of what
they emitted and FlexFlow's rules (equal ranks, <= 4 axes, last-axis softmax,
equal batch dims for batch_matmul, ...) are checked at conversion time."""

from __future__ import annotations

import math

from .errors import ShapeError, UnsupportedByFlexFlowError

MAX_RANK = 4
_DT_ORDER = ["DT_BOOLEAN", "DT_INT32", "DT_INT64", "DT_HALF", "DT_FLOAT", "DT_DOUBLE"]

UNARY = {"exp", "sin", "cos", "rsqrt", "pow", "gelu", "relu", "identity", "sigmoid", "tanh", "elu",
         "scalar_multiply", "scalar_add", "scalar_sub", "scalar_true_divide", "dropout", "softmax",
         "layer_norm", "rms_norm"}
BINARY = {"add", "subtract", "multiply", "divide", "max", "min"}


def broadcast(a, b):
    if len(a) != len(b):
        raise ShapeError(f"FlexFlow binary ops need equal ranks, got {a} and {b}")
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            raise ShapeError(f"shapes {a} and {b} do not broadcast")
        out.append(max(x, y))
    return tuple(out)


def promote(d1, d2):
    return d1 if _DT_ORDER.index(d1) >= _DT_ORDER.index(d2) else d2


def _check_rank(shape, method):
    if len(shape) > MAX_RANK:
        raise UnsupportedByFlexFlowError(
            f"{method} would produce a {len(shape)}-D tensor {shape}; FlexFlow tensors have at most "
            f"{MAX_RANK} axes")
    return shape


def infer(method, inputs, attrs):
    """[(shape, dtype), ...] for the outputs of `method`."""
    out = _infer(method, inputs, attrs)
    for shape, _ in out:
        _check_rank(shape, method)
    return out


def _infer(method, inputs, attrs):
    if method in UNARY:
        x = inputs["input"] if "input" in inputs else inputs["x"]
        if method == "softmax" and attrs.get("axis", -1) not in (-1, x.rank - 1):
            raise UnsupportedByFlexFlowError("FlexFlow softmax works on the last axis only")
        return [(x.shape, x.dtype)]
    if method in BINARY:
        x, y = inputs["x"], inputs["y"]
        return [(broadcast(x.shape, y.shape), promote(x.dtype, y.dtype))]
    if method == "dense":
        x = inputs["input"]
        return [(x.shape[:-1] + (attrs["out_dim"],), x.dtype)]
    if method == "embedding":
        x = inputs["input"]
        if x.dtype not in ("DT_INT32", "DT_INT64"):
            raise ShapeError(f"embedding ids must be int32/int64, got {x.dtype}")
        if attrs["aggr"]["$enum"].endswith("NONE"):
            return [(x.shape + (attrs["embedding_dim"],), "DT_FLOAT")]
        return [(x.shape[:-1] + (attrs["embedding_dim"],), "DT_FLOAT")]
    if method in ("conv2d", "pool2d"):
        x = inputs["input"]
        if x.rank != 4:
            raise ShapeError(f"{method} needs a 4-D NCHW input, got {x.shape}")
        n, c, h, w = x.shape
        oh = 1 + (h + 2 * attrs["padding_h"] - attrs["kernel_h"]) // attrs["stride_h"]
        ow = 1 + (w + 2 * attrs["padding_w"] - attrs["kernel_w"]) // attrs["stride_w"]
        oc = attrs["out_channels"] if method == "conv2d" else c
        return [((n, oc, oh, ow), x.dtype)]
    if method == "flat":
        x = inputs["input"]
        return [((x.shape[0], math.prod(x.shape[1:])), "DT_FLOAT")]
    if method == "reshape":
        x = inputs["input"]
        shape = tuple(attrs["shape"])
        if any(s <= 0 for s in shape) or math.prod(shape) != math.prod(x.shape):
            raise ShapeError(f"cannot reshape {x.shape} to {shape}")
        return [(shape, x.dtype)]
    if method == "transpose":
        x = inputs["input"]
        perm = list(attrs["perm"])
        if sorted(perm) != list(range(x.rank)):
            raise ShapeError(f"bad permutation {perm} for {x.shape}")
        return [(tuple(x.shape[p] for p in perm), x.dtype)]
    if method == "concat":
        ts = inputs["tensors"]
        axis = attrs["axis"] % ts[0].rank
        base = list(ts[0].shape)
        for t in ts[1:]:
            if t.rank != len(base) or any(a != b for i, (a, b) in enumerate(zip(t.shape, base)) if i != axis):
                raise ShapeError(f"concat axis {axis}: incompatible shapes {[t.shape for t in ts]}")
            if t.dtype != ts[0].dtype:
                raise ShapeError(f"concat needs equal dtypes, got {[t.dtype for t in ts]}")
        base[axis] = sum(t.shape[axis] for t in ts)
        return [(tuple(base), ts[0].dtype)]
    if method == "split":
        x = inputs["input"]
        axis, sizes = attrs["axis"], attrs["sizes"]
        if isinstance(sizes, int):
            sizes = [x.shape[axis] // sizes] * sizes
        if sum(sizes) != x.shape[axis]:
            raise ShapeError(f"split sizes {sizes} do not add up to {x.shape[axis]}")
        return [(x.shape[:axis] + (s,) + x.shape[axis + 1:], x.dtype) for s in sizes]
    if method == "reduce_sum":
        x = inputs["input"]
        axes = set(attrs["axes"])
        if attrs.get("keepdims"):
            return [(tuple(1 if i in axes else s for i, s in enumerate(x.shape)), x.dtype)]
        return [(tuple(s for i, s in enumerate(x.shape) if i not in axes), x.dtype)]
    if method == "batch_matmul":
        a, b = inputs["A"], inputs["B"]
        if a.rank != b.rank or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]:
            raise ShapeError(f"batch_matmul needs equal batch dims and matching K: {a.shape} @ {b.shape}")
        return [(a.shape[:-1] + (b.shape[-1],), promote(a.dtype, b.dtype))]
    if method == "gather":
        return [(inputs["index"].shape, inputs["input"].dtype)]
    raise ShapeError(f"no shape rule for FlexFlow method {method!r}")
