"""How each trainable parameter lives in FlexFlow.

*Native*: the parameter has a single use, in a slot a FlexFlow layer owns (dense
kernel/bias, embedding table, conv kernel/bias).

*Table*: every other parameter - tied ones (an embedding also used as LM head, T5's
`shared` looked up by encoder and decoder), ones used as plain tensors (norm weights
of composed norms, ViT's cls token and position embeddings, a Linear weight read by a
matmul). FlexFlow cannot share a parameter between layers (`shared_op` is ignored,
src/ops/linear.cc), and has no free trainable tensor, so a table parameter becomes ONE
FlexFlow `embedding` layer whose table is the parameter laid out as rows:

- lookups only: the table is the parameter; the ids of every lookup are concatenated
  (DT_INT32, which concat copies bit-exactly) into one call and the result is split;
- used as a matrix (x @ W^T, x @ W): the table is W^T or W (whichever the matrix use
  wants), read with constant row ids - once per step for a one-GPU program (activations
  are regrouped as (1, batch * rows, dim), a reshape data parallelism would reject), else
  once per sample; lookups gather rows from that matrix;
- plain tensor uses only: the table is one row holding the flattened parameter, read
  with a zero id per sample.

Every use reads, and every gradient accumulates into, the same FlexFlow parameter.
"""

from __future__ import annotations

import math

import torch

from .errors import ConversionError
from .fused_ops import dense as fused_dense
from .graph import enum
from . import registry

aten = torch.ops.aten

#: target -> argument names FlexFlow layers own as parameters
NATIVE_SLOTS = {
    aten.linear.default: ("weight", "bias"),
    aten.embedding.default: ("weight",),
    aten.conv2d.default: ("weight", "bias"),
    aten.conv1d.default: ("weight", "bias"),
    aten.convolution.default: ("weight", "bias"),
    aten.addmm.default: ("self", "mat2"),
    fused_dense: ("weight", "bias"),
}
#: uses that read the parameter as the right operand of a matrix product
TRANSPOSED_MATRIX = {aten.linear.default: "weight"}                       # x @ W^T
MATRIX = {aten.addmm.default: "mat2", aten.mm.default: "mat2", aten.matmul.default: "other",
          aten.bmm.default: "mat2"}                                         # x @ W


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

    def has_matrix_tables(self) -> bool:
        """Whether a table parameter is used as a matrix (its layout depends on one GPU
        or several)."""
        for param in self.params.values():
            if self.kind(param) == "table":
                lookups, transposed, matrix, tensor = self._uses(param)
                if transposed or matrix or (lookups and tensor):
                    return True
        return False

    def kind(self, param) -> str:
        return "native" if param.node in self.native else "table"

    # ------------------------------------------------------------------ tables
    def _uses(self, param):
        lookups, transposed, matrix, tensor = [], [], [], []
        for user in param.node.users:
            bound = registry.bind_arguments(user.target, user.args, user.kwargs)
            if user.target is aten.embedding.default and bound["weight"] is param.node \
                    and bound["indices"] is not param.node:
                lookups.append((user, bound["indices"]))
            elif bound.get(TRANSPOSED_MATRIX.get(user.target)) is param.node:
                transposed.append(user)
            elif bound.get(MATRIX.get(user.target)) is param.node:
                matrix.append(user)
            else:
                tensor.append(user)
        return lookups, transposed, matrix, tensor

    def _table(self, ctx, param):
        key = ("table", param.fqn)
        if key not in ctx.cache:
            lookups, transposed, matrix, tensor = self._uses(param)
            if transposed or matrix or (lookups and tensor):
                ctx.cache[key] = self._matrix_table(ctx, param, lookups, transposed)
            elif lookups:
                ctx.cache[key] = self._lookup_table(ctx, param, lookups)
            else:
                ctx.cache[key] = self._row_table(ctx, param)
        return ctx.cache[key]

    def _embedding(self, ctx, param, ids, rows, cols, layout):
        wkey = ctx.weight(param, layout)
        return ctx.emit("embedding", {"input": ids},
                        {"num_embeddings": rows, "embedding_dim": cols, "aggr": enum("AggrMode.AGGR_MODE_NONE")},
                        name=param.layer_name, weights=[{"param_id": 0, "key": wkey}])

    def _lookup_table(self, ctx, param, lookups):
        """One embedding call over the concatenated ids of every lookup."""
        B = ctx.batch_size
        rows, cols = param.shape[0], math.prod(param.shape[1:])
        pieces, shapes = [], []
        for user, ids_node in lookups:
            ids = ctx.tensor(ctx.ensure(ids_node))
            pieces.append(ctx.reshape(ids, (B, math.prod(ids.shape[1:]) if ids.rank > 1 else 1)))
            shapes.append((ids, ctx.torch_shape(ids)))
        ids_all = pieces[0] if len(pieces) == 1 else ctx.emit("concat", {"tensors": pieces}, {"axis": 1})
        emb = self._embedding(ctx, param, ids_all, rows, cols, {"shape": [rows, cols]})
        parts = [emb] if len(pieces) == 1 else \
            ctx.emit("split", {"input": emb}, {"sizes": [p.shape[1] for p in pieces], "axis": 1})
        result = {}
        for (user, _), part, (ids, torch_ids) in zip(lookups, parts, shapes):
            out = ctx.reshape(part, ids.shape + (cols,))
            if ids.id in ctx.lifted:
                ctx.lift(out, tuple(torch_ids) + (cols,))
            result[user] = out
        return {"lookups": result}

    def _matrix_table(self, ctx, param, lookups, transposed):
        """The parameter as a matrix M (G, rows, cols): W^T when a use is x @ W^T
        (linear), else W; G = 1 in a one-GPU program, the batch otherwise (a copy per
        sample). Lookups gather rows of W from it."""
        if len(param.shape) != 2:
            raise ConversionError(f"{param.fqn} of shape {param.shape} is used as a matrix: only 2-D "
                                  "parameters can be")
        B, G = ctx.batch_size, ctx.table_copies
        R, C = param.shape
        flip = bool(transposed)                       # the table holds W^T
        rows, cols = (C, R) if flip else (R, C)
        ids = ctx.constant(torch.arange(rows).reshape(1, rows).expand(G, rows))
        m = self._embedding(ctx, param, ids, rows, cols, {"transpose": flip, "shape": [rows, cols]})
        result = {"matrix": m, "flip": flip, "lookups": {}}
        for user, ids_node in lookups:
            idv = ctx.tensor(ctx.ensure(ids_node))
            n = math.prod(idv.shape) // G
            flat = ctx.reshape(idv, (G, n))
            if flip:     # W^T (G, C, R): gather along R with ids repeated over C rows, then (G, n, C)
                index = repeat_along(ctx, ctx.reshape(flat, (G, 1, n)), C, axis=1)
                rows_of_w = ctx.transpose(ctx.emit("gather", {"input": m, "index": index}, {"dim": 2}), [0, 2, 1])
            else:        # W (G, R, C): gather along R with ids repeated over C columns
                index = repeat_along(ctx, ctx.reshape(flat, (G, n, 1)), C, axis=2)
                rows_of_w = ctx.emit("gather", {"input": m, "index": index}, {"dim": 1})
            out = ctx.reshape(rows_of_w, idv.shape + (C,))
            if idv.id in ctx.lifted:
                ctx.lift(out, tuple(ctx.torch_shape(idv)) + (C,))
            result["lookups"][user] = out
        return result

    def _row_table(self, ctx, param):
        """A parameter used only as a tensor: one table row, read once per sample."""
        n = max(1, math.prod(param.shape))
        zeros = ctx.constant(torch.zeros(ctx.batch_size, 1, dtype=torch.int32))
        row = self._embedding(ctx, param, zeros, 1, n, {"shape": [1, n]})
        return {"tensor": row}

    # ------------------------------------------------------------------ uses
    def lookup(self, ctx, param, user):
        return self._table(ctx, param)["lookups"][user]

    def matrix(self, ctx, param, transposed):
        """The parameter as (G, C, R) = W^T (`transposed`) or (G, R, C) = W, G copies
        (1 in a one-GPU program, else one per sample)."""
        table = self._table(ctx, param)
        if "matrix" not in table:
            raise ConversionError(f"internal: {param.fqn} has no matrix table")
        m = table["matrix"]
        return m if table["flip"] == transposed else ctx.transpose(m, [0, 2, 1])

    def param_tensor(self, ctx, param):
        """The parameter as a lifted value: a per-sample copy of its own shape."""
        from .context import lifted_shape
        key = ("tensor", param.fqn)
        if key not in ctx.cache:
            table = self._table(ctx, param)
            if "tensor" in table:
                v = table["tensor"]
            elif "matrix" in table:
                v = self.matrix(ctx, param, transposed=False)
                if v.shape[0] != ctx.batch_size:          # one copy: broadcast it per sample
                    zeros = ctx.constant(torch.zeros((ctx.batch_size,) + v.shape[1:]))
                    v = ctx.emit("add", {"x": zeros, "y": v})
            else:
                raise ConversionError(f"internal: {param.fqn} has no tensor form")
            v = ctx.reshape(v, lifted_shape(ctx.batch_size, param.shape))
            ctx.cache[key] = ctx.lift(v, param.shape or (1,))
        return ctx.cache[key]


def repeat_along(ctx, ids, times, axis):
    """`ids` (size 1 on `axis`) repeated `times` times along it, by concatenations that
    double it (integer ids copy bit-exactly through concat; FlexFlow has no integer
    arithmetic to broadcast with)."""
    result, power, remaining = None, ids, times
    while remaining:
        if remaining & 1:
            result = power if result is None else ctx.emit("concat", {"tensors": [result, power]}, {"axis": axis})
        remaining >>= 1
        if remaining:
            power = ctx.emit("concat", {"tensors": [power, power]}, {"axis": axis})
    return result


def _other_args_free_of(bound, slots, node):
    """The parameter appears only in its slots (not also as an input)."""
    for name, value in bound.items():
        if name in slots:
            continue
        if value is node or (isinstance(value, (list, tuple)) and any(v is node for v in value)):
            return False
    return True
