"""Layers with weights over spatial or feature axes: dense, conv2d, pool2d,
embedding, batch_norm, flat (fact sheet §4.5)."""

import torch
import torch.nn.functional as F

from ...errors import DTypeError, ShapeError, UnsupportedByFlexFlowError
from ..enums import ActiMode, AggrMode, DataType, OpType, PoolType, RegularizerMode
from ..initializers import GlorotUniformInitializer, ZeroInitializer

_FUSABLE = {ActiMode.AC_MODE_NONE: None, ActiMode.AC_MODE_RELU: torch.relu,
            ActiMode.AC_MODE_SIGMOID: torch.sigmoid}


def _check_4d(op, x):
    if len(x.dims) != 4:
        raise ShapeError(f"{op} needs a 4-D NCHW input, got dims {x.dims}")


def _out_size(size, kernel, stride, padding, what):
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1 or stride < 1:
        raise ShapeError(f"{what}: kernel {kernel}, stride {stride}, padding {padding} "
                         f"do not fit an input of size {size}")
    return out


class DenseOps:
    def dense(self, input, out_dim, activation=ActiMode.AC_MODE_NONE, use_bias=True,
              datatype=DataType.DT_NONE, shared_op=None, kernel_initializer=None,
              bias_initializer=None, kernel_regularizer=None, name=None):
        """y = x W^T + b over the last axis; kernel (out_dim, in_dim) as torch.nn.Linear."""
        if activation not in _FUSABLE:
            raise UnsupportedByFlexFlowError(
                f"dense: fused activation {activation.name} aborts in FlexFlow's kernel "
                "set-up (only AC_MODE_RELU and AC_MODE_SIGMOID work); add a separate "
                "activation op after the dense layer")
        if kernel_regularizer is not None and kernel_regularizer.type != RegularizerMode.REG_MODE_L2:
            raise UnsupportedByFlexFlowError(
                f"dense: only L2 kernel regularisation exists in FlexFlow, "
                f"got {kernel_regularizer.type.name}")
        in_dim = input.dims[-1]
        out_type = input.data_type if datatype == DataType.DT_NONE else datatype
        weights = [self._weight((out_dim, in_dim), kernel_initializer or
                                GlorotUniformInitializer(0), "kernel")]
        if use_bias:
            weights.append(self._weight((out_dim,), bias_initializer or ZeroInitializer(), "bias"))
        act = _FUSABLE[activation]
        dtype = self._torch_dtype(out_type)

        def fn(i, w):
            y = F.linear(i[0].to(dtype), w[0], w[1] if use_bias else None)
            return [act(y) if act else y]
        out = self._add_layer(OpType.LINEAR, name, [input], fn, weights=weights)
        if kernel_regularizer is not None:
            out.owner_op.handle.regularizer = float(kernel_regularizer._lambda)
        return out

    def conv2d(self, input, out_channels, kernel_h, kernel_w, stride_h, stride_w,
               padding_h, padding_w, activation=ActiMode.AC_MODE_NONE, groups=1,
               use_bias=True, shared_op=None, kernel_initializer=None,
               bias_initializer=None, name=None):
        """NCHW convolution, symmetric zero padding, no dilation; kernel
        (out, in/groups, kh, kw) as torch.nn.Conv2d."""
        _check_4d("conv2d", input)
        if activation not in (ActiMode.AC_MODE_NONE, ActiMode.AC_MODE_RELU):
            raise UnsupportedByFlexFlowError(
                f"conv2d: FlexFlow only fuses AC_MODE_RELU (it silently ignores "
                f"{activation.name}); add a separate activation op")
        in_channels = input.dims[1]
        if in_channels % groups or out_channels % groups:
            raise ShapeError(f"conv2d: channels {in_channels}->{out_channels} are not "
                             f"divisible by groups={groups}")
        _out_size(input.dims[2], kernel_h, stride_h, padding_h, "conv2d")
        _out_size(input.dims[3], kernel_w, stride_w, padding_w, "conv2d")
        weights = [self._weight((out_channels, in_channels // groups, kernel_h, kernel_w),
                                kernel_initializer or GlorotUniformInitializer(0), "kernel")]
        if use_bias:
            weights.append(self._weight((out_channels,), bias_initializer or ZeroInitializer(),
                                        "bias"))
        relu = activation == ActiMode.AC_MODE_RELU

        def fn(i, w):
            y = F.conv2d(i[0], w[0], w[1] if use_bias else None, (stride_h, stride_w),
                         (padding_h, padding_w), groups=groups)
            return [torch.relu(y) if relu else y]
        return self._add_layer(OpType.CONV2D, name, [input], fn, weights=weights)

    def pool2d(self, input, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w,
               pool_type=PoolType.POOL_MAX, activation=ActiMode.AC_MODE_NONE, name=None):
        """Max or average pooling; average excludes padding (cuDNN's mode)."""
        _check_4d("pool2d", input)
        if activation != ActiMode.AC_MODE_NONE:
            raise UnsupportedByFlexFlowError(
                "pool2d: FlexFlow stores the activation but never applies it; add a "
                "separate activation op")
        if 2 * padding_h > kernel_h or 2 * padding_w > kernel_w:
            raise ShapeError("pool2d: padding must be at most half the kernel size")
        _out_size(input.dims[2], kernel_h, stride_h, padding_h, "pool2d")
        _out_size(input.dims[3], kernel_w, stride_w, padding_w, "pool2d")
        k, s, p = (kernel_h, kernel_w), (stride_h, stride_w), (padding_h, padding_w)
        if pool_type == PoolType.POOL_MAX:
            fn = lambda i, w: [F.max_pool2d(i[0], k, s, p)]  # noqa: E731
        elif pool_type == PoolType.POOL_AVG:
            fn = lambda i, w: [F.avg_pool2d(i[0], k, s, p, count_include_pad=False)]  # noqa: E731
        else:
            raise TypeError(f"pool_type must be a PoolType, got {pool_type!r}")
        return self._add_layer(OpType.POOL2D, name, [input], fn)

    def embedding(self, input, num_embeddings, embedding_dim, aggr, dtype=DataType.DT_FLOAT,
                  shared_op=None, kernel_initializer=None, name=None):
        """Table lookup; AGGR_MODE_SUM/AVG reduce the last input axis (a bag)."""
        if input.data_type not in (DataType.DT_INT32, DataType.DT_INT64):
            raise DTypeError(f"embedding needs DT_INT32 or DT_INT64 ids, got {input.data_type.name}")
        if aggr not in (AggrMode.AGGR_MODE_NONE, AggrMode.AGGR_MODE_SUM, AggrMode.AGGR_MODE_AVG):
            raise TypeError(f"aggr must be an AggrMode, got {aggr!r}")
        weights = [self._weight((num_embeddings, embedding_dim),
                                kernel_initializer or GlorotUniformInitializer(42), "weight",
                                data_type=dtype)]

        def fn(i, w):
            ids = i[0]
            if ids.device.type != "meta" and ids.numel() and (
                    int(ids.min()) < 0 or int(ids.max()) >= num_embeddings):
                raise ShapeError(f"embedding: ids must lie in [0, {num_embeddings}), got "
                                 f"[{int(ids.min())}, {int(ids.max())}] (FlexFlow has no "
                                 "bounds check and would read out of bounds)")
            y = F.embedding(ids, w[0])
            if aggr == AggrMode.AGGR_MODE_SUM:
                y = y.sum(dim=-2)
            elif aggr == AggrMode.AGGR_MODE_AVG:
                y = y.mean(dim=-2)
            return [y]
        return self._add_layer(OpType.EMBEDDING, name, [input], fn, weights=weights)

    def batch_norm(self, input, relu=True, name=None):
        raise UnsupportedByFlexFlowError(
            "batch_norm cannot be compiled by FlexFlow (its layer never creates its "
            "weights and has no operator-creation case, so compile() aborts); fold "
            "batch norm into the preceding conv2d's weights, or leave it out")

    def flat(self, input, name=None):
        """(N, C, H, W) -> (N, C*H*W), row-major; the output is float."""
        _check_4d("flat", input)
        return self._add_layer(OpType.FLAT, name, [input],
                               lambda i, w: [i[0].reshape(i[0].shape[0], -1).float()])
