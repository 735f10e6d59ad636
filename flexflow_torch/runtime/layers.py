"""Layers: the runtime record of one operator, and FlexFlow's `Op` wrapper classes.

`FFModel.get_layers()` returns `Op` wrappers (one subclass per operator type, as in
FlexFlow's Python API); each wraps an internal `Layer` that holds the operator's
inputs, outputs, weights and the PyTorch function that computes it.
"""

from ..errors import ModelStateError
from .enums import OpType
from .tensor import Parameter, Tensor


class Layer:
    """One operator of the model: its rules (`spec`, a `semantics.OpSpec`), arguments,
    input/output/weight handles, the problems FlexFlow would hit later (raised at the
    matching call), and the state its forward keeps between passes (`run`)."""

    def __init__(self, op_type, name, spec, inputs, attrs, weights=(), problems=(), run=None):
        self.op_type = op_type
        self.name = name
        self.spec = spec
        self.inputs = list(inputs)
        self.attrs = dict(attrs)
        self.weights = list(weights)
        self.problems = list(problems)
        self.run = run
        self.outputs = []
        self.op = None
        self.idx = None
        self.inplace_input = None   # input handle whose storage the output reuses
        self.regularizer = None     # L2 lambda for dense kernels
        self.grad_coefficients = [1.0] * len(self.inputs)

    def forward(self, values, weights):
        return self.spec.forward(self.run, values, weights, **self.attrs)

    def describe(self):
        label = f"'{self.name}'" if self.name else f"#{self.idx}"
        return f"{self.op_type.name.lower()} layer {label}"


class Op:
    """FlexFlow's operator wrapper (what `get_layers()` and `owner_op` return)."""

    __slots__ = ["handle", "idx", "name"]

    def __init__(self, handle, idx=None, name=None):
        self.handle = handle
        self.idx = idx
        self.name = name

    def __repr__(self):
        return f"{type(self).__name__}(idx={self.idx}, name={self.name!r})"

    def get_number_parameters(self):
        return len(self.handle.weights)

    def get_parameter_by_id(self, id):
        weights = self.handle.weights
        if not 0 <= id < len(weights):
            raise IndexError(f"{self.handle.describe()} has {len(weights)} parameters, "
                             f"no parameter {id}")
        return Parameter(weights[id])

    def get_number_inputs(self):
        return len(self.handle.inputs)

    def get_input_by_id(self, id):
        return Tensor(self.handle.inputs[id])

    def get_number_outputs(self):
        return len(self.handle.outputs)

    def get_output_by_id(self, id):
        return Tensor(self.handle.outputs[id])

    def init(self, model):
        raise ModelStateError("Op.init is deprecated in FlexFlow; call ffmodel.init_layers()")

    def forward(self, model):
        raise ModelStateError("Op.forward is deprecated in FlexFlow; call ffmodel.forward()")

    def get_output_tensor(self):
        return self.get_output_by_id(0)


class _WeightBias:
    __slots__ = ()

    def get_weight_tensor(self):
        return self.get_parameter_by_id(0)

    def get_bias_tensor(self):
        return self.get_parameter_by_id(1)


class _InputOutput:
    __slots__ = ()

    def get_input_tensor(self):
        return self.get_input_by_id(0)

    def get_output_tensor(self):
        return self.get_output_by_id(0)


def _plain(name):
    return type(name, (Op,), {"__slots__": ()})


class Conv2D(_InputOutput, _WeightBias, Op):
    __slots__ = ()


class Linear(_InputOutput, _WeightBias, Op):
    __slots__ = ()


class Pool2D(_InputOutput, Op):
    __slots__ = ()


class Flat(_InputOutput, Op):
    __slots__ = ()


class Embedding(Op):
    __slots__ = ()

    def get_weight_tensor(self):
        return self.get_parameter_by_id(0)


class LayerNorm(_WeightBias, Op):
    __slots__ = ()


class ResidualLayerNorm(Op):
    __slots__ = ()

    def get_weight_tensor(self):
        return self.get_parameter_by_id(1)

    def get_bias_tensor(self):
        return self.get_parameter_by_id(2)


class AddBiasResidualLayerNorm(Op):
    __slots__ = ()

    def get_attn_bias_tensor(self):
        return self.get_parameter_by_id(0)

    def get_weight_tensor(self):
        return self.get_parameter_by_id(1)

    def get_bias_tensor(self):
        return self.get_parameter_by_id(2)


Exp, Sin, Cos = _plain("Exp"), _plain("Sin"), _plain("Cos")
Add, Subtract, Multiply, Divide = (_plain(n) for n in ("Add", "Subtract", "Multiply", "Divide"))
Max, Min, ReduceSum, Mean = (_plain(n) for n in ("Max", "Min", "ReduceSum", "Mean"))
Softmax, Concat, BatchNorm, Dropout = (_plain(n) for n in ("Softmax", "Concat", "BatchNorm", "Dropout"))
ScalarMultiply, ScalarAdd, ScalarSub, ScalarTrueDiv = (
    _plain(n) for n in ("ScalarMultiply", "ScalarAdd", "ScalarSub", "ScalarTrueDiv"))
Rsqrt, Pow, Relu, Gelu, Sigmoid, Tanh, Elu = (
    _plain(n) for n in ("Rsqrt", "Pow", "Relu", "Gelu", "Sigmoid", "Tanh", "Elu"))
Batch_Norm, Batch_Matmul, Split, Reshape = (
    _plain(n) for n in ("Batch_Norm", "Batch_Matmul", "Split", "Reshape"))
Gather, Identity, Transpose, Reverse = (_plain(n) for n in ("Gather", "Identity", "Transpose", "Reverse"))
MultiHeadAttention, RMSNorm, SigmoidSiluMulti, ResidualRMSNorm = (
    _plain(n) for n in ("MultiHeadAttention", "RMSNorm", "SigmoidSiluMulti", "ResidualRMSNorm"))
# Serving-only operators (never built here; present as in FlexFlow's API).
IncMultiHeadAttention, SpecIncMultiHeadSelfAttention, TreeIncMultiHeadSelfAttention = (
    _plain(n) for n in ("IncMultiHeadAttention", "SpecIncMultiHeadSelfAttention",
                        "TreeIncMultiHeadSelfAttention"))
ArgTopK, BeamTopK, Sampling, ArgMax = (
    _plain(n) for n in ("ArgTopK", "BeamTopK", "Sampling", "ArgMax"))
SERVING_WRAPPERS = ("IncMultiHeadAttention", "SpecIncMultiHeadSelfAttention",
                    "TreeIncMultiHeadSelfAttention", "ArgTopK", "BeamTopK", "Sampling", "ArgMax")

WRAPPERS = {
    OpType.CONV2D: Conv2D, OpType.POOL2D: Pool2D, OpType.LINEAR: Linear,
    OpType.EMBEDDING: Embedding, OpType.FLAT: Flat, OpType.CONCAT: Concat,
    OpType.SOFTMAX: Softmax, OpType.EXP: Exp, OpType.SIN: Sin, OpType.COS: Cos,
    OpType.ADD: Add, OpType.SUBTRACT: Subtract, OpType.MULTIPLY: Multiply,
    OpType.DIVIDE: Divide, OpType.MAX: Max, OpType.MIN: Min,
    OpType.REDUCE_SUM: ReduceSum, OpType.MEAN: Mean,
    OpType.SCALAR_MULTIPLY: ScalarMultiply, OpType.SCALAR_ADD: ScalarAdd,
    OpType.SCALAR_SUB: ScalarSub, OpType.SCALAR_TRUEDIV: ScalarTrueDiv,
    OpType.GELU: Gelu, OpType.RELU: Relu, OpType.SIGMOID: Sigmoid, OpType.TANH: Tanh,
    OpType.ELU: Elu, OpType.DROPOUT: Dropout, OpType.BATCH_NORM: BatchNorm,
    OpType.LAYER_NORM: LayerNorm, OpType.RESIDUAL_LAYERNORM: ResidualLayerNorm,
    OpType.ADD_BIAS_RESIDUAL_LAYERNORM: AddBiasResidualLayerNorm,
    OpType.SIGMOID_SILU_MULTI: SigmoidSiluMulti, OpType.BATCH_MATMUL: Batch_Matmul,
    OpType.SPLIT: Split, OpType.RESHAPE: Reshape, OpType.IDENTITY: Identity,
    OpType.TRANSPOSE: Transpose, OpType.REVERSE: Reverse,
    OpType.MULTIHEAD_ATTENTION: MultiHeadAttention, OpType.RMS_NORM: RMSNorm,
    OpType.RESIDUAL_RMS_NORM: ResidualRMSNorm, OpType.RSQRT: Rsqrt, OpType.POW: Pow,
    OpType.GATHER: Gather,
}
