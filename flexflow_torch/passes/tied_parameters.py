"""Canonicalise tied parameters: placeholders whose tensors share storage
(e.g. T5's `shared.weight` and `encoder.embed_tokens.weight`) become one."""

from __future__ import annotations


def _storage_key(t):
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


def canonicalize_tied_parameters(graph, params):
    """`params`: dict placeholder node -> Param. Rewires every use of a tied
    duplicate to the first placeholder with the same storage; returns
    {canonical fqn: [all tied fqns]} for the report and the weight sources."""
    canonical = {}
    ties = {}
    for node in list(params):
        param = params[node]
        key = _storage_key(param.tensor)
        if key not in canonical:
            canonical[key] = node
            ties[param.fqn] = [param.fqn]
            continue
        first = canonical[key]
        node.replace_all_uses_with(first)
        ties[params[first].fqn].append(param.fqn)
    return {k: v for k, v in ties.items() if len(v) > 1}
