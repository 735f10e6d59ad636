"""Embedding lookups."""

from __future__ import annotations

import torch

from ..registry import register
from ..context import Const
from ..errors import ConversionError
from ..graph import enum
from ._common import PARAM, arg_kind, becomes_float, supported_if, unsupported

aten = torch.ops.aten

COMPUTED_IDS = ("embedding ids computed by the model with arithmetic (FlexFlow has no integer "
                "arithmetic and no float-to-int cast): compute them on the host and pass them as an "
                "input, e.g. add 'position_ids' to input_names")


def _embedding_support(node, weight, indices, **_):
    if arg_kind(weight) != PARAM:
        return "embedding lookup into a computed (non-parameter) table"
    if becomes_float(indices):
        return COMPUTED_IDS
    return None


@register(aten.embedding.default, supports=supported_if(_embedding_support))
def aten_embedding(ctx, weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    """embedding(Tensor weight, Tensor indices, SymInt padding_idx=-1, bool scale_grad_by_freq=False, bool sparse=False) -> Tensor

    A native FlexFlow embedding named after the module; a tied/shared table
    goes through the parameter plan (one FlexFlow layer for every use)."""
    if isinstance(indices, Const) and indices.tensor.numel():
        t = indices.tensor
        if int(t.min()) < 0 or int(t.max()) >= weight.shape[0]:
            raise ConversionError(f"constant ids in [{int(t.min())}, {int(t.max())}] index {weight.fqn}, a table of "
                                  f"{weight.shape[0]} rows (positions beyond the model's maximum? check seq_length)")
    ids = ctx.tensor(indices)
    if ids.dtype != "DT_INT32":
        unsupported(COMPUTED_IDS)
    if not ctx.is_native(weight):
        return ctx.plan.lookup(ctx, weight, ctx.node)
    num, dim = weight.shape
    return ctx.emit("embedding", {"input": ids},
                    {"num_embeddings": num, "embedding_dim": dim, "aggr": enum("AggrMode.AGGR_MODE_NONE")},
                    name=weight.layer_name, weights=[{"param_id": 0, "key": ctx.weight(weight)}])
