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
- `layer_norm` / `rms_norm` (fusion_norms.py): the composed norms of converters/norm.py (reduce_sum,
  scalar_multiply(1/n), subtract, multiply, scalar_add(eps), pow(-0.5), multiply), with
  their affine weight and bias when those are one-row tables read per sample (embedding
  of zero ids, reshapes, multiply / add) -> F.layer_norm, or the same RMS ops without the
  per-layer overhead (the weight broadcast instead of looked up per sample: its
  gradient is summed in another order).
- `gelu_tanh`: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) as HF's gelu_new converts
  (scalar ops, identity, pow(3), tanh, multiply) -> F.gelu(approximate="tanh").
- `head`: CrossEntropyHead's softmax (FlexFlow's, copy-through gradient), gather of
  the label's probability, multiply(p, p), scalar_multiply(0.5), reduce_sum, subtract
  -> one autograd function: out = sum(p^2)/2 - p[label], dp = g p - onehot(label) g.
  FlexFlow semantics only (exact mode builds no such head).
- `permute` (fusion_moves.py): reshape, gather of a constant permutation, reshape (a
  converted transpose) -> one permute, a view: the same bits, values and gradients.

Single layers have fast paths (`hint_layers`): transposes recorded as gathers run as
permutes, and a shared table read whole is a view of its weight, both with bit-identical
results; that table's lookups (gathers along its last axis) add their gradients into its
own, with no dense buffer of their own (semantics/grad.py TableRead, TableLookup): the
same terms, summed in another order.

`FLEXFLOW_TORCH_FUSION=0` runs every layer on its own, without the fast paths.
"""

from __future__ import annotations

import math
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


def hint_layers(layers, consumers):
    """Enable the single-layer fast paths of semantics/: a gather along axis 1 of a
    (batch, n) reshape of (batch, *shape) may be a transpose (converters record
    permutations as gathers), so it tests its index against the permutations of
    `shape` (shape.py checked_index), as a gather of a flat reshape of `shape` does (the
    tied table's lookups transpose that way); an embedding reading its whole table in
    order returns the table itself (dense.py), and owns the gradient its readers give it
    when they are matrix products and gathers (fresh tensors: grad.py TableRead)."""
    for layer in layers:
        if layer.op_type == OpType.EMBEDDING:
            layer.run.cache["table_views"] = True
            readers = consumers.get(id(layer.outputs[0]), [])
            layer.run.cache["owns_table_grad"] = bool(readers) and all(
                r.op_type in (OpType.BATCH_MATMUL, OpType.GATHER) for r in readers)
        if layer.op_type != OpType.GATHER:
            continue
        src, rank, dim = layer.inputs[0].owner_layer, len(layer.inputs[0].dims), layer.attrs.get("dim")
        if src is None or src.op_type != OpType.RESHAPE or not 2 <= len(src.inputs[0].dims) - 1 <= 3:
            continue
        if rank == 2 and dim == 1:
            layer.run.cache["shapes"] = [tuple(src.inputs[0].dims[1:])]
        elif rank == 1 and dim == 0:     # a flat gather: a permutation of the whole tensor
            layer.run.cache["shapes"] = [tuple(src.inputs[0].dims)]


def find_groups(layers, model):
    if not _enabled():
        return []
    consumers = {}
    for layer in layers:
        for h in dict.fromkeys(layer.inputs):
            consumers.setdefault(id(h), []).append(layer)
    hint_layers(layers, consumers)
    ctx = _Context(layers, consumers, model)
    groups, i = [], 0
    while i < len(layers):
        group = None
        for make in GROUP_MAKERS:
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

    def span(self, i, n):
        """The n layers from layer i on, None past the last."""
        return [self.layers[k] if k < len(self.layers) else None for k in range(i, i + n)]

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
_SCRATCH = {}          # (dtype, device) -> a reused buffer of up to _SCRATCH_SIZE elements
_SCRATCH_SIZE = 1 << 20


def _sum_of_squares(p):
    """sum(p * p) over the last axis (keepdim), the products written a block of rows at
    a time into a reused buffer: a (positions, classes) temporary would be fresh pages
    every step (376 MB for mt5-small's vocabulary at batch 8)."""
    rows = p.reshape(-1, p.shape[-1])
    step = max(1, _SCRATCH_SIZE // rows.shape[1])
    key = (p.dtype, p.device)
    if key not in _SCRATCH or _SCRATCH[key].numel() < step * rows.shape[1]:
        _SCRATCH[key] = torch.empty(step * rows.shape[1], dtype=p.dtype, device=p.device)
    out = rows.new_empty((rows.shape[0], 1))
    for i in range(0, rows.shape[0], step):
        block = rows[i:i + step]
        square = _SCRATCH[key][:block.numel()].view(block.shape)
        torch.sum(torch.mul(block, block, out=square), -1, keepdim=True, out=out[i:i + step])
    return out.reshape(p.shape[:-1] + (1,))


class _Head(torch.autograd.Function):
    """Forward: p = softmax(logits); out = sum(p * p) * 0.5 - gather(p, label). Backward
    (FlexFlow's softmax copies dp through): dp = (g * 0.5) * p twice (the two operands of
    p * p), minus g at the label."""

    @staticmethod
    def forward(ctx, logits, index):
        ctx.set_materialize_grads(False)
        p = torch.softmax(logits, dim=-1)
        out = _sum_of_squares(p).mul_(0.5) - torch.gather(p, -1, index)
        ctx.save_for_backward(p, index)
        return p, out

    @staticmethod
    def backward(ctx, g_p, g_out):
        p, index = ctx.saved_tensors
        if g_out is None:
            return g_p, None
        half = (g_out * 0.5) * p
        grad = half.add_(half)              # in place: the same sum, no second (positions, classes) buffer
        if g_p is not None:
            grad.add_(g_p)
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


def _scalar(layer, op_type, value=None):
    if layer is None or layer.op_type != op_type or layer.attrs.get("inplace"):
        return None
    v = float(layer.attrs["scalar"] if "scalar" in layer.attrs else layer.attrs["exponent"])
    return v if value is None or v == value else None


# ------------------------------------------------------------------------------ gelu
class GeluTanhGroup(FusedGroup):
    kind = "gelu_tanh"

    def fused(self, values, training):
        return [torch.nn.functional.gelu(values[0], approximate="tanh")], {}


def _gelu_tanh(ctx, i):
    half, ident, pw, k1, add, k2, th, one, mul = ctx.span(i, 9)
    if _scalar(half, OpType.SCALAR_MULTIPLY, 0.5) is None:
        return None
    x = half.inputs[0]
    if ident is None or ident.op_type != OpType.IDENTITY or ident.inputs != [x] or x.data_type.name != "DT_FLOAT":
        return None
    if _scalar(pw, OpType.POW, 3.0) is None or pw.inputs != ident.outputs:
        return None
    if _scalar(k1, OpType.SCALAR_MULTIPLY, 0.044715) is None or k1.inputs != pw.outputs:
        return None
    if add is None or add.op_type != OpType.ADD or add.inputs != [x, k1.outputs[0]]:
        return None
    beta = _scalar(k2, OpType.SCALAR_MULTIPLY)
    if beta is None or abs(beta - math.sqrt(2.0 / math.pi)) > 1e-12 or k2.inputs != add.outputs:
        return None
    if th is None or th.op_type != OpType.TANH or th.inputs != k2.outputs:
        return None
    if _scalar(one, OpType.SCALAR_ADD, 1.0) is None or one.inputs != th.outputs:
        return None
    if mul is None or mul.op_type != OpType.MULTIPLY or sorted(map(id, mul.inputs)) != \
            sorted((id(half.outputs[0]), id(one.outputs[0]))):
        return None
    layers = [half, ident, pw, k1, add, k2, th, one, mul]
    produced = [h for layer in layers for h in layer.outputs]
    return GeluTanhGroup(layers, [x], [mul.outputs[0]], produced[:-1])


from .fusion_moves import _permute  # noqa: E402  (families of groups built on FusedGroup above)
from .fusion_norms import _layer_norm, _rms_norm  # noqa: E402

#: the group recognisers, tried in this order at each layer
GROUP_MAKERS = (_softmax, _head, _layer_norm, _rms_norm, _gelu_tanh, _permute)
