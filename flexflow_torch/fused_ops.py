"""Operators inserted by the fusion passes: `torch.library` custom ops in the
`flexflow_torch` namespace, so that every registry key is an operator with a schema
(arguments bound like ATen's). Calling one computes the PyTorch reference result, so a
fused graph still runs in PyTorch (verify compares node by node)."""

from __future__ import annotations

import json
from typing import List, Optional

import torch

NAMESPACE = "flexflow_torch"


@torch.library.custom_op(f"{NAMESPACE}::rms_norm", mutates_args=())
def _rms_norm(input: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """y = input * rsqrt(mean(input^2, -1) + eps) * weight  (T5LayerNorm, LlamaRMSNorm)."""
    x32 = input.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * y.to(input.dtype)


@_rms_norm.register_fake
def _(input, weight, eps):
    return torch.empty(torch.broadcast_shapes(input.shape, weight.shape), dtype=torch.result_type(weight, input),
                       device=input.device)


@torch.library.custom_op(f"{NAMESPACE}::dense", mutates_args=())
def _dense(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], activation: str) -> torch.Tensor:
    """linear followed by relu or sigmoid (FlexFlow's fused dense activations)."""
    y = torch.nn.functional.linear(input, weight, bias)
    return torch.relu(y) if activation == "relu" else torch.sigmoid(y)


@_dense.register_fake
def _(input, weight, bias, activation):
    return input.new_empty(tuple(input.shape[:-1]) + (weight.shape[0],))


@torch.library.custom_op(f"{NAMESPACE}::layer_norm", mutates_args=())
def _layer_norm(input: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                eps: float) -> torch.Tensor:
    """A hand-written LayerNorm over the last axis ((x - mean) / sqrt(var + eps) * w + b,
    biased variance), fused by `passes.layer_norm_fusion`."""
    y = torch.nn.functional.layer_norm(input, input.shape[-1:], None, None, eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


@_layer_norm.register_fake
def _(input, weight, bias, eps):
    return torch.empty_like(input)


# --------------------------------------------------------------------------- view_graph
def encode_steps(steps) -> str:
    """(target, args, kwargs) steps with ("$", i) references as the JSON text the
    `view_graph` schema carries (a `str`)."""
    def enc(a):
        if isinstance(a, tuple) and len(a) == 2 and a[0] == "$":
            return {"$": int(a[1])}
        if isinstance(a, (list, tuple)):
            return [enc(x) for x in a]
        if isinstance(a, dict):
            return {"kwargs": {k: enc(v) for k, v in a.items()}}
        if isinstance(a, torch.memory_format):
            return {"memory_format": str(a).rpartition(".")[2]}
        if isinstance(a, torch.dtype):
            return {"dtype": str(a).rpartition(".")[2]}
        if a is None or isinstance(a, (bool, int, float, str)):
            return a
        raise TypeError(f"view_graph step argument {a!r} cannot be encoded")

    out = []
    for target, args, kwargs in steps:
        if not (isinstance(target, torch._ops.OpOverload) and target.namespace == "aten"):
            raise TypeError(f"view_graph steps are ATen overloads, got {target!r}")
        out.append([target.__name__, enc(list(args)), enc(dict(kwargs))["kwargs"]])
    return json.dumps(out)


def decode_steps(text: str):
    def dec(a):
        if isinstance(a, dict):
            if "$" in a:
                return ("$", a["$"])
            if "memory_format" in a:
                return getattr(torch, a["memory_format"])
            if "dtype" in a:
                return getattr(torch, a["dtype"])
        if isinstance(a, list):
            return [dec(x) for x in a]
        return a

    steps = []
    for name, args, kwargs in json.loads(text):
        op, _, overload = name.partition(".")
        target = getattr(getattr(torch.ops.aten, op), overload or "default")
        steps.append((target, tuple(dec(args)), {k: dec(v) for k, v in kwargs.items()}))
    return steps


def apply_steps(inputs, steps):
    """Run decoded `steps` on `inputs` (any tensors: values, meta, index tensors)."""
    values = list(inputs)

    def resolve(a):
        if isinstance(a, tuple) and len(a) == 2 and a[0] == "$":
            return values[a[1]]
        if isinstance(a, (list, tuple)):
            return type(a)(resolve(x) for x in a)
        if isinstance(a, dict):
            return {k: resolve(v) for k, v in a.items()}
        return a

    for target, args, kwargs in steps:
        values.append(target(*resolve(args), **resolve(kwargs)))
    return values[-1]


@torch.library.custom_op(f"{NAMESPACE}::view_graph", mutates_args=())
def _view_graph(inputs: List[torch.Tensor], steps: str) -> torch.Tensor:
    """Data-movement ops (unsqueeze, expand, view, permute, cat...) whose intermediate
    tensors have more axes than FlexFlow allows; `steps` (see `encode_steps`) name
    inputs, then earlier steps, as {"$": i}. Converted as one constant gather."""
    return apply_steps(inputs, decode_steps(steps)).clone()


@_view_graph.register_fake
def _(inputs, steps):
    return torch.empty_like(apply_steps(inputs, decode_steps(steps)), memory_format=torch.contiguous_format)


rms_norm = torch.ops.flexflow_torch.rms_norm.default
dense = torch.ops.flexflow_torch.dense.default
layer_norm = torch.ops.flexflow_torch.layer_norm.default
view_graph = torch.ops.flexflow_torch.view_graph.default
