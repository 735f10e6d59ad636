"""Data movement: concat, split, reshape, transpose, reverse, gather (src/ops/*.cc,
src/ops/kernels/*_kernels.cu)."""

from __future__ import annotations

import itertools
import math

import torch

from ..errors import DTypeError, ShapeError, UnsupportedByFlexFlowError
from .base import FLOAT, HALF, INT32, INT64, INTS, BOOLEAN, DOUBLE, Stage
from .grad import TableLookup, lookup_sink
from .spec import DOUBLE as DOUBLE_GRAD, OpSpec, register


FLOAT_ACCESSORS = ("src/runtime/accessor.cc:16,99,103 (the kernels of concat, split, flat, transpose, "
                   "reduce_sum, batch_matmul, dropout, conv2d, pool2d)")


def float_accessor(ck, meta, bit_copy=True, name="input"):
    """Kernels that read every region through a float accessor: 8-byte and 2-byte types
    fail Realm's stride check; INT32 passes with its bits read as float."""
    if meta.dtype in (INT64, HALF, DOUBLE):
        ck.problem(Stage.FORWARD, DTypeError, f"{name} is {meta.dtype}: the kernel maps every region "
                   "as float and Realm's stride check fails (use float or DT_INT32)", FLOAT_ACCESSORS)
    elif meta.dtype == INT32 and not bit_copy:
        ck.problem(Stage.FORWARD, DTypeError, f"{name} is DT_INT32: its bits are read as float and "
                   "computed on", FLOAT_ACCESSORS)
    elif meta.dtype == BOOLEAN:
        ck.problem(Stage.COMPILE, DTypeError, "DT_BOOLEAN tensors cannot be mapped",
                   "src/runtime/model.cc map_tensor_with_dim2")


@register
class Concat(OpSpec):
    method, op_type = "concat", "CONCAT"
    source = "src/ops/concat.cc, src/ops/kernels/concat_kernels.cu"
    tensors = ("tensors",)

    def infer(self, ck, tensors, axis):
        if not tensors or len(tensors) > 256:
            ck.fail(ShapeError, f"takes 1 to 256 tensors, got {len(tensors)}", self.source)
        first = tensors[0]
        axis = axis % first.rank
        for t in tensors:
            if t.rank != first.rank or t.dtype != first.dtype:
                ck.fail(ShapeError, "all tensors need the same rank and data type, got "
                        + ", ".join(f"{t.shape} {t.dtype}" for t in tensors), "src/ops/concat.cc FFModel::concat:80,91")
            if any(a != b for j, (a, b) in enumerate(zip(t.shape, first.shape)) if j != axis):
                ck.fail(ShapeError, f"on axis {axis} the other axes differ: "
                        + ", ".join(str(t.shape) for t in tensors), "src/ops/concat.cc:132")
        float_accessor(ck, first)
        parts = {t.part for t in tensors}
        if len(parts) > 1:
            ck.parallel_problem(Stage.COMPILE, f"inputs partitioned differently ({sorted(parts, key=str)})",
                                "src/ops/concat.cc:132")
        if first.part == axis:
            ck.parallel_problem(Stage.COMPILE, "concatenating along the partitioned axis",
                                "src/ops/concat.cc:136")
        shape = list(first.shape)
        shape[axis] = sum(t.shape[axis] for t in tensors)
        return [first.with_(shape=tuple(shape))]

    def forward(self, run, ins, ws, axis):
        return [torch.cat(ins, dim=axis % ins[0].dim())]


@register
class Split(OpSpec):
    method, op_type = "split", "SPLIT"
    source = "src/ops/split.cc, src/ops/kernels/split_kernels.cu"

    def infer(self, ck, input, sizes, axis):
        if not 0 <= axis < input.rank:
            ck.fail(ShapeError, f"axis must be in [0, {input.rank}) (FlexFlow computes rank-1-axis and "
                    f"takes no negative axis), got {axis}", "src/ops/split.cc FFModel::split")
        length = input.shape[axis]
        if isinstance(sizes, int):
            if sizes < 1 or length % sizes:
                ck.fail(ShapeError, f"{sizes} equal pieces do not divide axis {axis} of size {length}",
                        self.source)
            sizes = [length // sizes] * sizes
        sizes = [int(s) for s in sizes]
        if min(sizes) < 1:
            ck.fail(ShapeError, f"sizes {sizes} must be positive", self.source)
        if sum(sizes) != length:
            ck.problem(Stage.COMPILE, ShapeError, f"sizes {sizes} must sum to {length}",
                       "src/ops/split.cc Split::Split:135-136")
        float_accessor(ck, input)
        if input.part == axis:
            ck.parallel_problem(Stage.COMPILE, "splitting along the partitioned axis", "src/ops/split.cc:130")
        return [input.with_(shape=input.shape[:axis] + (s,) + input.shape[axis + 1:]) for s in sizes]

    def forward(self, run, ins, ws, sizes, axis):
        length = ins[0].shape[axis]
        if isinstance(sizes, int):
            sizes = [length // sizes] * sizes
        return list(torch.split(ins[0], [int(s) for s in sizes], dim=axis))


def reshape_partition(ck, input, shape):
    """reshape.cc Reshape::Reshape:127-133: the input's parallel dims are copied from the
    outermost axis inward while the sizes match; a partition past that point is lost,
    and Reshape::init (reshape.cc:146) aborts on the mismatched index spaces."""
    if input.part is None:
        return None
    same = 0
    while same < min(len(shape), input.rank) and shape[same] == input.shape[same]:
        same += 1
    if input.part < same:
        return input.part
    ck.parallel_problem(Stage.INIT, f"{input.shape} -> {tuple(shape)} changes the partitioned axis "
                        f"{input.part}", "src/ops/reshape.cc:127-146")
    return None


@register
class Reshape(OpSpec):
    method, op_type = "reshape", "RESHAPE"
    source = "src/ops/reshape.cc, src/ops/kernels/reshape_kernels.cu"

    def infer(self, ck, input, shape):
        shape = tuple(int(s) for s in shape)
        if any(s <= 0 for s in shape):
            ck.fail(ShapeError, f"every entry must be > 0 (FlexFlow has no -1), got {shape}", self.source)
        if math.prod(shape) != math.prod(input.shape):
            ck.fail(ShapeError, f"{input.shape} cannot become {shape} (volumes differ)",
                    "src/ops/reshape.cc:136")
        if input.dtype in (HALF, BOOLEAN):
            ck.problem(Stage.FORWARD, DTypeError, f"{input.dtype} input", "src/ops/reshape.cc forward_task:257")
        return [input.with_(shape=shape, part=reshape_partition(ck, input, shape))]

    def forward(self, run, ins, ws, shape):
        return [ins[0].reshape(tuple(int(s) for s in shape))]


class _Accumulating(torch.autograd.Function):
    """out = previous output + T(in): transpose's kernel adds into its output buffer,
    which nothing zeroes (transpose_kernels.cu transpose_simple_kernel:78)."""

    @staticmethod
    def forward(ctx, x, previous, perm):
        ctx.perm = perm
        return previous + x.permute(perm)

    @staticmethod
    def backward(ctx, g):
        inv = [ctx.perm.index(i) for i in range(len(ctx.perm))]
        return g.permute(inv), None, None


@register
class Transpose(OpSpec):
    method, op_type = "transpose", "TRANSPOSE"
    source = "src/ops/transpose.cc, src/ops/kernels/transpose_kernels.cu"
    input_grad = DOUBLE_GRAD   # in_grad = 2*in_grad_old + T^T(out_grad) (transpose_kernels.cu:133-140)

    def infer(self, ck, input, perm):
        perm = [int(p) for p in perm]
        if sorted(perm) != list(range(input.rank)):
            ck.fail(ShapeError, f"perm {perm} is not a permutation of the {input.rank} axes", self.source)
        float_accessor(ck, input, bit_copy=False)
        ck.hazard("the kernel adds into its output buffer (out += T(in)), which is never zeroed: the "
                  "output is the sum of every forward so far, and the backward doubles the gradient "
                  "already in the input's buffer", "src/ops/kernels/transpose_kernels.cu:78,107,140")
        part = None if input.part is None else perm.index(input.part)
        return [input.with_(shape=tuple(input.shape[p] for p in perm), part=part)]

    def forward(self, run, ins, ws, perm):
        perm = [int(p) for p in perm]
        x = ins[0]
        if run.exact:
            return [x.permute(perm).contiguous()]
        previous = run.state.get("output")
        if previous is None:
            previous = torch.zeros(tuple(x.shape[p] for p in perm), dtype=x.dtype, device=x.device)
        y = _Accumulating.apply(x, previous, perm)
        run.state["output"] = y.detach()
        return [y]


@register
class Reverse(OpSpec):
    method, op_type = "reverse", "REVERSE"
    source = "src/ops/reverse.cc"

    def infer(self, ck, input, axis):
        ck.fail(UnsupportedByFlexFlowError, "not implemented (its builder asserts); reverse the data "
                "before feeding it, or gather with reversed indices", "src/ops/reverse.cc FFModel::reverse")


@register
class Gather(OpSpec):
    method, op_type = "gather", "GATHER"
    source = "src/ops/gather.cc, src/ops/kernels/gather_kernels.cu"
    tensors = ("input", "index")

    def infer(self, ck, input, index, dim):
        if index.dtype not in INTS:
            ck.fail(DTypeError, f"index must be DT_INT32 or DT_INT64, got {index.dtype}",
                    "src/ops/gather.cc FFModel::gather:86")
        if not 0 <= dim < input.rank:
            ck.fail(ShapeError, f"dim must be in [0, {input.rank}), got {dim}", self.source)
        if index.rank != input.rank or any(a != b for j, (a, b) in enumerate(zip(index.shape, input.shape))
                                           if j != dim):
            ck.problem(Stage.COMPILE, ShapeError, f"index {index.shape} must equal input {input.shape} "
                       f"on every axis except {dim}", "src/ops/gather.cc:151")
        if input.dtype != FLOAT:
            ck.problem(Stage.FORWARD, DTypeError, f"input is {input.dtype}; the kernel reads float only",
                       "src/ops/kernels/gather_kernels.cu forward_kernel_wrapper:47-66")
        if input.part != index.part:
            ck.parallel_problem(Stage.COMPILE, "input and index are partitioned differently",
                                "src/ops/gather.cc:151")
        if dim == input.part:
            ck.parallel_problem(Stage.COMPILE, "gathering along the partitioned axis", "src/ops/gather.cc:154-155")
        return [input.with_(shape=index.shape, part=index.part)]

    def forward(self, run, ins, ws, dim):
        x, idx = ins
        index, perm = checked_index(run, x, idx, dim)
        if perm is not None:          # a constant permutation: the same values as the gather
            return [permute_as(x, perm, dim).reshape(x.shape)]
        sink = lookup_sink(x) if dim == x.dim() - 1 else None
        if sink is not None:                  # a shared table's lookup (semantics/grad.py)
            return [TableLookup.apply(x, index, sink)]
        return [torch.gather(x, dim, index)]

    def index_checker(self, run, dim):
        """idx -> idx as int64 after the bounds check, for a fused use of this gather."""
        return lambda x, idx: checked_index(run, x, idx, dim)[0]


def checked_index(run, x, idx, dim):
    """(idx as int64, permutation or None) after FlexFlow's missing bounds check, kept
    while `idx` is the same unchanged tensor (constants change once per data pass).
    `run.cache["shapes"]` may list per-sample shapes whose axis permutations the index
    is tested against (a transpose recorded as a gather): (shape, permute order)."""
    cached = run.cache.get("index")
    size = x.shape[dim]
    if cached is not None and cached[0] is idx and cached[1] == idx._version and cached[2] == size:
        return cached[3], cached[4]
    if idx.numel():
        lo, hi = (int(v) for v in torch.aminmax(idx))
        if lo < 0 or hi >= size:
            raise ShapeError(f"gather: indices must lie in [0, {size}) (FlexFlow has no bounds "
                             "check and would read out of bounds)")
    index = idx.long()
    perm = _permutation(run.cache.get("shapes", ()), index, x, dim)
    if not getattr(idx, "_ff_external", False):         # not a user's attached array
        run.cache["index"] = (idx, idx._version, size, index, perm)
    return index, perm


def permute_as(x, perm, dim):
    """`x` (any shape holding (batch, *shape); for a flat gather, dim 0, one *shape)
    permuted as `checked_index` found (`perm` = (shape, order)): a view."""
    shape, order = perm
    return x.reshape(((x.shape[0],) if dim else (1,)) + shape).permute(order)


def _permutation(shapes, index, x, dim):
    if dim == 0 and x.dim() == 1 and index.shape == x.shape:     # flat: one sample
        return _permutation(shapes, index.reshape(1, -1), x.reshape(1, -1), 1)
    if dim != 1 or x.dim() != 2 or index.shape != x.shape:
        return None
    for shape in shapes:
        base = torch.arange(x.shape[1], device=index.device).reshape(shape)
        for order in itertools.permutations(range(len(shape))):
            if list(order) == sorted(order):
                continue
            if torch.equal(index, base.permute(order).reshape(1, -1).expand_as(index)):
                return tuple(shape), (0,) + tuple(1 + k for k in order)
    return None
