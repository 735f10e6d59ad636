"""Normalisations (fact sheet §4.6). Fused residual variants are inference-only in
FlexFlow and refused here."""

import torch
import torch.nn.functional as F

from ...errors import ShapeError, UnsupportedByFlexFlowError
from ..enums import OpType
from ..initializers import ConstantInitializer, GlorotUniformInitializer, ZeroInitializer


def _inference_only(op, instead):
    raise UnsupportedByFlexFlowError(
        f"{op} is inference-only in FlexFlow (its training forward asserts); for "
        f"training use {instead}")


class NormOps:
    def layer_norm(self, input, axes, elementwise_affine=True, eps=1e-5, use_bias=True,
                   name=None):
        """LayerNorm over the last k axes. `axes` is in FlexFlow's Legion order and must
        be exactly [0, 1, ..., k-1] ([0] = the last NumPy axis)."""
        axes = list(axes)
        k = len(axes)
        if k == 0 or axes != list(range(k)) or k > len(input.dims):
            raise UnsupportedByFlexFlowError(
                f"layer_norm: axes {axes} are not allowed: FlexFlow takes axes in reversed "
                f"(Legion) order and requires exactly [0, ..., k-1]; to normalise the last "
                f"axis pass axes=[0]")
        shape = tuple(input.dims[-k:])
        weights = []
        if elementwise_affine:
            weights.append(self._weight(shape, ConstantInitializer(1.0), "gamma"))
            if use_bias:
                weights.append(self._weight(shape, ZeroInitializer(), "beta"))

        def fn(i, w):
            gamma = w[0] if elementwise_affine else None
            beta = w[1] if elementwise_affine and use_bias else None
            return [F.layer_norm(i[0], shape, gamma, beta, eps)]
        return self._add_layer(OpType.LAYER_NORM, name, [input], fn, weights=weights)

    def rms_norm(self, input, eps, dim, name=None):
        """x * rsqrt(mean(x^2, last axis) + eps) * w; `dim` is the last axis' size."""
        if dim != input.dims[-1]:
            raise ShapeError(f"rms_norm: dim={dim} must equal the size of the last axis "
                             f"({input.dims[-1]}); FlexFlow's dim is a size, not an axis")
        weights = [self._weight((dim,), GlorotUniformInitializer(0), "weight")]

        def fn(i, w):
            x = i[0]
            return [x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w[0]]
        return self._add_layer(OpType.RMS_NORM, name, [input], fn, weights=weights)

    def residual_layer_norm(self, input, residual1, residual2, use_two_residuals, axes,
                            elementwise_affine=True, eps=1e-5, use_bias=True,
                            inplace_residual=False, name=None):
        _inference_only("residual_layer_norm", "add followed by layer_norm")

    def add_bias_residual_layer_norm(self, input, residual, axes, elementwise_affine=True,
                                     eps=1e-5, use_bias=True, inplace_residual=False,
                                     name=None):
        _inference_only("add_bias_residual_layer_norm", "add followed by layer_norm")

    def residual_rms_norm(self, input1, input2, eps, dim, inplace_residual=False, name=None):
        _inference_only("residual_rms_norm", "add followed by rms_norm")

    def sigmoid_silu_multi(self, input1, input2, name=None):
        _inference_only("sigmoid_silu_multi", "multiply(multiply(x, sigmoid(x)), y)")
