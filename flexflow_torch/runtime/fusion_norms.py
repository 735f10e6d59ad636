"""Fused groups for the norms converters compose (converters/norm.py): LayerNorm and
RMSNorm from reduce_sum, scalar_multiply(1/n), subtract, multiply, scalar_add(eps),
pow(-0.5) and multiply, with their affine weight and bias when those are one-row tables
read per sample (embedding of zero ids, reshapes, multiply / add). See fusion.py for
what a group is and when it applies."""

from __future__ import annotations

import torch

from .enums import OpType
from .fusion import FusedGroup, _scalar


def _row_param(ctx, i, like):
    """An affine parameter read per sample at layer i: embedding of a one-row table with
    (batch, 1) constant ids, then reshapes to `like`'s rank with size-1 axes except the
    last. Returns (layers, output handle, ids handle) or None."""
    emb = ctx.at(i, OpType.EMBEDDING)
    if emb is None or emb.attrs.get("aggr") != "AGGR_MODE_NONE" or emb.attrs["num_embeddings"] != 1:
        return None
    ids = emb.inputs[0]
    if ids.owner_layer is not None or ids.dims != (like.dims[0], 1) or emb.attrs["embedding_dim"] != like.dims[-1]:
        return None
    layers, out = [emb], emb.outputs[0]
    while True:
        nxt = ctx.at(i + len(layers), OpType.RESHAPE)
        if nxt is None or nxt.inputs != [out]:
            break
        layers.append(nxt)
        out = nxt.outputs[0]
    if len(out.dims) != len(like.dims) or out.dims[0] != like.dims[0] or any(d != 1 for d in out.dims[1:-1]):
        return None
    return layers, out, ids


def _affine(ctx, i, y, kinds):
    """The per-sample weight (multiply) and bias (add) following the norm output `y`."""
    found, layers, out = {}, [], y
    for kind, op_type in kinds:
        row = _row_param(ctx, i + len(layers), y)
        if row is None:
            break
        op = ctx.at(i + len(layers) + len(row[0]), op_type)
        if op is None or sorted(map(id, op.inputs)) != sorted((id(out), id(row[1]))) or op.outputs[0].dims != y.dims:
            break
        found[kind] = (row[0][0], row[2])
        layers += row[0] + [op]
        out = op.outputs[0]
    return found, layers, out


class NormGroup(FusedGroup):
    """`fn(x, weight or None, bias or None)` over the last axis; the weight and bias
    are rows of one-row tables looked up with zero ids (checked at run time)."""

    def __init__(self, kind, layers, inputs, outputs, interior, fn, affine):
        super().__init__(layers, inputs, outputs, interior)
        self.kind, self.fn, self.affine = kind, fn, affine

    def applies(self, values):
        return all(_all_zero(layer.run, values[k]) for layer, k in self.affine.values())

    def fused(self, values, training):
        w, b = (self.affine[k][0].weights[0].value.reshape(-1) if k in self.affine else None
                for k in ("weight", "bias"))
        return [self.fn(values[0], w, b)], {}


def _all_zero(run, ids):
    cached = run.cache.get("zero_ids")
    if cached is not None and cached[0] is ids and cached[1] == ids._version:
        return cached[2]
    zero = not bool(ids.any())
    if not getattr(ids, "_ff_external", False):
        run.cache["zero_ids"] = (ids, ids._version, zero)
    return zero


def _norm_group(ctx, kind, core, x, y, fn):
    i = ctx.layers.index(core[-1]) + 1
    kinds = [("weight", OpType.MULTIPLY)] + ([("bias", OpType.ADD)] if kind == "layer_norm" else [])
    affine, extra, out = _affine(ctx, i, y, kinds)
    layers = core + extra
    ids = [ids for _, ids in affine.values()]
    produced = [h for layer in layers for h in layer.outputs]
    slots = {key: (emb, 1 + k) for k, (key, (emb, _)) in enumerate(affine.items())}
    return NormGroup(kind, layers, [x] + ids, [out], [h for h in produced if h is not out],
                     fn, slots)


def _sum_last(red, x):
    """`red` is a reduce_sum of `x` over its last axis, keeping it."""
    return red is not None and red.op_type == OpType.REDUCE_SUM and red.inputs == [x] and \
        list(red.attrs["axes"]) == [len(x.dims) - 1] and bool(red.attrs.get("keepdims"))


def _rsqrt_mean_eps(red, sc, add, pw, n):
    """eps of pow(sum * (1/n) + eps, -0.5) composed after the reduce_sum `red` as
    scalar_multiply, scalar_add and pow layers; None when they are not that."""
    if _scalar(sc, OpType.SCALAR_MULTIPLY, 1.0 / n) is None or sc.inputs != red.outputs:
        return None
    eps = _scalar(add, OpType.SCALAR_ADD)
    if eps is None or add.inputs != sc.outputs or _scalar(pw, OpType.POW, -0.5) is None or pw.inputs != add.outputs:
        return None
    return eps


def _layer_norm(ctx, i):
    red = ctx.at(i, OpType.REDUCE_SUM)
    if red is None:
        return None
    x = red.inputs[0]
    n = x.dims[-1]
    sc, sub, mul, red2, sc2, add, pw, mul2 = ctx.span(i + 1, 8)
    if not _sum_last(red, x) or x.data_type.name != "DT_FLOAT":
        return None
    if _scalar(sc, OpType.SCALAR_MULTIPLY, 1.0 / n) is None or sc.inputs != red.outputs:
        return None
    if sub is None or sub.op_type != OpType.SUBTRACT or sub.inputs != [x, sc.outputs[0]]:
        return None
    c = sub.outputs[0]
    if mul is None or mul.op_type != OpType.MULTIPLY or mul.inputs != [c, c] or not _sum_last(red2, mul.outputs[0]):
        return None
    eps = _rsqrt_mean_eps(red2, sc2, add, pw, n)
    if eps is None:
        return None
    if mul2 is None or mul2.op_type != OpType.MULTIPLY or mul2.inputs != [c, pw.outputs[0]]:
        return None

    def layer_norm(x, w, b):
        return torch.nn.functional.layer_norm(x, (n,), w, b, eps)
    return _norm_group(ctx, "layer_norm", [red, sc, sub, mul, red2, sc2, add, pw, mul2], x,
                       mul2.outputs[0], layer_norm)


def _rms_norm(ctx, i):
    sq = ctx.at(i, OpType.MULTIPLY)
    if sq is None or len(set(map(id, sq.inputs))) != 1:
        return None
    x = sq.inputs[0]
    n = x.dims[-1]
    red, sc, add, pw, mul = ctx.span(i + 1, 5)
    if not _sum_last(red, sq.outputs[0]) or x.data_type.name != "DT_FLOAT":
        return None
    eps = _rsqrt_mean_eps(red, sc, add, pw, n)
    if eps is None:
        return None
    if mul is None or mul.op_type != OpType.MULTIPLY or mul.inputs != [x, pw.outputs[0]]:
        return None

    def rms_norm(x, w, b):
        """The converted ops in their order (the same values); only the weight is
        broadcast instead of looked up per sample."""
        y = x * torch.pow((x * x).sum(-1, keepdim=True) * (1.0 / n) + eps, -0.5)
        return y if w is None else y * w
    return _norm_group(ctx, "rms_norm", [sq, red, sc, add, pw, mul], x, mul.outputs[0], rms_norm)
