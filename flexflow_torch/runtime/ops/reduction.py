"""Reductions, softmax, batched matmul and multi-head attention (fact sheet §4.4, §4.8)."""

import torch

from ...errors import ShapeError, UnsupportedByFlexFlowError
from ..enums import OpType
from ..initializers import GlorotUniformInitializer


class ReductionOps:
    def reduce_sum(self, input, axes, keepdims=False, name=None):
        axes = [int(a) for a in axes]
        if not axes or any(a < 0 or a >= len(input.dims) for a in axes):
            raise ShapeError(f"reduce_sum: axes must be non-negative axes of {input.dims}, got {axes}")
        return self._add_layer(OpType.REDUCE_SUM, name, [input],
                               lambda i, w: [i[0].sum(dim=axes, keepdim=keepdims)])

    def mean(self, input, dims, keepdims=False, name=None):
        raise UnsupportedByFlexFlowError(
            "mean is not implemented in FlexFlow (its builder asserts); use reduce_sum "
            "followed by scalar_multiply(1/n)")

    def softmax(self, input, axis=-1, name=None):
        """Softmax over the last axis, the only one FlexFlow supports."""
        if axis not in (-1, len(input.dims) - 1):
            raise UnsupportedByFlexFlowError(
                f"softmax: FlexFlow only supports the last axis (-1), got axis={axis}; "
                "transpose the axis to the end first")
        return self._add_layer(OpType.SOFTMAX, name, [input],
                               lambda i, w: [torch.softmax(i[0], dim=-1)])

    def batch_matmul(self, A, B, a_seq_length_dim=None, b_seq_length_dim=None, name=None):
        """(..., M, K) @ (..., K, N); equal ranks and equal batch axes, no broadcasting."""
        for what, d in (("a_seq_length_dim", a_seq_length_dim), ("b_seq_length_dim", b_seq_length_dim)):
            if d not in (None, -1, 0, 1):
                raise UnsupportedByFlexFlowError(f"batch_matmul: {what} may only be None, -1, 0 or 1")
        if len(A.dims) != len(B.dims) or len(A.dims) < 2:
            raise ShapeError(f"batch_matmul: operands need the same rank >= 2, got {A.dims} and {B.dims}")
        if A.dims[:-2] != B.dims[:-2]:
            raise ShapeError(f"batch_matmul: batch axes {A.dims[:-2]} and {B.dims[:-2]} must be "
                             "equal (FlexFlow does not broadcast)")
        if A.dims[-1] != B.dims[-2]:
            raise ShapeError(f"batch_matmul: {A.dims} @ {B.dims}: inner sizes differ")
        return self._add_layer(OpType.BATCH_MATMUL, name, [A, B],
                               lambda i, w: [torch.matmul(i[0], i[1])])

    def multihead_attention(self, query, key, value, embed_dim, num_heads, kdim=0, vdim=0,
                            dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                            kernel_initializer=None, name=None):
        """FlexFlow's (cuDNN) attention: per-head projections of size kdim/vdim, no
        1/sqrt(d) scaling, no mask; `bias`, `dropout`, `add_zero_attn` are ignored as
        in FlexFlow. The packed weight (num_heads, kdim*qf + kdim*kf + vdim*vf +
        embed_dim*vdim) holds, per head, Wq | Wk | Wv | Wo row-major (FlexFlow's cuDNN
        packing is opaque, so weights do not transfer between the two)."""
        if add_bias_kv:
            raise UnsupportedByFlexFlowError("multihead_attention: add_bias_kv=True asserts in FlexFlow")
        for t in (query, key, value):
            if len(t.dims) != 3:
                raise ShapeError(f"multihead_attention needs 3-D (batch, seq, features) inputs, got {t.dims}")
        if key.dims[1] != value.dims[1] or query.dims[0] != key.dims[0]:
            raise ShapeError("multihead_attention: key and value need the same batch and sequence length")
        if kdim <= 0 or vdim <= 0 or kdim != vdim:
            raise UnsupportedByFlexFlowError(
                "multihead_attention: pass kdim = vdim = per-head size (e.g. embed_dim // "
                "num_heads); FlexFlow's layer and operator disagree when they differ")
        qf, kf, vf = query.dims[2], key.dims[2], value.dims[2]
        sizes = [kdim * qf, kdim * kf, vdim * vf, embed_dim * vdim]
        weights = [self._weight((num_heads, sum(sizes)),
                                kernel_initializer or GlorotUniformInitializer(0), "weight")]

        def fn(i, w):
            q, k, v = i
            wq, wk, wv, wo = torch.split(w[0], sizes, dim=1)
            qh = torch.einsum("bsf,hdf->bhsd", q, wq.reshape(num_heads, kdim, qf))
            kh = torch.einsum("bsf,hdf->bhsd", k, wk.reshape(num_heads, kdim, kf))
            vh = torch.einsum("bsf,hdf->bhsd", v, wv.reshape(num_heads, vdim, vf))
            attn = torch.softmax(qh @ kh.transpose(-1, -2), dim=-1)
            return [torch.einsum("bhsd,hed->bse", attn @ vh, wo.reshape(num_heads, embed_dim, vdim))]
        return self._add_layer(OpType.MULTIHEAD_ATTENTION, name, [query, key, value], fn,
                               weights=weights)
