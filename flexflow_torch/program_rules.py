"""Rules applied to a whole recorded program: what FlexFlow gets wrong only through
the way operators share tensors."""

from __future__ import annotations

from . import semantics
from .graph import OpRecord, _encode


def _value_refs(args):
    """(key, index or None, value id) of every tensor argument of an op record."""
    refs = []
    for k, v in args.items():
        if isinstance(v, dict) and "$v" in v:
            refs.append((k, None, v["$v"]))
        elif isinstance(v, list):
            refs += [(k, i, x["$v"]) for i, x in enumerate(v) if isinstance(x, dict) and "$v" in x]
    return refs


def consumers(program):
    """value id -> list of op indices reading it (once per op)."""
    users = {}
    for i, op in enumerate(program.ops):
        for vid in {vid for _, _, vid in _value_refs(op.args)}:
            users.setdefault(vid, []).append(i)
    return users


def protect_overwritten_inputs(program):
    """Give every overwriting backward (gelu, rsqrt, pow, dropout, ...: FlexFlow's
    `input_grad = ...` instead of `+=`, src/ops/element_unary.cu:206-220) an input of its
    own: where its input has other consumers, an `identity` (whose backward accumulates)
    copies it first, so no other consumer's gradient is discarded."""
    users = consumers(program)
    ops = []
    for op in program.ops:
        spec = semantics.SPECS.get(op.method) if op.kind == "op" else None
        if spec is not None and spec.input_grad != semantics.ACC:
            for k, i, vid in _value_refs(op.args):
                if len(users.get(vid, ())) > 1:
                    src = program.values[vid]
                    copy = program._new_value(src.shape, src.dtype, src.part)
                    name = None if op.name is None else program.unique_name(f"{op.name}:in")
                    ops.append(OpRecord("identity", {"input": _encode(src)}, [copy.id], name=name, node=op.node))
                    ref = _encode(copy)
                    if i is None:
                        op.args[k] = ref
                    else:
                        op.args[k][i] = ref
        ops.append(op)
    program.ops = ops
