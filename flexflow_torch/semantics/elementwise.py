"""Element-wise operators: unary (src/ops/element_unary.cc, element_unary.cu), scalar,
dropout (src/ops/dropout.cc, kernels/dropout_kernels.cu) and binary
(src/ops/element_binary.cc, kernels/element_binary_kernels.cu)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ArgumentError, DTypeError, ShapeError, UnsupportedByFlexFlowError
from .base import BOOLEAN, DOUBLE, FLOAT, HALF, INT32, INT64, INTS, Stage, promote
from .grad import InplaceGrad, TieGrad
from .spec import ACC, OVER, OpSpec, register

UNARY_SRC = "src/ops/element_unary.cc, src/ops/element_unary.cu"
BINARY_SRC = "src/ops/element_binary.cc, src/ops/kernels/element_binary_kernels.cu"
_CUDNN = {"relu", "sigmoid", "tanh", "elu"}


def _phi(x):
    return torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _gelu_grad(g, x, y):
    return g * (0.5 * torch.erfc(-x / math.sqrt(2.0)) + x * _phi(x))


# method -> (OpType, input parameter name, forward, backward formula g,x,y -> dx, write mode)
UNARY = {
    "exp": ("EXP", "x", torch.exp, lambda g, x, y: g * y, ACC),
    "sin": ("SIN", "x", torch.sin, lambda g, x, y: g * torch.cos(x), ACC),
    "cos": ("COS", "x", torch.cos, lambda g, x, y: -g * torch.sin(x), ACC),
    "identity": ("IDENTITY", "input", lambda t: t.clone(), lambda g, x, y: g, ACC),
    "rsqrt": ("RSQRT", "input", torch.rsqrt, lambda g, x, y: -0.5 * g * y * y * y, OVER),
    "gelu": ("GELU", "input", F.gelu, _gelu_grad, OVER),
    "relu": ("RELU", "input", torch.relu, lambda g, x, y: g * (y > 0), ACC),
    "sigmoid": ("SIGMOID", "input", torch.sigmoid, lambda g, x, y: g * y * (1 - y), ACC),
    "tanh": ("TANH", "input", torch.tanh, lambda g, x, y: g * (1 - y * y), ACC),
    # cuDNN takes FlexFlow's ELU coefficient 0.0 as alpha: ELU is ReLU (init_kernel:46-47)
    "elu": ("ELU", "input", torch.relu, lambda g, x, y: g * (y > 0), ACC),
}
SCALAR = {
    "scalar_multiply": ("SCALAR_MULTIPLY", lambda t, s: t * s, lambda g, x, y, s: g * s),
    "scalar_add": ("SCALAR_ADD", lambda t, s: t + s, lambda g, x, y, s: g),
    "scalar_sub": ("SCALAR_SUB", lambda t, s: t - s, lambda g, x, y, s: g),
    "scalar_true_divide": ("SCALAR_TRUEDIV", lambda t, s: t / s, lambda g, x, y, s: g / s),
}


def unary_dtypes(ck, x, method):
    """Which data types an element-wise unary op handles, and when it fails."""
    if x.dtype == BOOLEAN:
        ck.problem(Stage.COMPILE, DTypeError, "DT_BOOLEAN tensors cannot be mapped",
                   "src/runtime/model.cc map_tensor_with_dim2")
    elif x.dtype == HALF:
        ck.problem(Stage.BACKWARD, DTypeError, "the backward task has no DT_HALF case",
                   "src/ops/element_unary.cc backward_task:646-656")
    elif x.dtype in INTS and method in _CUDNN:
        ck.problem(Stage.INIT, DTypeError, f"cuDNN activations take no {x.dtype} "
                   "(ff_to_cudnn_datatype)", "src/runtime/cuda_helper.cu:526-539")
    elif x.dtype in INTS and method != "identity":
        ck.hazard(f"a {x.dtype} input is computed in the integer type, the scalar cast to it",
                  "src/ops/element_unary.cu forward_kernel:136")


class Unary(OpSpec):
    source = UNARY_SRC

    def __init__(self, method):
        self.method = method
        self.op_type, self.arg, self.fn, self.vjp, self.input_grad = UNARY[method]
        self.tensors = (self.arg,)

    def infer(self, ck, inplace=False, **a):
        x = a[self.arg]
        unary_dtypes(ck, x, self.method)
        if self.method == "elu" and inplace:
            ck.fail(UnsupportedByFlexFlowError, "elu in place (or with a name, which the C API "
                    "passes into the inplace flag) asserts", "src/ops/element_unary.cc FFModel::elu:143")
        return [x]

    def inplace_input(self, inplace=False, **a):
        return self.arg if inplace else None

    def forward(self, run, ins, ws, inplace=False, **a):
        x = ins[0]
        if run.exact:
            return [F.elu(x) if self.method == "elu" else self.fn(x)]
        if inplace:
            return [InplaceGrad.apply(x, self.fn, self.vjp, self.input_grad == ACC)]
        return [self.fn(x)]


class Pow(Unary):
    method, op_type, arg, tensors, input_grad = "pow", "POW", "input", ("input",), OVER

    def __init__(self):
        pass

    def forward(self, run, ins, ws, exponent, inplace=False, **a):
        x, s = ins[0], float(exponent)
        fn = lambda t: torch.pow(t, s)  # noqa: E731
        if not run.exact and inplace:
            # the backward reads x's pointer, which now holds the output
            return [InplaceGrad.apply(x, fn, lambda g, x0, y: g * s * torch.pow(y, s - 1), False)]
        return [fn(x)]


class Scalar(OpSpec):
    source = UNARY_SRC

    def __init__(self, method):
        self.method = method
        self.op_type, self.fn, self.vjp = SCALAR[method]

    def infer(self, ck, input, scalar, inplace=True):
        if self.method == "scalar_true_divide" and float(scalar) == 0:
            ck.fail(ArgumentError, "division by zero", UNARY_SRC)
        unary_dtypes(ck, input, self.method)
        return [input]

    def inplace_input(self, inplace=True, **a):
        return "input" if inplace else None

    def forward(self, run, ins, ws, scalar, inplace=True, **a):
        x, s = ins[0], float(scalar)
        if x.dtype.is_floating_point:
            fn = lambda t: self.fn(t, s)  # noqa: E731
        else:
            fn = lambda t: _integer_scalar(self.method, t, s)  # noqa: E731
        if inplace and not run.exact and x.requires_grad:
            return [InplaceGrad.apply(x, fn, lambda g, x0, y: self.vjp(g, x0, y, s), True)]
        return [fn(x)]


def _integer_scalar(method, t, s):
    """The kernel instantiated for an integer type: `(T)scalar` truncates toward zero and
    division is C integer division (element_unary.cu forward_kernel:136)."""
    k = int(s)
    if method == "scalar_true_divide":
        if k == 0:
            raise ArgumentError("scalar_true_divide of an integer tensor by a scalar that "
                                f"truncates to 0 ({s}) divides by zero")
        return torch.div(t, k, rounding_mode="trunc")
    return SCALAR[method][1](t, k).to(t.dtype)


class Dropout(OpSpec):
    method, op_type = "dropout", "DROPOUT"
    source = "src/ops/dropout.cc, src/ops/kernels/dropout_kernels.cu"
    input_grad = OVER        # cudnnDropoutBackward writes dx (dropout_kernels.cu:118-125)

    def infer(self, ck, input, rate, seed):
        if not 0.0 <= float(rate) < 1.0:
            ck.fail(ArgumentError, f"rate must be in [0, 1), got {rate}", self.source)
        if input.dtype != FLOAT:
            ck.problem(Stage.FORWARD, DTypeError, f"{input.dtype} input: the kernel reads float "
                       "only", "src/ops/dropout.cc forward_task:212-214")
        return [input]

    def forward(self, run, ins, ws, rate, seed):
        """cuDNN dropout, active in every forward (FlexFlow has no eval switch). Every
        GPU seeds the same generator over its own B/N rows (dropout_kernels.cu:60-65), so
        with data parallelism the mask repeats across shards."""
        x, rate = ins[0], float(rate)
        if rate == 0.0:
            return [x.clone()]
        if "generator" not in run.state:
            g = torch.Generator(device=x.device)
            g.manual_seed(int(seed) if seed else torch.seed())
            run.state["generator"] = g
        gen = run.state["generator"]
        shards = 1 if run.exact or run.degree == 1 else run.degree
        shard_shape = (x.shape[0] // shards,) + tuple(x.shape[1:])
        keep = torch.rand(shard_shape, generator=gen, device=x.device) >= rate
        keep = keep.repeat((shards,) + (1,) * (x.dim() - 1))
        return [x * keep / (1.0 - rate)]


for _m in UNARY:
    register(Unary(_m))
for _m in SCALAR:
    register(Scalar(_m))
register(Pow)
register(Dropout)


# ----------------------------------------------------------------------------- binary
def binary_partition(ck, x, y, out_shape):
    """element_binary.cc ElementBinary::ElementBinary:219-236: on an axis where both sizes
    are equal the operands must carry the same partition (else compile aborts at :227);
    on a broadcast axis the output takes the larger operand's. ElementBinary::init
    (element_binary.cc:366) then needs every operand on the output's index space, which
    depends only on how many axes are partitioned (model.cc get_or_create_task_is:2787)."""
    out_parts = []
    for axis, (a, b) in enumerate(zip(x.shape, y.shape)):
        px, py = x.part == axis, y.part == axis
        if a == b:
            if px != py:
                ck.parallel_problem(Stage.COMPILE, f"operands {x.shape} and {y.shape} are partitioned "
                                    f"differently on axis {axis}", "src/ops/element_binary.cc:227")
                return x.part if x.part is not None else y.part
            if px:
                out_parts.append(axis)
        elif (py if a == 1 else px):
            out_parts.append(axis)
    for m in (x, y):
        if len(out_parts) != (m.part is not None):
            ck.parallel_problem(Stage.INIT, f"operand of shape {m.shape} is broadcast against a "
                                "partitioned axis of the other", "src/ops/element_binary.cc:366 "
                                "(check_output_input_weight_same_parallel_is)")
            break
    return out_parts[0] if out_parts else None


class Binary(OpSpec):
    source = BINARY_SRC
    tensors = ("x", "y")
    ops = {"add": ("ADD", torch.add), "subtract": ("SUBTRACT", torch.sub),
           "multiply": ("MULTIPLY", torch.mul), "divide": ("DIVIDE", torch.div),
           "max": ("MAX", None), "min": ("MIN", None)}

    def __init__(self, method):
        self.method = method
        self.op_type, self.fn = self.ops[method]

    def infer(self, ck, x, y, inplace_a=False):
        if x.rank != y.rank:
            ck.fail(ShapeError, f"operands of rank {x.rank} {x.shape} and {y.rank} {y.shape}: the "
                    "output takes x's rank and is undefined; reshape the smaller one to add "
                    "leading 1s", "src/ops/element_binary.cc FFModel::binary")
        out = []
        for a, b in zip(x.shape, y.shape):
            if a != b and 1 not in (a, b):
                ck.fail(ShapeError, f"shapes {x.shape} and {y.shape} do not broadcast",
                        "src/ops/element_binary.cc broadcastable (asserted in FFModel::binary)")
            out.append(max(a, b))
        out = tuple(out)
        dtype = promote(x.dtype, y.dtype)
        if self.method == "divide":
            ck.problem(Stage.INIT, UnsupportedByFlexFlowError, "the CUDA kernel has no division "
                       "mode; compute x * pow(y, -1)", "src/ops/kernels/element_binary_kernels.cu init_kernel")
        if self.method in ("max", "min") and x.shape != y.shape:
            ck.problem(Stage.FORWARD, UnsupportedByFlexFlowError, "max/min do not broadcast at run "
                       "time: expand both operands first", "src/ops/element_binary.cc forward_task:753-757")
        if BOOLEAN in (x.dtype, y.dtype) or (x.dtype != y.dtype and HALF in (x.dtype, y.dtype)):
            ck.problem(Stage.FORWARD, DTypeError, f"the implicit cast {x.dtype}/{y.dtype} has no "
                       "HALF/BOOLEAN branch (garbage)", "src/ops/cast.cc forward_task:307-315")
        if dtype == INT64:
            ck.problem(Stage.INIT, DTypeError, "DT_INT64 arithmetic: cuDNN has no INT64 type; make "
                       "the operands float", "src/runtime/cuda_helper.cu ff_to_cudnn_datatype:526-539")
        elif dtype in (INT32, DOUBLE):
            ck.problem(Stage.FORWARD, DTypeError, f"{dtype} arithmetic: the kernel handles HALF and "
                       "FLOAT only", "src/ops/kernels/element_binary_kernels.cu forward_kernel_wrapper:109")
        elif dtype == HALF:
            ck.problem(Stage.BACKWARD, DTypeError, "the backward reads float pointers only",
                       "src/ops/element_binary.cc backward_task:975-1008")
        if inplace_a and self.method != "add" and x.shape == out:
            ck.problem(Stage.BACKWARD, UnsupportedByFlexFlowError, "in place, the backward mixes the "
                       "gradient and activation buffers; pass inplace_a=False",
                       "src/ops/element_binary.cc backward_task:944-972")
        part = binary_partition(ck, x, y, out)
        return [x.with_(shape=out, dtype=dtype, part=part)]

    def inplace_input(self, x=None, inplace_a=False, out_shape=None, **a):
        return "x" if inplace_a else None

    def forward(self, run, ins, ws, inplace_a=False, **a):
        dtype = torch.promote_types(ins[0].dtype, ins[1].dtype)
        x, y = (t.to(dtype) for t in ins)
        if self.fn is None:
            is_max = self.method == "max"
            if run.exact:
                return [torch.maximum(x, y) if is_max else torch.minimum(x, y)]
            return [TieGrad.apply(x, y, is_max)]
        if inplace_a and not run.exact and self.method == "add" and x.shape == torch.broadcast_shapes(x.shape, y.shape):
            # one gradient buffer for input 0 and the output: both inputs get 2g
            return [_Double.apply(x + y)]
        return [self.fn(x, y)]


class _Double(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return 2 * g


for _m in Binary.ops:
    register(Binary(_m))
