"""Fused groups: compositions of FlexFlow operators that the embedded runtime runs as one
PyTorch computation with the same values and gradients up to float rounding.

Converted programs build softmax and the per-position cross-entropy head from operators
whose FlexFlow backward is exact (converters/_common.py softmax, heads.py). Run layer
by layer they cost several passes over their tensors where PyTorch's fused kernels make
one. A group is recognised from the recorded layers at the first forward; it only
applies when its inner tensors are read by nothing outside it and every inner
gradient coefficient is 1 (no overwriting or doubling backward among them), so the
group's gradient w.r.t. its inputs is the composition's. Its inner tensors are
recomputed unfused when read (executor.GroupStep.materialize).

- `softmax`: pool2d (row max), subtract, exp, reduce_sum, pow(-1), multiply ->
  torch.softmax (the max only shifts the rows: its gradient is rounding noise).
- `head`: CrossEntropyHead's softmax (FlexFlow's, copy-through gradient), gather of
  the label's probability, multiply(p, p), scalar_multiply(0.5), reduce_sum, subtract
  -> one autograd function: out = sum(p^2)/2 - p[label], dp = g p - onehot(label) g.
  FlexFlow semantics only (exact mode builds no such head).

`FLEXFLOW_TORCH_FUSION=0` runs every layer on its own.
"""

from __future__ import annotations

import os

import torch

from .enums import OpType


class FusedGroup:
    """Consecutive layers run as one computation. `inputs`/`outputs` are the handles the
    group reads and those read outside it; `interior` the rest of its outputs."""

    kind = ""

    def __init__(self, layers, inputs, outputs, interior):
        self.layers, self.inputs, self.outputs, self.interior = layers, inputs, outputs, interior
        self.scaled = []

    def applies(self, values) -> bool:
        return True

    def fused(self, values, training):
        """Values of `outputs` (autograd-connected to `values` when training), and
        values already known for interior handles {handle: value}."""
        raise NotImplementedError


def _enabled():
    return os.environ.get("FLEXFLOW_TORCH_FUSION", "1").strip() not in ("0", "false", "no", "off")


def hint_permutations(layers):
    """A gather along axis 1 of a (batch, n) reshape of (batch, *shape) may be a
    transpose (converters record permutations as gathers): let it test its index
    against the permutations of `shape` (semantics/shape.py checked_index)."""
    for layer in layers:
        if layer.op_type != OpType.GATHER or layer.attrs.get("dim") != 1 or len(layer.inputs[0].dims) != 2:
            continue
        src = layer.inputs[0].owner_layer
        if src is not None and src.op_type == OpType.RESHAPE and 2 <= len(src.inputs[0].dims) - 1 <= 3:
            layer.run.state["shapes"] = [tuple(src.inputs[0].dims[1:])]


def find_groups(layers, model):
    if not _enabled():
        return []
    hint_permutations(layers)
    consumers = {}
    for layer in layers:
        for h in dict.fromkeys(layer.inputs):
            consumers.setdefault(id(h), []).append(layer)
    ctx = _Context(layers, consumers, model)
    groups, i = [], 0
    while i < len(layers):
        group = None
        for make in (_softmax, _head):
            group = make(ctx, i)
            if group is not None and ctx.valid(group):
                break
            group = None
        if group is not None:
            groups.append(group)
            i += len(group.layers)
        else:
            i += 1
    return groups


class _Context:
    def __init__(self, layers, consumers, model):
        self.layers, self.consumers, self.model = layers, consumers, model
        self.final = model._final_output_handle() if model._graph else None
        self.exact = model._exact

    def at(self, i, op_type):
        if i < len(self.layers) and self.layers[i].op_type == op_type:
            return self.layers[i]
        return None

    def valid(self, group):
        """Inner tensors read only inside, with coefficient 1; no in-place layer; one
        coefficient per group input (applied to the fused computation)."""
        members = {id(layer) for layer in group.layers}
        inner = {id(h) for h in group.interior}
        for layer in group.layers:
            if layer.inplace_input is not None:
                return False
            for h, c in zip(layer.inputs, layer.grad_coefficients):
                if id(h) in inner and c != 1.0:
                    return False
        for h in group.interior:
            if h is self.final or any(id(c) not in members for c in self.consumers.get(id(h), [])):
                return False
        for k, h in enumerate(group.inputs):
            coefs = {c for layer in group.layers for x, c in zip(layer.inputs, layer.grad_coefficients) if x is h}
            if len(coefs) != 1:
                return False
            c = coefs.pop()
            if c != 1.0:
                group.scaled.append((k, c))
        return True


# ------------------------------------------------------------------------------ softmax
class SoftmaxGroup(FusedGroup):
    kind = "softmax"

    def fused(self, values, training):
        return [torch.softmax(values[0], dim=-1)], {}


def _softmax(ctx, i):
    pool = ctx.at(i, OpType.POOL2D)
    if pool is None:
        return None
    a = pool.attrs
    x = pool.inputs[0]
    if not (a.get("pool_type") == "POOL_MAX" and len(x.dims) == 4 and a["kernel_h"] == 1 and a["stride_h"] == 1
            and a["kernel_w"] == a["stride_w"] == x.dims[3] and a["padding_h"] == 0 and a["padding_w"] == 0
            and x.data_type.name == "DT_FLOAT"):
        return None
    sub, exp, red, pw, mul = (ctx.at(i + k, t) for k, t in enumerate(
        (OpType.SUBTRACT, OpType.EXP, OpType.REDUCE_SUM, OpType.POW, OpType.MULTIPLY), start=1))
    if None in (sub, exp, red, pw, mul):
        return None
    m = pool.outputs[0]
    if sub.inputs != [x, m] or exp.inputs != [sub.outputs[0]]:
        return None
    e = exp.outputs[0]
    if red.inputs != [e] or list(red.attrs["axes"]) != [3] or not red.attrs.get("keepdims"):
        return None
    if pw.inputs != [red.outputs[0]] or float(pw.attrs["exponent"]) != -1.0:
        return None
    if sorted(map(id, mul.inputs)) != sorted((id(e), id(pw.outputs[0]))) or mul.outputs[0].dims != x.dims:
        return None
    return SoftmaxGroup([pool, sub, exp, red, pw, mul], [x], [mul.outputs[0]],
                        [m, sub.outputs[0], e, red.outputs[0], pw.outputs[0]])


# ------------------------------------------------------------------------------ loss head
class _Head(torch.autograd.Function):
    """Forward: p = softmax(logits); out = sum(p * p) * 0.5 - gather(p, label). Backward
    (FlexFlow's softmax copies dp through): dp = (g * 0.5) * p twice (the two operands of
    p * p), minus g at the label."""

    @staticmethod
    def forward(ctx, logits, index):
        ctx.set_materialize_grads(False)
        p = torch.softmax(logits, dim=-1)
        out = (p * p).sum(-1, keepdim=True).mul_(0.5) - torch.gather(p, -1, index)
        ctx.save_for_backward(p, index)
        return p, out

    @staticmethod
    def backward(ctx, g_p, g_out):
        p, index = ctx.saved_tensors
        if g_out is None:
            return g_p, None
        half = (g_out * 0.5) * p
        grad = half + half
        if g_p is not None:
            grad = grad + g_p
        return grad.scatter_add_(-1, index, -g_out), None


class HeadGroup(FusedGroup):
    kind = "head"

    def __init__(self, *args, check_label):
        super().__init__(*args)
        self.check_label = check_label

    def fused(self, values, training):
        logits, label = values
        index = self.check_label(logits, label)
        p, out = _Head.apply(logits, index)
        return [out], {self.interior[0]: p.detach()}


def _head(ctx, i):
    soft = ctx.at(i, OpType.SOFTMAX)
    if soft is None or ctx.exact:
        return None
    gat, mul, half, red, sub = (ctx.at(i + k, t) for k, t in enumerate(
        (OpType.GATHER, OpType.MULTIPLY, OpType.SCALAR_MULTIPLY, OpType.REDUCE_SUM, OpType.SUBTRACT), start=1))
    if None in (gat, mul, half, red, sub):
        return None
    logits, probs = soft.inputs[0], soft.outputs[0]
    last = len(probs.dims) - 1
    label = gat.inputs[1] if len(gat.inputs) == 2 else None
    if label is None or gat.inputs[0] is not probs or gat.attrs["dim"] != last or label.dims != probs.dims[:-1] + (1,):
        return None
    if mul.inputs != [probs, probs] or half.inputs != [mul.outputs[0]] or float(half.attrs["scalar"]) != 0.5:
        return None
    if red.inputs != [half.outputs[0]] or list(red.attrs["axes"]) != [last] or not red.attrs.get("keepdims"):
        return None
    if sub.inputs != [red.outputs[0], gat.outputs[0]] or probs.data_type.name != "DT_FLOAT":
        return None
    check = gat.spec.index_checker(gat.run, dim=last)
    return HeadGroup([soft, gat, mul, half, red, sub], [logits, label], [sub.outputs[0]],
                     [probs, gat.outputs[0], mul.outputs[0], half.outputs[0], red.outputs[0]],
                     check_label=check)
