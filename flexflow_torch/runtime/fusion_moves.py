"""Fused groups for data movement: a permutation that converted programs record as
reshape -> gather of a constant permutation -> reshape (context.py `transpose`:
FlexFlow's own transpose adds into its output buffer), run as one `permute`.

The permuted tensor is a view of the group's input, as PyTorch's own `transpose` is, so
the copy happens only where a consumer needs contiguous memory (a matmul reads a
transposed operand as is). Values and gradients are the gather's exactly: a
permutation moves values and sums nothing. The gather's index is checked at run time
(bounds, and that it is still that permutation); otherwise the layers run one by one.
"""

from __future__ import annotations

from ..semantics.shape import checked_index, permute_as
from .enums import OpType
from .fusion import FusedGroup


class PermuteGroup(FusedGroup):
    kind = "permute"

    def __init__(self, layers, inputs, outputs, interior):
        super().__init__(layers, inputs, outputs, interior)
        self.gather, self.perm = layers[1], None

    def applies(self, values):
        """The gather's index is a permutation: (per-sample shape, permute order)."""
        x, idx = values
        # checked_index reads only the shape of the gather's input (the reshape of x): a
        # stride-0 stand-in of it, no copy of a permuted x
        flat = x.new_empty(()).expand(self.gather.inputs[0].dims)
        self.perm = checked_index(self.gather.run, flat, idx, self.gather.attrs["dim"])[1]
        return self.perm is not None

    def fused(self, values, training):
        dim = self.gather.attrs["dim"]
        y = permute_as(values[0], self.perm, dim)          # self.perm: from applies()
        dims = tuple(self.outputs[0].dims)
        y = y if tuple(y.shape) == dims else y.reshape(dims)
        # a flat gather's output feeds element-wise ops, whose outputs would take the
        # permuted layout (and later sums another order): copy it, as the gather does
        return [y if dim else y.contiguous()], {}


def _permute(ctx, i):
    flat = ctx.at(i, OpType.RESHAPE)
    gather, back = ctx.at(i + 1, OpType.GATHER), ctx.at(i + 2, OpType.RESHAPE)
    if flat is None or gather is None or back is None or "shapes" not in gather.run.cache:
        return None            # hint_layers marks the gathers that may be permutations
    x, f = flat.inputs[0], flat.outputs[0]
    if len(gather.inputs) != 2 or gather.inputs[0] is not f or back.inputs != gather.outputs:
        return None
    out = back.outputs[0]
    if any(c.inplace_input is out for c in ctx.consumers.get(id(out), [])):
        return None            # an in-place consumer would write through the view into x
    return PermuteGroup([flat, gather, back], [x, gather.inputs[1]], [out], [f, gather.outputs[0]])
