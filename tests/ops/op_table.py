"""The op table: one row per registered overload at least (test_converter_contract.py
fails when an overload has none), with operands as inputs, parameters, buffers and
constants where the op takes tensors. `aten` counts the captured graph's overloads
(after the passes, constants folded), `ff` the FlexFlow operators of the program; both
exactly. See op_harness.py for what each row checks."""

import torch
import torch.nn.functional as F

from flexflow_torch import fused_ops
from op_harness import Case

aten = torch.ops.aten


# --------------------------------------------------------------------------- operands
def X(*shape, scale=1.0):
    return lambda g: torch.randn(*shape, generator=g) * scale


def POS(*shape):
    return lambda g: torch.rand(*shape, generator=g) + 0.5


def IDS(*shape, hi=11):
    return lambda g: torch.randint(0, hi, shape, generator=g)


def MASK(*shape):
    """0/1 integers, some of each per row."""
    def make(g):
        m = (torch.rand(*shape, generator=g) > 0.4).long()
        m[..., 0], m[..., -1] = 1, 0
        return m
    return make


def ops(*makers):
    return lambda g: [m(g) for m in makers]


SOFTMAX = {"pool2d": 1, "subtract": 1, "exp": 1, "reduce_sum": 1, "pow": 1, "multiply": 1}
SOFTMAX_3D = {**SOFTMAX, "reshape": 2}        # to 4-D for pool2d and back
TO_FLOAT = {"multiply": 1}          # an integer tensor made float: multiply by a float one
KINDS3 = ("input", "param", "buffer", "constant")


def binary_rows(name, fn, overload, ff, ff_param, first=X(2, 3, 4), second=X):
    """The op with its second operand as input (2, 3, 4), then as parameter, buffer and
    constant (3, 4), broadcast over the batch."""
    rows = [Case(f"{name}-input", fn, ops(first, second(2, 3, 4)), {overload: 1}, ff)]
    for kind in KINDS3[1:]:
        rows.append(Case(f"{name}-{kind}", fn, ops(first, second(3, 4)), {overload: 1},
                         ff_param if kind == "param" else ff, kinds=("input", kind)))
    return rows


TABLE_PARAM = {"embedding": 1}     # a parameter used as a tensor: one table row read per sample

ROWS = [
    # ---------------------------------------------------------------- elementwise
    *binary_rows("add", lambda a, b: a + b, aten.add.Tensor, {"add": 1}, {"add": 1, "embedding": 1, "reshape": 1}),
    Case("add-alpha", lambda a, b: torch.add(a, b, alpha=2.5), ops(X(2, 3), X(2, 3)), {aten.add.Tensor: 1},
         {"add": 1, "scalar_multiply": 1}),
    Case("add-broadcast-param", lambda a, b: a + b, ops(X(2, 3, 4), X(4)), {aten.add.Tensor: 1},
         {"add": 1, "embedding": 1, "reshape": 2}, kinds=("input", "param")),
    Case("add.Scalar", lambda a: aten.add.Scalar(a, 2.5), ops(X(2, 3)), {aten.add.Scalar: 1}, {"scalar_add": 1}),
    *binary_rows("sub", lambda a, b: a - b, aten.sub.Tensor, {"subtract": 1},
                 {"subtract": 1, "embedding": 1, "reshape": 1}),
    Case("sub.Scalar", lambda a: aten.sub.Scalar(a, 2.5), ops(X(2, 3)), {aten.sub.Scalar: 1}, {"scalar_sub": 1}),
    Case("rsub.Scalar", lambda a: 1.5 - a, ops(X(2, 3)), {aten.rsub.Scalar: 1},
         {"scalar_multiply": 1, "scalar_add": 1}),
    Case("rsub.Tensor", lambda a, b: torch.rsub(a, b, alpha=2.0), ops(X(2, 3), X(2, 3)), {aten.rsub.Tensor: 1},
         {"scalar_multiply": 1, "subtract": 1}),
    *binary_rows("mul", lambda a, b: a * b, aten.mul.Tensor, {"multiply": 1},
                 {"multiply": 1, "embedding": 1, "reshape": 1}),
    Case("mul.Scalar", lambda a: aten.mul.Scalar(a, 2.5), ops(X(2, 3)), {aten.mul.Scalar: 1}, {"scalar_multiply": 1}),
    *binary_rows("div", lambda a, b: a / b, aten.div.Tensor, {"pow": 1, "multiply": 1},
                 {"pow": 1, "multiply": 1, "embedding": 1, "reshape": 1}, second=POS),
    Case("div.Scalar", lambda a: aten.div.Scalar(a, 4.0), ops(X(2, 3)), {aten.div.Scalar: 1},
         {"scalar_true_divide": 1}),
    Case("div-scalar-by-tensor", lambda a: 2.0 / a, ops(POS(2, 3)), {aten.reciprocal.default: 1, aten.mul.Tensor: 1},
         {"pow": 1, "scalar_multiply": 1}),
    Case("neg", lambda a: -a, ops(X(2, 3)), {aten.neg.default: 1}, {"scalar_multiply": 1}),
    Case("pow.Tensor_Scalar", lambda a: a.pow(3), ops(X(2, 3)), {aten.pow.Tensor_Scalar: 1}, {"pow": 1}),
    Case("sqrt", torch.sqrt, ops(POS(2, 3)), {aten.sqrt.default: 1}, {"pow": 1}),
    Case("reciprocal", torch.reciprocal, ops(POS(2, 3)), {aten.reciprocal.default: 1}, {"pow": 1}),
    Case("rsqrt", torch.rsqrt, ops(POS(2, 3)), {aten.rsqrt.default: 1}, {"rsqrt": 1}),
    Case("exp", torch.exp, ops(X(2, 3)), {aten.exp.default: 1}, {"exp": 1}),
    Case("sin", torch.sin, ops(X(2, 3)), {aten.sin.default: 1}, {"sin": 1}),
    Case("cos", torch.cos, ops(X(2, 3)), {aten.cos.default: 1}, {"cos": 1}),
    *binary_rows("maximum", torch.maximum, aten.maximum.default, {"max": 1},
                 {"max": 1, "embedding": 1, "reshape": 1, "identity": 1}),
    Case("minimum-broadcast", torch.minimum, ops(X(2, 3, 4), X(2, 1, 4)), {aten.minimum.default: 1},
         {"min": 1, "add": 1}),
    Case("abs", torch.abs, ops(X(2, 3)), {aten.abs.default: 1}, {"relu": 2, "scalar_multiply": 1, "add": 1}),
    Case("clone", lambda a: aten.clone.default(a) * 2, ops(X(2, 3)), {aten.clone.default: 1, aten.mul.Tensor: 1},
         {"scalar_multiply": 1}),
    Case("contiguous", lambda a: aten.contiguous.default(a) * 2, ops(X(2, 3)),
         {aten.contiguous.default: 1, aten.mul.Tensor: 1}, {"scalar_multiply": 1}),
    Case("alias", lambda a: aten.alias.default(a) * 2, ops(X(2, 3)), {aten.alias.default: 1, aten.mul.Tensor: 1},
         {"scalar_multiply": 1}),
    Case("lift_fresh_copy", lambda a: aten.lift_fresh_copy.default(a) * 2, ops(X(2, 3)),
         {aten.lift_fresh_copy.default: 1, aten.mul.Tensor: 1}, {"scalar_multiply": 1}),
    Case("detach", lambda a: aten.detach.default(a) * 2 + a, ops(X(2, 3)),
         {aten.detach.default: 1, aten.mul.Tensor: 1, aten.add.Tensor: 1}, {"scalar_multiply": 1, "add": 1},
         xfail="FlexFlow has no stop-gradient: the gradient PyTorch drops reaches the input (converted only "
               "when no parameter lies upstream, see the detach-of-parameter-path row)"),
    Case("detach-of-parameter-path", lambda a, w: aten.detach.default(a * w) + a, ops(X(2, 3), X(3)),
         {aten.mul.Tensor: 1, aten.detach.default: 1, aten.add.Tensor: 1}, {}, kinds=("input", "param"),
         extra={"unsupported": "no stop-gradient"}),
    Case("_to_copy-int-to-float", lambda a, m: a + m.float(), ops(X(2, 5), MASK(2, 5)),
         {aten.add.Tensor: 1}, {"add": 1}),            # the cast of an integer input runs on the host
    Case("int-host-value-in-float-arithmetic", lambda a, m: a + (m + 1), ops(X(2, 5), MASK(2, 5)),
         {aten.add.Tensor: 1}, {**TO_FLOAT, "add": 1}),
    Case("_to_copy-float-to-int", lambda a: (a * 2.7).long().float(), ops(X(2, 3)),
         {aten.mul.Tensor: 1, aten._to_copy.default: 2}, {}, extra={"unsupported": "float-to-integer cast"}),
    Case("dropout-train", lambda a: aten.dropout.default(a, 0.0, True), ops(X(2, 3)), {aten.dropout.default: 1},
         {"dropout": 1}),
    Case("native_dropout", lambda a: aten.native_dropout.default(a, 0.0, True)[0] * 2, ops(X(2, 3)),
         {aten.native_dropout.default: 1, aten.mul.Tensor: 1}, {"dropout": 1, "scalar_multiply": 1}),
    Case("where.self", lambda c, a, b: torch.where(c.bool(), a, b), ops(MASK(2, 3), X(2, 3), X(2, 3)),
         {aten.where.self: 1},
         {**TO_FLOAT, "multiply": 3, "scalar_multiply": 1, "scalar_add": 1, "add": 1}),
    Case("where.self-param", lambda c, a, b: torch.where(c.bool(), a, b), ops(MASK(2, 3), X(2, 3), X(3)),
         {aten.where.self: 1},
         {**TO_FLOAT, "multiply": 3, "scalar_multiply": 1, "scalar_add": 1, "add": 1, "embedding": 1,
          "reshape": 1}, kinds=("input", "input", "param")),
    Case("masked_fill.Scalar", lambda a, m: a.masked_fill(m.bool(), -3.0), ops(X(2, 3), MASK(2, 3)),
         {aten.masked_fill.Scalar: 1},
         {**TO_FLOAT, "multiply": 2, "scalar_multiply": 2, "scalar_add": 1, "add": 1}),
    Case("masked_fill.Tensor", lambda a, m: aten.masked_fill.Tensor(a, m.bool(), torch.tensor(2.0)),
         ops(X(2, 3), MASK(2, 3)), {aten.masked_fill.Tensor: 1},
         {**TO_FLOAT, "multiply": 2, "scalar_multiply": 2, "scalar_add": 1, "add": 1}),
    # ---------------------------------------------------------------- activations
    Case("relu", torch.relu, ops(X(2, 3, 5)), {aten.relu.default: 1}, {"relu": 1}),
    Case("sigmoid", torch.sigmoid, ops(X(2, 3, 5)), {aten.sigmoid.default: 1}, {"sigmoid": 1}),
    Case("tanh", torch.tanh, ops(X(2, 3, 5)), {aten.tanh.default: 1}, {"tanh": 1}),
    Case("silu", F.silu, ops(X(2, 3, 5)), {aten.silu.default: 1}, {"sigmoid": 1, "multiply": 1}),
    Case("gelu", F.gelu, ops(X(2, 3, 5)), {aten.gelu.default: 1}, {"gelu": 1}),
    Case("gelu-tanh", lambda a: F.gelu(a, approximate="tanh"), ops(X(2, 3, 5)), {aten.gelu.default: 1},
         {"pow": 1, "tanh": 1, "scalar_multiply": 3, "scalar_add": 1, "add": 1, "multiply": 1, "identity": 1}),
    Case("leaky_relu", lambda a: F.leaky_relu(a, 0.2), ops(X(2, 3, 5)), {aten.leaky_relu.default: 1},
         {"relu": 2, "scalar_multiply": 2, "subtract": 1}),
    Case("softmax.int", lambda a: torch.softmax(a, -1), ops(X(2, 3, 5)), {aten.softmax.int: 1}, SOFTMAX_3D),
    Case("softmax.int-mid", lambda a: torch.softmax(a, 1), ops(X(2, 3, 5)), {aten.softmax.int: 1},
         {**SOFTMAX, "gather": 2, "reshape": 6}),
    Case("_softmax", lambda a: aten._softmax.default(a, -1, False), ops(X(2, 3, 5)), {aten._softmax.default: 1},
         SOFTMAX_3D),
    Case("_log_softmax", lambda a: aten._log_softmax.default(a, -1, False), ops(X(2, 3)),
         {aten._log_softmax.default: 1}, {}, extra={"unsupported": "FlexFlow has no log"}),
    # ---------------------------------------------------------------- linear and products
    Case("linear-param", F.linear, ops(X(2, 3, 6), X(5, 6), X(5)), {aten.linear.default: 1}, {"dense": 1},
         kinds=("input", "param", "param")),
    Case("linear-no-bias", F.linear, ops(X(2, 6), X(5, 6)), {aten.linear.default: 1}, {"dense": 1},
         kinds=("input", "param")),
    Case("linear-constant-weight", F.linear, ops(X(2, 3, 6), X(5, 6)), {aten.linear.default: 1},
         {"batch_matmul": 1, "reshape": 2, "gather": 1}, kinds=("input", "constant")),
    Case("linear-buffer-bias", F.linear, ops(X(2, 6), X(5, 6), X(5)), {aten.linear.default: 1},
         {"dense": 1, "add": 1}, kinds=("input", "param", "buffer")),
    Case("flexflow_torch::dense", lambda a, w, b: torch.relu(F.linear(a, w, b)), ops(X(2, 6), X(5, 6), X(5)),
         {fused_ops.dense: 1}, {"dense": 1}, kinds=("input", "param", "param")),
    Case("addmm-conv1d", lambda b, a, w: torch.addmm(b, a.view(-1, 6), w).view(2, 3, 5),
         ops(X(5), X(2, 3, 6), X(6, 5)), {aten.view.default: 2, aten.addmm.default: 1}, {"dense": 1},
         kinds=("param", "input", "param")),
    Case("addmm-inputs", lambda b, a, w: torch.addmm(b, a, w, beta=0.5, alpha=2.0), ops(X(2, 5), X(2, 6), X(6, 5)),
         {aten.addmm.default: 1}, {"batch_matmul": 1, "reshape": 2, "scalar_multiply": 2, "add": 1},
         kinds=("input", "input", "constant")),
    Case("mm-param", torch.mm, ops(X(2, 6), X(6, 5)), {aten.mm.default: 1},
         {"embedding": 1, "batch_matmul": 1, "reshape": 2}, kinds=("input", "param")),
    Case("mm-constant", torch.mm, ops(X(2, 6), X(6, 5)), {aten.mm.default: 1}, {"batch_matmul": 1, "reshape": 2},
         kinds=("input", "constant")),
    Case("bmm", torch.bmm, ops(X(2, 3, 4), X(2, 4, 5)), {aten.bmm.default: 1}, {"batch_matmul": 1}),
    Case("matmul-4d", torch.matmul, ops(X(2, 3, 4, 5), X(2, 3, 5, 6)), {aten.matmul.default: 1},
         {"batch_matmul": 1}),
    Case("matmul-broadcast", torch.matmul, ops(X(2, 3, 4, 5), X(5, 6)), {aten.matmul.default: 1},
         {"batch_matmul": 1, "add": 1, "reshape": 1}, kinds=("input", "buffer")),
    Case("matmul-1d", torch.matmul, ops(X(2, 5), X(5)), {aten.matmul.default: 1}, {},
         extra={"unsupported": "1-D operand"}),
    Case("embedding", lambda w, i: F.embedding(i, w), ops(X(11, 4), IDS(2, 5)), {aten.embedding.default: 1},
         {"embedding": 1}, kinds=("param", "input")),
    Case("embedding-positions-beyond-table", lambda w, i: F.embedding(torch.arange(12).expand(2, 12), w) + F.embedding(i, w),
         ops(X(11, 4), IDS(2, 12)), {aten.embedding.default: 2, aten.add.Tensor: 1}, {}, kinds=("param", "input"),
         extra={"unsupported": "a table of 11 rows", "found": "converting"}),
    Case("embedding-computed-ids", lambda w, i: F.embedding(i * 2 + 1, w), ops(X(30, 4), IDS(2, 5)),
         {aten.embedding.default: 1}, {"embedding": 1}, kinds=("param", "input")),     # ids computed on the host
    # ---------------------------------------------------------------- norms
    Case("layer_norm", lambda a, w, b: F.layer_norm(a, (8,), w, b), ops(X(2, 3, 8), POS(8), X(8)),
         {aten.layer_norm.default: 1},
         {"reduce_sum": 2, "scalar_multiply": 2, "subtract": 1, "multiply": 3, "scalar_add": 1, "pow": 1,
          "embedding": 2, "add": 1, "reshape": 4}, kinds=("input", "param", "param")),
    Case("layer_norm-2d-no-affine", lambda a: F.layer_norm(a, (3, 8)), ops(X(2, 3, 8)), {aten.layer_norm.default: 1},
         {"reduce_sum": 2, "scalar_multiply": 2, "subtract": 1, "multiply": 2, "scalar_add": 1, "pow": 1,
          "reshape": 2}),
    Case("flexflow_torch::layer_norm",
         lambda a, w, b: w * ((a - a.mean(-1, keepdim=True)) / torch.sqrt(
             (a - a.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True) + 1e-5)) + b,
         ops(X(2, 3, 8), POS(8), X(8)), {fused_ops.layer_norm: 1},
         {"reduce_sum": 2, "scalar_multiply": 2, "subtract": 1, "multiply": 3, "scalar_add": 1, "pow": 1,
          "embedding": 2, "add": 1, "reshape": 4}, kinds=("input", "param", "param")),
    Case("flexflow_torch::rms_norm", lambda a, w: w * (a * torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + 1e-6)),
         ops(X(2, 3, 8), POS(8)), {fused_ops.rms_norm: 1},
         {"multiply": 3, "reduce_sum": 1, "scalar_multiply": 1, "scalar_add": 1, "pow": 1, "embedding": 1,
          "reshape": 2}, kinds=("input", "param")),
    Case("_native_batch_norm_legit_no_training",
         lambda a, m, v, w, b: F.batch_norm(a, m, v, w, b, training=False),
         ops(X(2, 3, 4, 4), X(3), POS(3), POS(3), X(3)), {aten._native_batch_norm_legit_no_training.default: 1},
         {"multiply": 1, "add": 1}, kinds=("input", "buffer", "buffer", "buffer", "buffer")),
    # ---------------------------------------------------------------- shapes and data movement
    Case("view", lambda a: a.view(2, 12) * 2, ops(X(2, 3, 4)), {aten.view.default: 1, aten.mul.Tensor: 1},
         {"reshape": 1, "scalar_multiply": 1}),
    Case("view-of-ids", lambda i, w: F.embedding(i.view(2, 6), w), ops(IDS(2, 3, 2), X(11, 4)),
         {aten.embedding.default: 1}, {"embedding": 1},                              # the view on the host
         kinds=("input", "param")),
    Case("_unsafe_view", lambda a: aten._unsafe_view.default(a, [2, 12]), ops(X(2, 3, 4)),
         {aten._unsafe_view.default: 1}, {"reshape": 1}),
    Case("reshape", lambda a: a.reshape(2, -1), ops(X(2, 3, 4)), {aten.reshape.default: 1}, {"reshape": 1}),
    Case("unsqueeze", lambda a: a.unsqueeze(1) * 2, ops(X(2, 3)), {aten.unsqueeze.default: 1, aten.mul.Tensor: 1},
         {"reshape": 1, "scalar_multiply": 1}),
    Case("squeeze.dim", lambda a: a.squeeze(1), ops(X(2, 1, 4)), {aten.squeeze.dim: 1}, {"reshape": 1}),
    Case("squeeze.dims", lambda a: a.squeeze((1, 3)), ops(X(2, 1, 4, 1)), {aten.squeeze.dims: 1}, {"reshape": 1}),
    Case("squeeze", lambda a: aten.squeeze.default(a), ops(X(2, 1, 4)), {aten.squeeze.default: 1}, {"reshape": 1}),
    Case("flatten.using_ints", lambda a: torch.flatten(a, 1), ops(X(2, 3, 4)), {aten.flatten.using_ints: 1},
         {"reshape": 1}),
    Case("permute", lambda a: a.permute(0, 2, 1), ops(X(2, 3, 4)), {aten.permute.default: 1},
         {"gather": 1, "reshape": 2}),
    Case("transpose.int", lambda a: a.transpose(1, 2), ops(X(2, 3, 4)), {aten.transpose.int: 1},
         {"gather": 1, "reshape": 2}),
    Case("t", lambda a, w: a @ w.t(), ops(X(2, 3), X(4, 3)), {aten.t.default: 1, aten.matmul.default: 1},
         {"embedding": 1, "gather": 1, "batch_matmul": 1, "reshape": 5}, kinds=("input", "param")),
    Case("expand", lambda a: a[:, :1].expand(2, 3, 4) * 1.5, ops(X(2, 3, 4)),
         {aten.slice.Tensor: 1, aten.expand.default: 1, aten.mul.Tensor: 1},
         {"split": 1, "add": 1, "scalar_multiply": 1}),
    Case("cat-input", lambda a, b: torch.cat([a, b], dim=-1), ops(X(2, 3, 4), X(2, 3, 2)), {aten.cat.default: 1},
         {"concat": 1}),
    Case("cat-param", lambda a, b: torch.cat([b.expand(2, 3, 2), a], dim=-1), ops(X(2, 3, 4), X(1, 3, 2)),
         {aten.expand.default: 1, aten.cat.default: 1}, {"embedding": 1, "reshape": 1, "identity": 1, "concat": 1},
         kinds=("input", "param")),
    *[Case(f"cat-{kind}", lambda a, b: torch.cat([b.expand(2, 3, 2), a], dim=-1), ops(X(2, 3, 4), X(1, 3, 2)),
           {aten.cat.default: 1}, {"concat": 1}, kinds=("input", kind)) for kind in KINDS3[2:]],
    Case("cat-ids", lambda a, b, w: F.embedding(torch.cat([a, b], 1), w), ops(IDS(2, 3), IDS(2, 4), X(11, 4)),
         {aten.embedding.default: 1}, {"embedding": 1},                              # the cat on the host
         kinds=("input", "input", "param")),
    Case("split.Tensor", lambda a: torch.split(a, 2, dim=2)[1] * 2, ops(X(2, 3, 4)),
         {aten.split.Tensor: 1, aten.mul.Tensor: 1}, {"split": 1, "scalar_multiply": 1}),
    Case("split_with_sizes", lambda a: sum(t.sum(-1) * (i + 1) for i, t in enumerate(torch.split(a, [1, 3], 2))),
         ops(X(2, 3, 4)), {aten.split_with_sizes.default: 1, aten.sum.dim_IntList: 2, aten.mul.Tensor: 2,
                           aten.add.Tensor: 2},
         {"split": 1, "reduce_sum": 2, "reshape": 2, "scalar_multiply": 1, "add": 1}),
    Case("unbind.int", lambda a: torch.unbind(a, 1)[2] * 3, ops(X(2, 3, 4)), {aten.unbind.int: 1, aten.mul.Tensor: 1},
         {"split": 1, "reshape": 1, "scalar_multiply": 1}),
    Case("slice.Tensor", lambda a: a[:, 1:3] * 2, ops(X(2, 4, 3)), {aten.slice.Tensor: 1, aten.mul.Tensor: 1},
         {"split": 1, "scalar_multiply": 1}),
    Case("slice.Tensor-strided", lambda a: a[:, :, ::2], ops(X(2, 3, 4)), {aten.slice.Tensor: 1},
         {"gather": 1, "reshape": 2}),
    Case("slice.Tensor-empty", lambda a: a[:, 3:1] * 2, ops(X(2, 4, 3)), {aten.slice.Tensor: 1, aten.mul.Tensor: 1},
         {}, extra={"unsupported": "zero-size axis"}),
    Case("select.int", lambda a: a[:, 1] + 1, ops(X(2, 3, 4)), {aten.select.int: 1, aten.add.Tensor: 1},
         {"split": 1, "reshape": 1, "scalar_add": 1}),
    Case("index.Tensor", lambda a: a[:, torch.tensor([2, 0])], ops(X(2, 3, 4)), {aten.index.Tensor: 1},
         {"gather": 1, "reshape": 2}),
    Case("index.Tensor-input-index", lambda a, i: a[:, i[0]], ops(X(2, 3, 4), IDS(2, 2, hi=3)),
         {aten.view.default: 2, aten.gather.default: 1}, {"gather": 1, "reshape": 2}),  # offsets from the host
    Case("gather", lambda a: torch.gather(a, 2, torch.tensor([[[3, 0]] * 3] * 2)), ops(X(2, 3, 4)),
         {aten.gather.default: 1}, {"gather": 1, "reshape": 2}),
    Case("gather-input-index", lambda a, i: torch.gather(a, 2, i), ops(X(2, 3, 4), IDS(2, 3, 2, hi=4)),
         {aten.gather.default: 1}, {"gather": 1}),
    Case("flip", lambda a: torch.flip(a, [2]), ops(X(2, 3, 4)), {aten.flip.default: 1}, {"gather": 1, "reshape": 2}),
    Case("roll", lambda a: torch.roll(a, 1, 1), ops(X(2, 3, 4)), {aten.roll.default: 1}, {"gather": 1, "reshape": 2}),
    Case("repeat", lambda a: a.repeat(1, 2, 1), ops(X(2, 3, 4)), {aten.repeat.default: 1},
         {"gather": 1, "reshape": 2}),
    Case("index_select", lambda a: torch.index_select(a, 2, torch.tensor([3, 1])), ops(X(2, 3, 4)),
         {aten.index_select.default: 1}, {"gather": 1, "reshape": 2}),
    Case("constant_pad_nd", lambda a: F.pad(a, (1, 2), value=0.5), ops(X(2, 3, 4)), {aten.constant_pad_nd.default: 1},
         {"concat": 1, "gather": 1, "reshape": 2}),
    Case("flexflow_torch::view_graph", lambda a: a[:, :, None, None, :].expand(2, 3, 2, 1, 4).reshape(2, 6, 4),
         ops(X(2, 3, 4)), {aten.unsqueeze.default: 1, fused_ops.view_graph: 1}, {"gather": 1, "reshape": 3}),
    # ---------------------------------------------------------------- reductions
    Case("sum.dim_IntList", lambda a: a.sum(-1, keepdim=True), ops(X(2, 3, 4)), {aten.sum.dim_IntList: 1},
         {"reduce_sum": 1}),
    Case("sum", lambda a: aten.sum.default(a) * a, ops(X(2, 3)), {aten.sum.default: 1, aten.mul.Tensor: 1},
         {"reduce_sum": 1, "reshape": 2, "multiply": 1}),
    Case("mean.dim", lambda a: a.mean(dim=(1, 2)), ops(X(2, 3, 4)), {aten.mean.dim: 1},
         {"reduce_sum": 1, "reshape": 1, "scalar_multiply": 1}),
    Case("mean", lambda a: aten.mean.default(a) * a, ops(X(2, 3)), {aten.mean.default: 1, aten.mul.Tensor: 1},
         {"reduce_sum": 1, "reshape": 2, "scalar_multiply": 1, "multiply": 1}),
    Case("cumsum", lambda a: a.cumsum(1), ops(X(2, 5, 3)), {aten.cumsum.default: 1},
         {"batch_matmul": 1, "gather": 2, "reshape": 4}),
    Case("reduction-of-parameter", lambda a, w: a * w.sum(), ops(X(2, 3), X(3)),
         {aten.sum.default: 1, aten.mul.Tensor: 1}, {"embedding": 1, "reshape": 3, "reduce_sum": 1, "multiply": 1},
         kinds=("input", "param")),                                                  # per sample
    Case("linalg_vector_norm", lambda a: torch.linalg.vector_norm(a, dim=-1, keepdim=True) * a, ops(X(2, 3, 4)),
         {aten.linalg_vector_norm.default: 1, aten.mul.Tensor: 1}, {"multiply": 2, "reduce_sum": 1, "pow": 1}),
    Case("linalg_vector_norm-param", lambda a, w: a * torch.linalg.vector_norm(w, dim=0), ops(X(2, 3, 4), X(3, 4)),
         {aten.linalg_vector_norm.default: 1, aten.mul.Tensor: 1},     # weight norm's ||v||, per sample
         {"embedding": 1, "reshape": 3, "multiply": 2, "reduce_sum": 1, "pow": 1}, kinds=("input", "param")),
    # ---------------------------------------------------------------- selections (routing.py)
    Case("topk", lambda a: torch.topk(a, 2)[0], ops(X(2, 3, 5)), {aten.topk.default: 1},    # values only
         {"reshape": 2, "pool2d": 2, "subtract": 2, "relu": 1, "scalar_multiply": 3, "min": 1, "scalar_add": 1,
          "concat": 1}),
    Case("max.dim", lambda a: a.max(dim=1).values, ops(X(2, 3, 5)), {aten.max.dim: 1},
         {"gather": 1, "reshape": 5, "pool2d": 1}),
    Case("min.dim", lambda a: a.min(dim=-1, keepdim=True).values, ops(X(2, 3, 5)), {aten.min.dim: 1},
         {"scalar_multiply": 2, "reshape": 2, "pool2d": 1}),
    Case("amax", lambda a: a.amax(dim=-1), ops(X(2, 3, 5)), {aten.amax.default: 1},
         {"reshape": 3, "pool2d": 1}),
    Case("one_hot-of-topk", lambda a: (lambda v, i: (F.one_hot(i, 6) * v.unsqueeze(-1)).sum(-2))(*torch.topk(a, 2)),
         ops(X(2, 3, 5)),        # MoE routing weights: the chosen values scattered to a dense row, with gradients
         {aten.topk.default: 1, aten.one_hot.default: 1, aten.unsqueeze.default: 1, aten.mul.Tensor: 1,
          aten.sum.dim_IntList: 1},
         {"reshape": 8, "pool2d": 2, "subtract": 3, "relu": 2, "scalar_multiply": 5, "min": 2, "scalar_add": 2,
          "concat": 3, "multiply": 1, "reduce_sum": 1}),
    # ---------------------------------------------------------------- attention
    Case("scaled_dot_product_attention",
         lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3),
         ops(X(2, 2, 5, 4), X(2, 2, 5, 4), X(2, 2, 5, 4)), {aten.scaled_dot_product_attention.default: 1},
         {**SOFTMAX, "batch_matmul": 2, "gather": 1, "reshape": 2, "scalar_multiply": 1, "add": 1}),
    Case("scaled_dot_product_attention-mask",
         lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m.bool()[:, None, None, :]),
         ops(X(2, 2, 3, 4), X(2, 2, 5, 4), X(2, 2, 5, 4), MASK(2, 5)),
         {aten.scaled_dot_product_attention.default: 1},          # the mask's cast and views on the host
         {**SOFTMAX, "batch_matmul": 2, "gather": 1, "reshape": 2, "scalar_multiply": 2, "multiply": 2,
          "scalar_add": 1, "add": 1}),
    Case("scaled_dot_product_attention-gqa",
         lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
         ops(X(2, 4, 3, 8), X(2, 2, 3, 8), X(2, 2, 3, 8)), {aten.scaled_dot_product_attention.default: 1},
         {**SOFTMAX, "batch_matmul": 2, "gather": 3, "reshape": 6, "scalar_multiply": 1}),
    # ---------------------------------------------------------------- convolution and pooling
    Case("conv2d", lambda a, w, b: F.conv2d(a, w, b, padding=1), ops(X(2, 3, 6, 6), X(4, 3, 3, 3), X(4)),
         {aten.conv2d.default: 1}, {"conv2d": 1}, kinds=("input", "param", "param")),
    Case("conv2d-dilated", lambda a, w: F.conv2d(a, w, dilation=2), ops(X(1, 3, 8, 8), X(4, 3, 3, 3)),
         {aten.conv2d.default: 1}, {}, kinds=("input", "param"), extra={"unsupported": "dilated"}),
    Case("conv1d", lambda a, w, b: F.conv1d(a, w, b, padding=1), ops(X(2, 4, 9), X(6, 4, 3), X(6)),
         {aten.conv1d.default: 1}, {"conv2d": 1, "reshape": 2}, kinds=("input", "param", "param")),
    Case("convolution", lambda a, w, b: aten.convolution.default(a, w, b, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
         ops(X(2, 3, 5, 5), X(4, 3, 2, 2), X(4)), {aten.convolution.default: 1}, {"conv2d": 1},
         kinds=("input", "param", "param")),
    Case("max_pool2d", lambda a: F.max_pool2d(a, 2), ops(X(2, 3, 4, 4)), {aten.max_pool2d.default: 1},
         {"pool2d": 1}),
    Case("max_pool2d_with_indices", lambda a: F.max_pool2d(a, 2, return_indices=True)[0], ops(X(2, 3, 4, 4)),
         {aten.max_pool2d_with_indices.default: 1}, {"pool2d": 1}),
    Case("avg_pool2d", lambda a: F.avg_pool2d(a, 2), ops(X(2, 3, 4, 4)), {aten.avg_pool2d.default: 1},
         {"pool2d": 1}),
    Case("avg_pool2d-ceil", lambda a: F.avg_pool2d(a, 2, ceil_mode=True), ops(X(2, 3, 5, 5)),
         {aten.avg_pool2d.default: 1}, {}, extra={"unsupported": "ceil_mode"}),
    Case("adaptive_avg_pool2d", lambda a: F.adaptive_avg_pool2d(a, 1), ops(X(2, 3, 4, 4)),
         {aten.adaptive_avg_pool2d.default: 1}, {"pool2d": 1}),
    Case("_adaptive_avg_pool2d", lambda a: aten._adaptive_avg_pool2d.default(a, [2, 2]), ops(X(2, 3, 4, 4)),
         {aten._adaptive_avg_pool2d.default: 1}, {"pool2d": 1}),
    Case("group_norm", lambda a, w, b: F.group_norm(a, 2, w, b), ops(X(2, 6, 5), POS(6), X(6)),
         {aten.group_norm.default: 1},
         {"reshape": 6, "reduce_sum": 2, "scalar_multiply": 2, "subtract": 1, "multiply": 3, "scalar_add": 1,
          "pow": 1, "embedding": 2, "add": 1}, kinds=("input", "param", "param")),
    Case("upsample_bilinear2d.vec", lambda a: F.interpolate(a, scale_factor=2.0, mode="bilinear"), ops(X(2, 3, 4, 6)),
         {aten.upsample_bilinear2d.vec: 1}, {"batch_matmul": 2}),
    # ---------------------------------------------------------------- masks
    # masks from the inputs alone: computed on the host, one float product in FlexFlow
    Case("bitwise_and-on-host", lambda a, m, n: a * (m.bool() & n.bool()).float(), ops(X(2, 5), MASK(2, 5), MASK(2, 5)),
         {aten.mul.Tensor: 1}, {"multiply": 1}),
    Case("logical_or-on-host", lambda a, m, n: a * torch.logical_or(m, n).float(), ops(X(2, 5), MASK(2, 5), MASK(2, 5)),
         {aten.mul.Tensor: 1}, {"multiply": 1}),
    Case("logical_not-on-host", lambda a, m: a * torch.logical_not(m).float(), ops(X(2, 5), MASK(2, 5)),
         {aten.mul.Tensor: 1}, {"multiply": 1}),
]
