"""How each trainable parameter lives in FlexFlow.

*Native*: the parameter has a single use, in a slot a FlexFlow layer owns
(dense kernel/bias, embedding table, layer/rms norm gamma/beta, conv kernel/bias).

*Table*: every other parameter — tied ones (an embedding also used as LM head,
T5's `shared` looked up by encoder and decoder), or ones used as plain tensors
(ViT's cls token and position embeddings, a Linear weight read by a matmul).
FlexFlow cannot share a parameter between layers (`shared_op` is ignored), so a
table parameter becomes ONE FlexFlow `embedding` layer whose table is the
parameter reshaped to (rows, last_dim). All its lookups are batched into a
single embedding call — the id tensors concatenated along axis 1, plus
`arange(rows)` when the parameter itself is needed as a tensor — and the result
is split back. Every use therefore reads, and every gradient accumulates into,
the same FlexFlow parameter: tied weights stay tied through training, on the
embedded runtime and on real FlexFlow alike. Cost: the materialised table is
(batch, rows, last_dim), i.e. logits-sized / seq_len * hidden for an LM head.
"""

from __future__ import annotations

import math

import torch

from .errors import ConversionError
from .fused_ops import rms_norm as fused_rms_norm, dense as fused_dense, layer_norm as fused_layer_norm
from .graph import enum
from . import registry

aten = torch.ops.aten

#: target -> argument names FlexFlow layers own as parameters
NATIVE_SLOTS = {
    aten.linear.default: ("weight", "bias"),
    aten.embedding.default: ("weight",),
    aten.layer_norm.default: ("weight", "bias"),
    aten.conv2d.default: ("weight", "bias"),
    aten.conv1d.default: ("weight", "bias"),
    aten.convolution.default: ("weight", "bias"),
    aten.addmm.default: ("self", "mat2"),
    fused_rms_norm: ("weight",),
    fused_layer_norm: ("weight", "bias"),
    fused_dense: ("weight", "bias"),
}


#: users that read a table parameter as a per-sample (batch, rows, cols) matrix
_MATMUL_USERS = {aten.linear.default, aten.addmm.default}


class ParamPlan:
    def __init__(self, graph, params):
        self.params = params                  # placeholder node -> Param
        self.native = {}                      # placeholder node -> user node
        for node in params:
            users = list(node.users)
            if len(users) != 1:
                continue
            user = users[0]
            slots = NATIVE_SLOTS.get(user.target)
            if not slots:
                continue
            bound = registry.bind_arguments(user.target, user.args, user.kwargs)
            if any(bound.get(s) is node for s in slots) and _other_args_free_of(bound, slots, node):
                self.native[node] = user

    def is_native(self, param, user) -> bool:
        return self.native.get(param.node) is user

    def kind(self, param) -> str:
        return "native" if param.node in self.native else "table"

    # ------------------------------------------------------------------ tables
    def _table(self, ctx, param):
        key = ("table", param.fqn)
        if key in ctx.cache:
            return ctx.cache[key]
        B = ctx.batch_size
        t = param.tensor
        cols = t.shape[-1] if t.dim() >= 1 else 1
        rows = t.numel() // cols
        lookups, needs_matrix, per_sample = [], False, False
        for user in param.node.users:
            bound = registry.bind_arguments(user.target, user.args, user.kwargs)
            if user.target is aten.embedding.default and bound["weight"] is param.node \
                    and bound["indices"] is not param.node:
                lookups.append((user, ctx.ensure(bound["indices"])))
            else:
                needs_matrix = True
                per_sample = per_sample or user.target in _MATMUL_USERS
        pieces, plan = [], []
        for user, ids in lookups:
            from .context import Const
            if isinstance(ids, Const) and (ids.tensor.dim() == 0 or ids.tensor.shape[0] != B):
                flat = ids.tensor.reshape(1, -1).expand(B, -1)
                pieces.append(ctx.constant(flat))
                plan.append((user, ids.shape, True))
                continue
            v = ctx.tensor(ids)
            if v.rank == 0 or v.shape[0] != B:
                raise ConversionError(f"lookup {user.name} of {param.fqn}: ids of shape {v.shape} "
                                      f"do not start with the batch size {B}")
            pieces.append(ctx.reshape(v, (B, math.prod(v.shape[1:]) if v.rank > 1 else 1)))
            plan.append((user, v.shape, False))
        matrix_rows = 0
        if needs_matrix:
            # one copy per sample when it meets a batch (concat with ids, batch_matmul)
            copies = B if (lookups or per_sample) else 1
            pieces.append(ctx.constant(torch.arange(rows).reshape(1, rows).expand(copies, rows)))
            matrix_rows = rows
        if any(p.dtype == "DT_INT64" for p in pieces):
            pieces = _widen_ids(ctx, pieces)
        ids_all = pieces[0] if len(pieces) == 1 else ctx.emit("concat", {"tensors": pieces}, {"axis": 1})
        wkey = ctx.weight(param)
        ctx.program.weights[wkey] = ctx.program.weights[wkey].reshape(rows, cols)
        emb = ctx.emit("embedding", {"input": ids_all},
                       {"num_embeddings": rows, "embedding_dim": cols, "aggr": enum("AggrMode.AGGR_MODE_NONE")},
                       name=param.layer_name, weights=[{"param_id": 0, "key": wkey}])
        sizes = [p.shape[1] for p in pieces]
        parts = [emb] if len(sizes) == 1 else ctx.emit("split", {"input": emb}, {"sizes": sizes, "axis": 1})
        result = {"lookups": {}, "matrix": None}
        for (user, shape, tiled), part in zip(plan, parts):
            if tiled:
                part = first_rows(ctx, part)
            result["lookups"][user] = ctx.reshape(part, tuple(shape) + (cols,))
        if needs_matrix:
            result["matrix"] = parts[-1]       # (B, rows, cols)
        ctx.cache[key] = result
        return result

    def lookup(self, ctx, param, user):
        return self._table(ctx, param)["lookups"][user]

    def param_matrix(self, ctx, param):
        """The parameter as a (batch, rows, last_dim) tensor (one copy per sample)."""
        return self._table(ctx, param)["matrix"]

    def param_tensor(self, ctx, param):
        """The parameter as a tensor of its own shape."""
        key = ("tensor", param.fqn)
        if key not in ctx.cache:
            m = first_rows(ctx, self.param_matrix(ctx, param))
            ctx.cache[key] = ctx.reshape(m, tuple(param.shape) or (1,))
        return ctx.cache[key]


def first_rows(ctx, v):
    """v[:1] along axis 0 (a split)."""
    if v.shape[0] == 1:
        return v
    return ctx.emit("split", {"input": v}, {"sizes": [1, v.shape[0] - 1], "axis": 0})[0]


def _widen_ids(ctx, pieces):
    """int32 id pieces -> int64, by adding an int64 zero (FlexFlow casts the
    operand with the smaller DataType to the larger; there is no cast op)."""
    ref = next(p for p in pieces if p.dtype == "DT_INT64")
    B = ref.shape[0]
    col = ref if ref.shape[1] == 1 else ctx.emit("split", {"input": ref}, {"sizes": [1, ref.shape[1] - 1], "axis": 1})[0]
    zero64 = ctx.emit("multiply", {"x": col, "y": ctx.constant(torch.zeros(B, 1, dtype=torch.int32))})
    return [p if p.dtype == "DT_INT64" else ctx.emit("add", {"x": p, "y": zero64}) for p in pieces]


def _other_args_free_of(bound, slots, node):
    """The parameter appears only in its slots (not also as an input)."""
    for name, value in bound.items():
        if name in slots:
            continue
        if value is node or (isinstance(value, (list, tuple)) and any(v is node for v in value)):
            return False
    return True
