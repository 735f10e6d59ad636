"""Pseudo-operators inserted by the fusion passes. They are registry keys like
ATen overloads; calling one computes the PyTorch reference result, so a fused
graph still runs in PyTorch (used by verify)."""

from __future__ import annotations

import torch


def rms_norm(input, weight, eps: float):
    """rms_norm(Tensor input, Tensor weight, float eps) -> Tensor

    y = input * rsqrt(mean(input^2, -1) + eps) * weight  (T5LayerNorm, LlamaRMSNorm)."""
    x32 = input.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * y.to(input.dtype)


def dense(input, weight, bias=None, activation: str = "relu"):
    """dense(Tensor input, Tensor weight, Tensor? bias, str activation) -> Tensor

    linear followed by relu or sigmoid (FlexFlow's fused dense activations)."""
    y = torch.nn.functional.linear(input, weight, bias)
    return torch.relu(y) if activation == "relu" else torch.sigmoid(y)


def view_graph(inputs, steps):
    """view_graph(Tensor[] inputs, steps) -> Tensor

    Data-movement ops (unsqueeze, expand, view, permute, cat...) whose
    intermediate tensors have more axes than FlexFlow allows; `steps` are
    (target, args, kwargs) with ("$", i) naming inputs then earlier steps.
    Converted as one constant gather."""
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


def layer_norm(input, weight, bias, eps: float):
    """layer_norm(Tensor input, Tensor? weight, Tensor? bias, float eps) -> Tensor

    A hand-written LayerNorm over the last axis ((x - mean) / sqrt(var + eps) * w + b,
    biased variance), fused by `passes.layer_norm_fusion`."""
    y = torch.nn.functional.layer_norm(input, input.shape[-1:], None, None, eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y
