"""Fuse linear + relu / sigmoid into `fused_ops.dense(..., activation)`, which
maps onto FlexFlow's `dense(activation=AC_MODE_RELU|AC_MODE_SIGMOID)` (the only
fused activations FlexFlow's dense kernel applies)."""

from __future__ import annotations

from .. import fused_ops
from ._match import aten, only_user, replace

_ACTIVATIONS = {aten.relu.default: "relu", aten.sigmoid.default: "sigmoid"}


def fuse_dense_activation(graph, params) -> int:
    count = 0
    for lin in list(graph.nodes):
        if lin.op != "call_function" or lin.target is not aten.linear.default:
            continue
        act = only_user(lin)
        if act is None or act.target not in _ACTIVATIONS:
            continue
        weight = lin.args[1]
        bias = lin.args[2] if len(lin.args) > 2 else lin.kwargs.get("bias")
        if weight not in params or len(weight.users) != 1:
            continue
        if bias is not None and (bias not in params or len(bias.users) != 1):
            continue
        replace(graph, act, fused_ops.dense, (lin.args[0], weight, bias, _ACTIVATIONS[act.target]))
        count += 1
    return count
