"""Reductions and products: reduce_sum, mean, softmax, batch_matmul, multihead_attention."""

from __future__ import annotations

import torch

from ..errors import DTypeError, ShapeError, UnsupportedByFlexFlowError
from .base import FLOAT, HALF, INT32, INT64, Stage
from .grad import CopyGrad
from .shape import float_accessor
from .spec import OVER, OpSpec, WeightDecl, register


@register
class ReduceSum(OpSpec):
    method, op_type = "reduce_sum", "REDUCE_SUM"
    source = "src/ops/reduce.cc, src/ops/reduce.cu"

    def infer(self, ck, input, axes, keepdims=False):
        axes = [int(a) for a in axes]
        if not axes or any(a < 0 or a >= input.rank for a in axes):
            ck.fail(ShapeError, f"axes must be non-negative axes of {input.shape}, got {axes}", self.source)
        float_accessor(ck, input, bit_copy=False)
        part = input.part
        if part in axes:
            ck.parallel_problem(Stage.COMPILE, "reducing the partitioned axis", "src/ops/reduce.cc:151,167")
            part = None
        if keepdims:
            shape = tuple(1 if i in axes else s for i, s in enumerate(input.shape))
        else:
            shape = tuple(s for i, s in enumerate(input.shape) if i not in axes) or (1,)
            if part is not None:
                part -= sum(1 for a in axes if a < part)
        return [input.with_(shape=shape, part=part)]

    def forward(self, run, ins, ws, axes, keepdims=False):
        y = ins[0].sum(dim=[int(a) for a in axes], keepdim=bool(keepdims))
        return [y.reshape(1) if y.dim() == 0 else y]


@register
class Mean(OpSpec):
    method, op_type = "mean", "MEAN"
    source = "src/ops/mean.cc"

    def infer(self, ck, input, dims, keepdims=False):
        ck.fail(UnsupportedByFlexFlowError, "not implemented (its builder asserts); use reduce_sum "
                "followed by scalar_multiply(1/n)", "src/ops/mean.cc FFModel::mean")


@register
class Softmax(OpSpec):
    method, op_type = "softmax", "SOFTMAX"
    source = "src/ops/softmax.cc, src/ops/kernels/softmax.cu"
    input_grad = OVER    # cudaMemcpyAsync(input_grad, output_grad) (softmax.cu:254-258)

    def infer(self, ck, input, axis=-1):
        if axis != -1:
            ck.problem(Stage.COMPILE, UnsupportedByFlexFlowError, f"axis={axis}: only axis=-1 works "
                       "(the internal dim counts the replica dim, and any other value fails "
                       "assert(dim == 0)); transpose the axis to the end and pass -1",
                       "src/ops/softmax.cc create_operator_from_layer:132, Softmax::Softmax:151")
        if input.dtype == INT64:
            ck.problem(Stage.INIT, DTypeError, "DT_INT64 input", "src/ops/kernels/softmax.cu SoftmaxMeta:29-33")
        elif input.dtype not in (FLOAT, HALF):
            ck.problem(Stage.FORWARD, DTypeError, f"{input.dtype} input", "src/ops/kernels/softmax.cu:54-62")
        return [input]

    def forward(self, run, ins, ws, axis=-1):
        x = ins[0]
        if run.exact or not torch.is_grad_enabled():
            return [torch.softmax(x, dim=-1)]
        return [CopyGrad.apply(x, _softmax_last)]


def _softmax_last(t):
    return torch.softmax(t, dim=-1)


@register
class BatchMatmul(OpSpec):
    method, op_type = "batch_matmul", "BATCH_MATMUL"
    source = "src/ops/batch_matmul.cc, src/ops/kernels/batch_matmul.cu"
    tensors = ("A", "B")

    def infer(self, ck, A, B, a_seq_length_dim=None, b_seq_length_dim=None):
        if A.rank != B.rank or A.rank < 2:
            ck.fail(ShapeError, f"operands need the same rank >= 2, got {A.shape} and {B.shape}", self.source)
        if A.shape[:-2] != B.shape[:-2]:
            ck.fail(ShapeError, f"batch axes {A.shape[:-2]} and {B.shape[:-2]} must be equal (FlexFlow "
                    "does not broadcast)", "src/ops/batch_matmul.cc:168-171")
        if A.shape[-1] != B.shape[-2]:
            ck.fail(ShapeError, f"{A.shape} @ {B.shape}: inner sizes differ", "src/ops/batch_matmul.cc:171")
        for name, m in (("A", A), ("B", B)):
            float_accessor(ck, m, bit_copy=False, name=name)
        if a_seq_length_dim is not None or b_seq_length_dim is not None:
            ck.problem(Stage.BACKWARD, UnsupportedByFlexFlowError, "a_seq_length_dim/b_seq_length_dim "
                       "other than None: the backward asserts seq_length == 0 while Python passes -1",
                       "src/ops/batch_matmul.cc:561-564")
        if A.part != B.part:
            ck.parallel_problem(Stage.COMPILE, "A and B are partitioned differently", "src/ops/batch_matmul.cc:168-171")
        elif A.part is not None and A.part >= A.rank - 2:
            ck.parallel_problem(Stage.COMPILE, "a matrix axis is partitioned (rank-2 operands that "
                                "come from inputs)", "src/ops/batch_matmul.cc:168-171")
        dtype = FLOAT if FLOAT in (A.dtype, B.dtype) else A.dtype
        return [A.with_(shape=A.shape[:-1] + (B.shape[-1],), dtype=dtype)]

    def forward(self, run, ins, ws, a_seq_length_dim=None, b_seq_length_dim=None):
        return [torch.matmul(ins[0].float(), ins[1].float())]


@register
class MultiHeadAttention(OpSpec):
    """FlexFlow's cuDNN attention: per-head projections, no 1/sqrt(d) scaling, bias,
    dropout or mask (attention.cu:208-244). The packed weight holds, per head,
    Wq | Wk | Wv | Wo row-major (cuDNN's packing is opaque: weights do not transfer)."""
    method, op_type = "multihead_attention", "MULTIHEAD_ATTENTION"
    source = "src/ops/attention.cc, src/ops/attention.cu"
    tensors = ("query", "key", "value")
    input_grad = OVER    # cudnnMultiHeadAttnBackwardData has no beta (attention.cu:105-127)

    def infer(self, ck, query, key, value, embed_dim, num_heads, kdim=0, vdim=0, dropout=0.0,
              bias=True, add_bias_kv=False, add_zero_attn=False, same=("q", "k", "v")):
        if add_bias_kv:
            ck.fail(UnsupportedByFlexFlowError, "add_bias_kv=True asserts", "src/ops/attention.cu:351-356")
        for t in (query, key, value):
            if t.rank != 3:
                ck.fail(ShapeError, f"needs 3-D (batch, seq, features) inputs, got {t.shape}", self.source)
            if t.dtype != FLOAT:
                ck.problem(Stage.FORWARD, DTypeError, f"{t.dtype} input: float only", self.source)
        if key.shape[1] != value.shape[1] or query.shape[0] != key.shape[0]:
            ck.fail(ShapeError, "key and value need the same batch and sequence length", self.source)
        if kdim <= 0 or vdim <= 0 or kdim != vdim:
            ck.fail(UnsupportedByFlexFlowError, "pass kdim = vdim = per-head size (e.g. embed_dim // "
                    "num_heads); FlexFlow's layer and operator disagree when they differ", self.source)
        if same not in (("q", "q", "q"), ("q", "q", "v")):
            ck.problem(Stage.BACKWARD, UnsupportedByFlexFlowError, "the backward task accepts only "
                       "query = key = value or query = key != value (cross-attention aborts)",
                       "src/ops/attention.cc MultiHeadAttention::backward:728-746, backward_task:797-833")
        elif same == ("q", "q", "q"):
            ck.hazard("with query = key = value the three data gradients are written into one "
                      "buffer: the result is not their sum", "src/ops/attention.cc backward_task")
        return [query.with_(shape=query.shape[:2] + (int(embed_dim),))]

    def weights(self, query, key, value, embed_dim, num_heads, kdim=0, vdim=0, **a):
        size = kdim * query.shape[2] + kdim * key.shape[2] + vdim * value.shape[2] + embed_dim * vdim
        return [WeightDecl((int(num_heads), int(size)), "weight")]

    def forward(self, run, ins, ws, embed_dim, num_heads, kdim=0, vdim=0, **a):
        q, k, v = ins
        qf, kf, vf = q.shape[2], k.shape[2], v.shape[2]
        sizes = [kdim * qf, kdim * kf, vdim * vf, embed_dim * vdim]
        wq, wk, wv, wo = torch.split(ws[0], sizes, dim=1)
        qh = torch.einsum("bsf,hdf->bhsd", q, wq.reshape(num_heads, kdim, qf))
        kh = torch.einsum("bsf,hdf->bhsd", k, wk.reshape(num_heads, kdim, kf))
        vh = torch.einsum("bsf,hdf->bhsd", v, wv.reshape(num_heads, vdim, vf))
        attn = torch.softmax(qh @ kh.transpose(-1, -2), dim=-1)
        return [torch.einsum("bhsd,hed->bse", attn @ vh, wo.reshape(num_heads, embed_dim, vdim))]
