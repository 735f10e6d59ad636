"""Element-wise operators: unary, scalar, binary (with FlexFlow's broadcasting) and
dropout (fact sheet §4.2-4.3)."""

import torch
import torch.nn.functional as F

from ...errors import ArgumentError, DTypeError, ShapeError, UnsupportedByFlexFlowError
from ..enums import DataType, OpType


def _broadcast_dims(op, x, y, allow_broadcast):
    """FlexFlow's rule: equal ranks, axes equal or 1 (aligned from the last)."""
    if len(x.dims) != len(y.dims):
        raise ShapeError(f"{op}: operands of rank {len(x.dims)} {x.dims} and {len(y.dims)} "
                         f"{y.dims}; FlexFlow needs equal ranks: reshape the smaller one "
                         "to add leading 1s")
    if not allow_broadcast and x.dims != y.dims:
        raise UnsupportedByFlexFlowError(
            f"{op}: shapes {x.dims} and {y.dims} differ; FlexFlow's {op} kernel does not "
            "broadcast (only add, subtract and multiply do)")
    out = []
    for a, b in zip(x.dims, y.dims):
        if a != b and 1 not in (a, b):
            raise ShapeError(f"{op}: shapes {x.dims} and {y.dims} cannot be broadcast "
                             f"(axis sizes {a} and {b})")
        out.append(max(a, b))
    return tuple(out)


class ElementwiseOps:
    # -- unary -------------------------------------------------------------------
    def _unary(self, op_type, x, fn, name, inplace=False):
        return self._add_layer(op_type, name, [x], lambda i, w: [fn(i[0])],
                               inplace_input=x if inplace else None)

    def exp(self, x, name=None):
        return self._unary(OpType.EXP, x, torch.exp, name)

    def sin(self, x, name=None):
        return self._unary(OpType.SIN, x, torch.sin, name)

    def cos(self, x, name=None):
        return self._unary(OpType.COS, x, torch.cos, name)

    def rsqrt(self, input, name=None):
        return self._unary(OpType.RSQRT, input, torch.rsqrt, name)

    def pow(self, input, exponent, name=None):
        exponent = float(exponent)
        return self._unary(OpType.POW, input, lambda t: torch.pow(t, exponent), name)

    def gelu(self, input, inplace=True, name=None):
        """Exact (erf) GELU; `inplace` is ignored, as in FlexFlow."""
        return self._unary(OpType.GELU, input, F.gelu, name)

    def relu(self, input, inplace=True, name=None):
        return self._unary(OpType.RELU, input, torch.relu, name)

    def identity(self, input, name=None):
        return self._unary(OpType.IDENTITY, input, lambda t: t.clone(), name)

    def sigmoid(self, input, name=None):
        return self._unary(OpType.SIGMOID, input, torch.sigmoid, name)

    def tanh(self, input, name=None):
        return self._unary(OpType.TANH, input, torch.tanh, name)

    def elu(self, input, inplace=True, name=None):
        """FlexFlow hands cuDNN an ELU coefficient of 0.0, so its ELU is ReLU (as read)."""
        if name is not None:
            raise UnsupportedByFlexFlowError(
                "elu with a name aborts in FlexFlow (the C wrapper passes the name into "
                "the inplace flag); call elu without a name")
        return self._unary(OpType.ELU, input, lambda t: F.elu(t, alpha=0.0), name)

    # -- scalar ------------------------------------------------------------------
    def _scalar(self, op_type, input, fn, inplace, name):
        """Scalar ops keep the input's data type, as FlexFlow's do (an int64 tensor
        plus 2.0 stays int64)."""
        return self._unary(op_type, input, lambda t: fn(t).to(t.dtype), name, inplace=inplace)

    def scalar_multiply(self, input, scalar, inplace=True, name=None):
        s = float(scalar)
        return self._scalar(OpType.SCALAR_MULTIPLY, input, lambda t: t * s, inplace, name)

    def scalar_add(self, input, scalar, inplace=True, name=None):
        s = float(scalar)
        return self._scalar(OpType.SCALAR_ADD, input, lambda t: t + s, inplace, name)

    def scalar_sub(self, input, scalar, inplace=True, name=None):
        s = float(scalar)
        return self._scalar(OpType.SCALAR_SUB, input, lambda t: t - s, inplace, name)

    def scalar_true_divide(self, input, scalar, inplace=True, name=None):
        s = float(scalar)
        if s == 0:
            raise ArgumentError("scalar_true_divide by zero")
        return self._scalar(OpType.SCALAR_TRUEDIV, input, lambda t: t / s, inplace, name)

    def dropout(self, input, rate, seed, name=None):
        """cuDNN dropout: active in every forward, eval() included (FlexFlow has no
        train/eval switch). seed 0 means a random seed."""
        rate = float(rate)
        if not 0.0 <= rate < 1.0:
            raise ArgumentError(f"dropout rate must be in [0, 1), got {rate}")
        generator = torch.Generator(device=self._device)
        generator.manual_seed(int(seed) if seed else torch.seed())

        def fn(i, w):
            x = i[0]
            if rate == 0.0 or x.device.type == "meta":
                return [x.clone()]
            keep = torch.rand(x.shape, generator=generator, device=x.device) >= rate
            return [x * keep / (1.0 - rate)]
        return self._add_layer(OpType.DROPOUT, name, [input], fn)

    # -- binary ------------------------------------------------------------------
    def _binary(self, op_type, x, y, fn, inplace_a, name, allow_broadcast=True):
        op = op_type.name.lower()
        out_dims = _broadcast_dims(op, x, y, allow_broadcast)
        if DataType.DT_NONE in (x.data_type, y.data_type):
            raise DTypeError(f"{op}: operands must have a concrete data type")
        out_type = max(x.data_type, y.data_type, key=lambda d: d.value)

        def cast_fn(i, w):
            a, b = i
            dtype = self._torch_dtype(out_type)
            return [fn(a.to(dtype), b.to(dtype))]
        same_shape = x.dims == out_dims and x.data_type == out_type
        return self._add_layer(op_type, name, [x, y], cast_fn,
                               inplace_input=x if inplace_a and same_shape else None)

    def add(self, x, y, inplace_a=False, name=None):
        return self._binary(OpType.ADD, x, y, torch.add, inplace_a, name)

    def subtract(self, x, y, inplace_a=False, name=None):
        return self._binary(OpType.SUBTRACT, x, y, torch.sub, inplace_a, name)

    def multiply(self, x, y, inplace_a=False, name=None):
        return self._binary(OpType.MULTIPLY, x, y, torch.mul, inplace_a, name)

    def divide(self, x, y, inplace_a=False, name=None):
        raise UnsupportedByFlexFlowError(
            "divide is not implemented in FlexFlow's CUDA kernels (the model aborts when "
            "the operator is initialised); compute x * pow(y, -1) instead")

    def max(self, x, y, inplace_a=False, name=None):
        return self._binary(OpType.MAX, x, y, torch.maximum, inplace_a, name,
                            allow_broadcast=False)

    def min(self, x, y, inplace_a=False, name=None):
        return self._binary(OpType.MIN, x, y, torch.minimum, inplace_a, name,
                            allow_broadcast=False)
