"""Shape operators (fact sheet §4.7): concat, split, reshape, transpose, gather."""

import math

import torch

from ...errors import DTypeError, ShapeError, UnsupportedByFlexFlowError
from ..enums import DataType, OpType


class ShapeOps:
    def concat(self, tensors, axis, name=None):
        if not isinstance(tensors, list):
            raise TypeError("concat takes a Python list of tensors")
        if not tensors or len(tensors) > 256:
            raise ShapeError(f"concat takes 1 to 256 tensors, got {len(tensors)}")
        rank = len(tensors[0].dims)
        axis = axis % rank
        for t in tensors:
            if len(t.dims) != rank or t.data_type != tensors[0].data_type:
                raise ShapeError("concat: all tensors need the same rank and data type, got "
                                 + ", ".join(f"{t.dims} {t.data_type.name}" for t in tensors))
            if any(a != b for j, (a, b) in enumerate(zip(t.dims, tensors[0].dims)) if j != axis):
                raise ShapeError(f"concat on axis {axis}: other axes differ: "
                                 + ", ".join(str(t.dims) for t in tensors))
        return self._add_layer(OpType.CONCAT, name, tensors,
                               lambda i, w: [torch.cat(i, dim=axis)])

    def split(self, input, sizes, axis, name=None):
        """Split along a non-negative `axis` into `sizes` (int: that many equal pieces)."""
        if axis < 0 or axis >= len(input.dims):
            raise ShapeError(f"split: axis must be in [0, {len(input.dims)}) (FlexFlow takes "
                             f"no negative axis), got {axis}")
        length = input.dims[axis]
        if isinstance(sizes, int):
            if sizes < 1 or length % sizes:
                raise ShapeError(f"split: {sizes} equal pieces do not divide axis {axis} "
                                 f"of size {length}")
            sizes = [length // sizes] * sizes
        sizes = [int(s) for s in sizes]
        if sum(sizes) != length or min(sizes) < 1:
            raise ShapeError(f"split: sizes {sizes} must be positive and sum to {length}")
        return self._add_layer(OpType.SPLIT, name, [input],
                               lambda i, w: list(torch.split(i[0], sizes, dim=axis)),
                               num_outputs=len(sizes))

    def reshape(self, input, shape, name=None):
        shape = tuple(int(s) for s in shape)
        if any(s <= 0 for s in shape):
            raise ShapeError(f"reshape: every entry must be > 0 (FlexFlow has no -1), got {shape}")
        if math.prod(shape) != math.prod(input.dims):
            raise ShapeError(f"reshape: {input.dims} cannot become {shape} (volumes differ)")
        return self._add_layer(OpType.RESHAPE, name, [input],
                               lambda i, w: [i[0].reshape(shape)])

    def transpose(self, input, perm, name=None):
        """Output axis j is input axis perm[j] (NumPy semantics)."""
        perm = [int(p) for p in perm]
        if sorted(perm) != list(range(len(input.dims))):
            raise ShapeError(f"transpose: perm {perm} is not a permutation of the "
                             f"{len(input.dims)} axes")
        return self._add_layer(OpType.TRANSPOSE, name, [input],
                               lambda i, w: [i[0].permute(perm).contiguous()])

    def reverse(self, input, axis, name=None):
        raise UnsupportedByFlexFlowError(
            "reverse is not implemented in FlexFlow (its builder asserts); reverse the "
            "data before feeding it, or use gather with reversed indices")

    def gather(self, input, index, dim, name=None):
        """torch.gather; `index` matches `input` on every axis but `dim`."""
        if index.data_type not in (DataType.DT_INT32, DataType.DT_INT64):
            raise DTypeError(f"gather: index must be DT_INT32 or DT_INT64, got {index.data_type.name}")
        if dim < 0 or dim >= len(input.dims):
            raise ShapeError(f"gather: dim must be in [0, {len(input.dims)}), got {dim}")
        if len(index.dims) != len(input.dims) or any(
                a != b for j, (a, b) in enumerate(zip(index.dims, input.dims)) if j != dim):
            raise ShapeError(f"gather: index {index.dims} must match input {input.dims} on "
                             f"every axis except {dim}")

        def fn(i, w):
            idx = i[1]
            if idx.device.type != "meta" and idx.numel() and (
                    int(idx.min()) < 0 or int(idx.max()) >= input.dims[dim]):
                raise ShapeError(f"gather: indices must lie in [0, {input.dims[dim]})")
            return [torch.gather(i[0], dim, idx.long())]
        return self._add_layer(OpType.GATHER, name, [input, index], fn)
