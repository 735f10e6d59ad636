"""Layers with weights, and their spatial relatives: dense (src/ops/linear.cc,
kernels/linear_kernels.cu), conv2d, pool2d, embedding, flat, batch_norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import DTypeError, ShapeError, UnsupportedByFlexFlowError
from .base import FLOAT, HALF, INTS, Stage
from .grad import read_table
from .spec import OpSpec, WeightDecl, register

_FUSED = {"AC_MODE_NONE": None, "AC_MODE_RELU": torch.relu, "AC_MODE_SIGMOID": torch.sigmoid}
_FUSED_INPLACE = {"AC_MODE_NONE": None, "AC_MODE_RELU": torch.relu_, "AC_MODE_SIGMOID": torch.sigmoid_}


@register
class Dense(OpSpec):
    method, op_type = "dense", "LINEAR"
    source = "src/ops/linear.cc, src/ops/kernels/linear_kernels.cu"

    def infer(self, ck, input, out_dim, activation="AC_MODE_NONE", use_bias=True, datatype="DT_NONE"):
        if activation not in _FUSED:
            ck.problem(Stage.INIT, UnsupportedByFlexFlowError, f"fused activation {activation} "
                       "aborts in the kernel set-up (only RELU and SIGMOID work); add a separate "
                       "activation op", "src/ops/kernels/linear_kernels.cu:79-119")
        dtype = input.dtype if datatype == "DT_NONE" else datatype
        if dtype not in (FLOAT, HALF):
            ck.problem(Stage.INIT, DTypeError, f"{dtype} input: the kernel handles FLOAT and HALF "
                       "only", "src/ops/linear.cc Linear::init_task:424-442")
        if input.part == input.rank - 1:
            ck.parallel_problem(Stage.COMPILE, "the feature axis is partitioned", self.source)
        return [input.with_(shape=input.shape[:-1] + (int(out_dim),), dtype=dtype)]

    def weights(self, input, out_dim, use_bias=True, **a):
        ws = [WeightDecl((int(out_dim), input.shape[-1]), "kernel")]
        if use_bias:
            ws.append(WeightDecl((int(out_dim),), "bias", "zeros"))
        return ws

    def stored_output_grad(self, grad, output, activation="AC_MODE_NONE", **a):
        """The fused activation's backward rewrites output_grad in place
        (linear_kernels.cu backward_kernel:660-665, cuda_helper.cu reluBackward:77,
        sigmoid_backward_function:104)."""
        if activation == "AC_MODE_RELU":
            return grad * (output > 0)
        if activation == "AC_MODE_SIGMOID":
            return grad * output * (1 - output)
        return grad

    def forward(self, run, ins, ws, activation="AC_MODE_NONE", use_bias=True, **a):
        y = F.linear(ins[0].to(ws[0].dtype), ws[0], ws[1] if use_bias else None)
        act = _FUSED_INPLACE.get(activation)
        return [act(y) if act else y]            # in place: the linear's backward needs no y


def conv_output(size, kernel, stride, padding, what, ck):
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1 or stride < 1:
        ck.fail(ShapeError, f"{what}: kernel {kernel}, stride {stride}, padding {padding} do not fit "
                f"an input of size {size}", "src/ops/conv_2d.cc, src/ops/pool_2d.cc")
    return out


def effective_padding(size, out, kernel, stride):
    """init_task recomputes the padding from the output size and ignores the user's
    value (conv_2d.cc Conv2D::init_task:623-626, pool_2d.cc Pool2D::init_task:352-355),
    with C++ int division, which truncates toward zero."""
    twice = (out - 1) * stride + kernel - size + 1
    return twice // 2 if twice >= 0 else -(-twice // 2)


PADDING_SRC = "src/ops/conv_2d.cc Conv2D::init_task:623-626, src/ops/pool_2d.cc Pool2D::init_task:352-355"


class _Spatial(OpSpec):
    source = "src/ops/conv_2d.cc, src/ops/pool_2d.cc"

    def _shapes(self, ck, input, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w):
        if input.rank != 4:
            ck.fail(ShapeError, f"needs a 4-D NCHW input, got {input.shape}", self.source)
        if input.dtype != FLOAT:
            ck.problem(Stage.FORWARD, DTypeError, f"{input.dtype} input: the kernel is float only",
                       self.source)
        n, c, h, w = input.shape
        oh = conv_output(h, kernel_h, stride_h, padding_h, self.method, ck)
        ow = conv_output(w, kernel_w, stride_w, padding_w, self.method, ck)
        eff = (effective_padding(h, oh, kernel_h, stride_h), effective_padding(w, ow, kernel_w, stride_w))
        if min(eff) < 0:
            ck.problem(Stage.INIT, UnsupportedByFlexFlowError, f"kernel ({kernel_h}, {kernel_w}) and "
                       f"stride ({stride_h}, {stride_w}) on {h}x{w}: FlexFlow recomputes the padding as "
                       f"{eff} and hands cuDNN a negative padding (as read); choose sizes with "
                       "(in + 2*padding - kernel) % stride <= 1", PADDING_SRC)
        elif eff != (padding_h, padding_w):
            ck.hazard(f"padding ({padding_h}, {padding_w}) runs as {eff}: FlexFlow recomputes it from "
                      "the output size", PADDING_SRC)
        if input.part not in (None, 0):
            ck.parallel_problem(Stage.COMPILE, "a spatial or channel axis is partitioned", self.source)
        return n, c, oh, ow, eff

    def padding(self, run, size_h, size_w, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w,
                padding_h, padding_w):
        if run.exact:
            return padding_h, padding_w
        return (effective_padding(size_h, out_h, kernel_h, stride_h),
                effective_padding(size_w, out_w, kernel_w, stride_w))


@register
class Conv2D(_Spatial):
    method, op_type = "conv2d", "CONV2D"
    source = "src/ops/conv_2d.cc, src/ops/kernels/conv_2d_kernels.cu"

    def infer(self, ck, input, out_channels, kernel_h, kernel_w, stride_h, stride_w, padding_h,
              padding_w, activation="AC_MODE_NONE", groups=1, use_bias=True):
        if activation not in ("AC_MODE_NONE", "AC_MODE_RELU"):
            ck.fail(UnsupportedByFlexFlowError, f"FlexFlow fuses only RELU and silently ignores "
                    f"{activation}; add a separate activation op", "src/ops/kernels/conv_2d_kernels.cu "
                    "forward_kernel:248-282")
        n, c, oh, ow, _ = self._shapes(ck, input, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w)
        if c % groups or out_channels % groups:
            ck.fail(ShapeError, f"channels {c}->{out_channels} are not divisible by groups={groups}",
                    self.source)
        return [input.with_(shape=(n, int(out_channels), oh, ow))]

    def stored_output_grad(self, grad, output, activation="AC_MODE_NONE", **a):
        """The fused ReLU's backward masks output_grad in place (conv_2d_kernels.cu:298-312)."""
        return grad * (output > 0) if activation == "AC_MODE_RELU" else grad

    def weights(self, input, out_channels, kernel_h, kernel_w, groups=1, use_bias=True, **a):
        ws = [WeightDecl((int(out_channels), input.shape[1] // groups, kernel_h, kernel_w), "kernel")]
        if use_bias:
            ws.append(WeightDecl((int(out_channels),), "bias", "zeros"))
        return ws

    def forward(self, run, ins, ws, out_channels, kernel_h, kernel_w, stride_h, stride_w, padding_h,
                padding_w, activation="AC_MODE_NONE", groups=1, use_bias=True):
        x = ins[0]
        h, w = x.shape[2:]
        oh = (h + 2 * padding_h - kernel_h) // stride_h + 1
        ow = (w + 2 * padding_w - kernel_w) // stride_w + 1
        pad = self.padding(run, h, w, oh, ow, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w)
        y = F.conv2d(x, ws[0], ws[1] if use_bias else None, (stride_h, stride_w), pad, groups=groups)
        return [torch.relu(y) if activation == "AC_MODE_RELU" else y]


@register
class Pool2D(_Spatial):
    method, op_type = "pool2d", "POOL2D"
    source = "src/ops/pool_2d.cc, src/ops/kernels/pool_2d_kernels.cu"

    def infer(self, ck, input, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w,
              pool_type="POOL_MAX", activation="AC_MODE_NONE"):
        if activation != "AC_MODE_NONE":
            ck.fail(UnsupportedByFlexFlowError, "FlexFlow stores the activation but never applies it; "
                    "add a separate activation op", "src/ops/kernels/pool_2d_kernels.cu")
        if pool_type not in ("POOL_MAX", "POOL_AVG"):
            ck.fail(TypeError, f"pool_type must be a PoolType, got {pool_type!r}", self.source)
        if 2 * padding_h > kernel_h or 2 * padding_w > kernel_w:
            ck.fail(ShapeError, "padding must be at most half the kernel size (cuDNN)", self.source)
        n, c, oh, ow, _ = self._shapes(ck, input, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w)
        return [input.with_(shape=(n, c, oh, ow))]

    def forward(self, run, ins, ws, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w,
                pool_type="POOL_MAX", activation="AC_MODE_NONE"):
        x = ins[0]
        h, w = x.shape[2:]
        oh = (h + 2 * padding_h - kernel_h) // stride_h + 1
        ow = (w + 2 * padding_w - kernel_w) // stride_w + 1
        pad = self.padding(run, h, w, oh, ow, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w)
        k, s = (kernel_h, kernel_w), (stride_h, stride_w)
        if pool_type == "POOL_MAX":
            return [F.max_pool2d(x, k, s, pad)]
        return [F.avg_pool2d(x, k, s, pad, count_include_pad=False)]   # cuDNN's EXCLUDE_PADDING


class _AvgBag(torch.autograd.Function):
    """AGGR_MODE_AVG: the forward scales by 1/n after every addition (Σ e_j (1/n)^(n-j+1),
    embedding_kernels.cu embed_forward_with_aggr:258-265), the backward gives each id
    grad/n (:341-347)."""

    @staticmethod
    def forward(ctx, rows):
        n = rows.shape[-2]
        ctx.n = n
        coef = torch.tensor([(1.0 / n) ** (n - j) for j in range(n)], dtype=rows.dtype, device=rows.device)
        return (rows * coef[:, None]).sum(-2)

    @staticmethod
    def backward(ctx, g):
        return g.unsqueeze(-2).expand(*g.shape[:-1], ctx.n, g.shape[-1]) / ctx.n


@register
class Embedding(OpSpec):
    method, op_type = "embedding", "EMBEDDING"
    source = "src/ops/embedding.cc, src/ops/kernels/embedding_kernels.cu"

    def infer(self, ck, input, num_embeddings, embedding_dim, aggr, dtype="DT_FLOAT"):
        if input.dtype not in INTS:
            ck.problem(Stage.FORWARD, DTypeError, f"ids must be DT_INT32 or DT_INT64, got {input.dtype}",
                       "src/ops/embedding.cc forward_task:520-521")
        if aggr not in ("AGGR_MODE_NONE", "AGGR_MODE_SUM", "AGGR_MODE_AVG"):
            ck.fail(TypeError, f"aggr must be an AggrMode, got {aggr!r}", self.source)
        if aggr == "AGGR_MODE_AVG":
            ck.hazard("AGGR_MODE_AVG scales by 1/n after every addition in the forward "
                      "(e1/4 + e2/2 for two ids) but backpropagates the plain mean",
                      "src/ops/kernels/embedding_kernels.cu:258-265,341-347")
        shape = input.shape if aggr == "AGGR_MODE_NONE" else input.shape[:-1]
        return [input.with_(shape=tuple(shape) + (int(embedding_dim),), dtype=dtype)]

    def weights(self, num_embeddings, embedding_dim, dtype="DT_FLOAT", **a):
        return [WeightDecl((int(num_embeddings), int(embedding_dim)), "weight", dtype=dtype)]

    def forward(self, run, ins, ws, num_embeddings, embedding_dim, aggr, dtype="DT_FLOAT"):
        ids = ins[0]
        if aggr == "AGGR_MODE_NONE" and run.cache.get("table_views") and _reads_whole_table(run, ids, num_embeddings):
            w = ws[0]                        # every row in order: the table itself, not a copy
            if w.requires_grad and torch.is_grad_enabled():
                return [read_table(w, bool(run.cache.get("owns_table_grad")))]
            return [w.unsqueeze(0)]
        same_rows = _checked_ids(run, ids, num_embeddings)
        ids = ids if ids.dtype == torch.int32 else ids.long()
        if same_rows and aggr == "AGGR_MODE_NONE":
            # every sample has the ids of the first (lifted constants such as position
            # buckets): look them up once; the table's gradient sums over the batch first,
            # then over positions (FlexFlow adds with atomics, in no set order either:
            # embedding_kernels.cu embed_backward_no_aggr)
            return [F.embedding(ids[:1], ws[0]).expand(ids.shape + (ws[0].shape[-1],)).contiguous()]
        rows = F.embedding(ids, ws[0])
        if aggr == "AGGR_MODE_SUM":
            return [rows.sum(-2)]
        if aggr == "AGGR_MODE_AVG":
            return [rows.mean(-2) if run.exact else _AvgBag.apply(rows)]
        return [rows]


def _checked_ids(run, ids, rows):
    """Check that `ids` lie in [0, rows) (FlexFlow has no bounds check); whether every
    sample repeats the first one's ids. Remembered while `ids` is the same unchanged
    tensor (a lifted constant is checked once)."""
    cached = run.cache.get("checked_ids")
    if cached is not None and cached[0] is ids and cached[1] == ids._version:
        return cached[2]
    if ids.numel():
        lo, hi = (int(v) for v in torch.aminmax(ids))
        if lo < 0 or hi >= rows:
            raise ShapeError(f"embedding: ids must lie in [0, {rows}), got [{lo}, {hi}] "
                             "(FlexFlow has no bounds check and would read out of bounds)")
    same = ids.dim() > 1 and ids.shape[0] > 1 and torch.equal(ids, ids[:1].expand_as(ids))
    if not getattr(ids, "_ff_external", False):
        run.cache["checked_ids"] = (ids, ids._version, same)
    return same


def _reads_whole_table(run, ids, rows):
    """Whether `ids` is one row 0, 1, ..., rows - 1 (a shared table read as a matrix, see
    param_plan.py), remembered while `ids` is the same unchanged tensor. The runtime
    enables the check (`run.cache["table_views"]`, runtime/fusion.py)."""
    cached = run.cache.get("whole_table")
    if cached is not None and cached[0] is ids and cached[1] == ids._version:
        return cached[2]
    whole = tuple(ids.shape) == (1, rows) and torch.equal(
        ids[0], torch.arange(rows, dtype=ids.dtype, device=ids.device))
    if not getattr(ids, "_ff_external", False):
        run.cache["whole_table"] = (ids, ids._version, whole)
    return whole


@register
class Flat(OpSpec):
    method, op_type = "flat", "FLAT"
    source = "src/ops/flat.cc, src/ops/kernels/flat_kernels.cu"

    def infer(self, ck, input):
        if input.rank != 4:
            ck.fail(ShapeError, f"needs a 4-D NCHW input, got {input.shape}", self.source)
        if input.dtype != FLOAT:
            ck.problem(Stage.FORWARD, DTypeError, f"{input.dtype} input is copied as float",
                       "src/ops/flat.cc forward_task:233-244")
        n, c, h, w = input.shape
        return [input.with_(shape=(n, c * h * w), dtype=FLOAT)]

    def forward(self, run, ins, ws):
        return [ins[0].reshape(ins[0].shape[0], -1).float()]


@register
class BatchNorm(OpSpec):
    method, op_type = "batch_norm", "BATCH_NORM"
    source = "src/ops/batch_norm.cc, src/runtime/model.cc create_operator_from_layer"

    def infer(self, ck, input, relu=True):
        ck.problem(Stage.COMPILE, UnsupportedByFlexFlowError, "the layer never creates its weights "
                   "and has no operator-creation case, so compile() aborts; fold batch norm into "
                   "the preceding layer or leave it out", self.source)
        return [input]

    def forward(self, run, ins, ws, relu=True):
        raise UnsupportedByFlexFlowError("batch_norm cannot run (see compile)")
