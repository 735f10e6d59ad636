"""Pre-flight report: every operator without a converter (one error for all),
plus a lint of what real FlexFlow would reject or compute differently."""

from __future__ import annotations

import operator
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import List

import torch

from . import registry
from .errors import UnsupportedOperatorsError


_COMPARISONS = [f"aten::{op}.{kind}" for op in ("eq", "ne", "lt", "le", "gt", "ge") for kind in ("Scalar", "Tensor")]
#: what to do about common unsupported targets
HINTS = dict(
    {c: "FlexFlow has no comparison ops; masks must come in as inputs (0/1) or be input-independent"
     for c in _COMPARISONS},
    **{"aten::cumsum": "a cumsum is float in FlexFlow (a matmul); HF models that derive position ids from "
                       "the mask or the ids (OPT, RoBERTa) accept position_ids: add 'position_ids' to input_names",
       "aten::embedding": "ids computed by the model must stay integer; e.g. positions from a cumsum: add "
                          "'position_ids' to input_names",
       "aten::log": "FlexFlow has no log",
       "aten::_log_softmax": "FlexFlow has no log; end at the logits and use softmax + sparse CE"})


@dataclass
class UnsupportedOp:
    target: str
    count: int
    example: str
    module: str
    source: str
    reason: str = "no converter"

    def __str__(self):
        where = f" in {self.module}" if self.module else ""
        src = f"\n      at {self.source}" if self.source else ""
        hint = f"\n      hint: {HINTS[self.target]}" if self.target in HINTS else ""
        return f"  {self.target} x{self.count} ({self.reason}; e.g. node {self.example}{where}){src}{hint}"


@dataclass
class LintItem:
    kind: str
    message: str

    def __str__(self):
        return f"  [{self.kind}] {self.message}"


@dataclass
class AnalysisReport:
    unsupported: List[UnsupportedOp] = field(default_factory=list)
    lint: List[LintItem] = field(default_factory=list)
    aten_ops: dict = field(default_factory=dict)      # target -> count (converted nodes)
    ff_ops: dict = field(default_factory=dict)        # FlexFlow method -> count
    ties: dict = field(default_factory=dict)

    @property
    def ok(self):
        return not self.unsupported

    def __str__(self):
        lines = []
        if self.unsupported:
            n = sum(u.count for u in self.unsupported)
            lines.append(f"{len(self.unsupported)} unsupported operator(s), {n} node(s):")
            lines += [str(u) for u in self.unsupported]
        else:
            lines.append("every operator has a converter")
        if self.ff_ops:
            lines.append("FlexFlow operators: " + ", ".join(f"{k} x{v}" for k, v in self.ff_ops.items()))
        if self.lint:
            lines.append("FlexFlow compatibility notes:")
            lines += [str(item) for item in self.lint]
        return "\n".join(lines)


def source_line(node) -> str:
    trace = node.meta.get("stack_trace") or ""
    lines = [ln.strip() for ln in trace.strip().splitlines()]
    files = [i for i, ln in enumerate(lines) if ln.startswith("File ")]
    if not files:
        return ""
    i = files[-1]
    code = lines[i + 1] if i + 1 < len(lines) else ""
    return f"{lines[i]}: {code}" if code else lines[i]


def module_path(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


class UnsupportedCollector:
    """Groups problem nodes by target, keeping the first as the example."""

    def __init__(self):
        self.items = OrderedDict()

    def add(self, node, reason="no converter"):
        name = registry.target_name(node.target)
        key = (name, reason)
        if key in self.items:
            self.items[key].count += 1
        else:
            self.items[key] = UnsupportedOp(name, 1, node.name, module_path(node), source_line(node), reason)

    def report(self):
        return list(self.items.values())


def annotate_kinds(prepared):
    """Mark every node with how its value reaches FlexFlow (converters._common.KIND),
    for the converters' `supports` checks."""
    from .converters._common import CONST, FIXED, INPUT, KIND, PARAM
    for node in prepared.graph.nodes:
        if node in prepared.folded:
            kind = CONST
        elif node in prepared.params:
            kind = PARAM
        elif node in prepared.user_inputs or any(d.meta.get(KIND) == INPUT for d in node.all_input_nodes):
            kind = INPUT
        else:
            kind = FIXED
        node.meta[KIND] = kind


def _shape_problem(node):
    """FlexFlow's shapes are fixed and non-empty: a node whose result depends on the
    input values or has a zero-size axis (reported where it first appears)."""
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols
    vals = node.meta.get("val")
    if vals is not None and free_unbacked_symbols(vals):
        inherited = any(free_unbacked_symbols(d.meta.get("val")) for d in node.all_input_nodes
                        if d.meta.get("val") is not None)
        return None if inherited else ("its output shape depends on the input values (FlexFlow's shapes are "
                                        "fixed when the model is built)")
    if isinstance(vals, (list, tuple)):     # only the results something uses
        used = {u.args[1] for u in node.users if u.target is operator.getitem}
        vals = [v for i, v in enumerate(vals) if i in used]
    shapes = [tuple(v.shape) for v in (vals if isinstance(vals, list) else [vals]) if isinstance(v, torch.Tensor)]
    bad = next((s for s in shapes if 0 in s), None)
    if bad is None or any(0 in tuple(getattr(d.meta.get("val"), "shape", (1,))) for d in node.all_input_nodes):
        return None
    return f"produces an empty tensor {list(bad)}: FlexFlow tensors cannot have a zero-size axis"


def find_unsupported(prepared) -> List[UnsupportedOp]:
    """Every node that cannot be converted, with the reason, before anything is emitted:
    no converter, what the converter's `supports` check says, or an empty result."""
    annotate_kinds(prepared)
    collector = UnsupportedCollector()
    for node in prepared.graph.nodes:
        if node.op != "call_function" or node in prepared.folded or node.target is operator.getitem:
            continue
        reason = _shape_problem(node) or registry.support_problem(node)
        if reason is not None:
            collector.add(node, reason=reason)
    return collector.report()


def raise_if_unsupported(items, ties=None):
    if items:
        raise UnsupportedOperatorsError(AnalysisReport(unsupported=items, ties=ties or {}))


def count_ops(prepared):
    counts = {}
    for node in prepared.graph.nodes:
        if node.op == "call_function" and node not in prepared.folded and node.target is not operator.getitem:
            name = registry.target_name(node.target)
            counts[name] = counts.get(name, 0) + 1
    return counts


def _items(problems, kind_of=None):
    items = []
    for p in problems:
        if p.stage is not None:
            kind = "single-gpu" if p.parallel else "rejected"
            items.append(LintItem(kind, f"{p.message} [{p.source}] (FlexFlow fails at {p.stage})"))
        else:
            items.append(LintItem("gradient", f"{p.message} [{p.source}]"))
    return items


def lint(prepared, program, plan, model=None) -> List[LintItem]:
    """FlexFlow's rules on a converted program (there should be nothing to report but
    notes), plus what the conversion changed about the model."""
    from .semantics.lint import layers_of_program, lint as semantic_lint
    items = _items(semantic_lint(layers_of_program(program)))
    for reason in program.single_gpu:
        items.append(LintItem("single-gpu", f"{reason}: runs on one GPU only"))
    for name, vid in zip(program.output_names, program.outputs):
        v = program.values[vid]
        if v.rank > 2 and v.dtype == "DT_FLOAT":
            items.append(LintItem("loss", f"output {name!r} is {v.rank}-D {v.shape}: FlexFlow's sparse CE "
                                  "takes axis 0 as the samples; train it with flexflow_torch.CrossEntropyHead"))
    tables = [p for p in prepared.params.values() if plan.kind(p) == "table" and p.node.users]
    tied = sorted({p.fqn for p in tables if len(p.node.users) > 1} | set(prepared.ties))
    as_tensor = sorted(p.fqn for p in tables if p.fqn not in tied)
    if tied:
        items.append(LintItem("tied-weights",
            f"tied/shared parameters ({', '.join(tied)}): FlexFlow cannot share a parameter between layers "
            "(shared_op is ignored), so each is ONE embedding layer read per sample by every use"))
    if as_tensor:
        items.append(LintItem("parameter-as-tensor",
            f"parameters used as plain tensors ({', '.join(as_tensor)}) are embedding tables read once per "
            "sample (FlexFlow has no trainable free tensor)"))
    targets = {n.target for n in prepared.graph.nodes if n.op == "call_function"}
    aten = torch.ops.aten
    if aten._native_batch_norm_legit_no_training.default in targets:
        items.append(LintItem("batch-norm", "eval-mode batch norm is folded into a per-channel affine map "
                                            "(FlexFlow's batch_norm cannot be compiled): its weight and bias "
                                            "are frozen constants, not trained"))
    if any(n.op == "call_function" and n.target is aten._to_copy.default and n not in prepared.folded
           and not n.meta["val"].dtype.is_floating_point for n in prepared.graph.nodes):
        items.append(LintItem("bool-cast", "casts to bool/integer are kept as values (FlexFlow has no comparison "
                                           "or down-cast): masks must hold 0/1"))
    if prepared.fusions.get("high_rank_views"):
        items.append(LintItem("rank", f"{prepared.fusions['high_rank_views']} view/expand chain(s) through >4-D "
                                      "tensors (FlexFlow's limit) became one gather each"))
    has_dropout = model is not None and any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())
    if has_dropout and not prepared.training:
        items.append(LintItem("dropout", "the model has dropout but was converted in eval mode, so the program "
                                         "has none; convert with model.train() (or training=True) to train with "
                                         "FlexFlow dropout (which also drops during eval())"))
    if model is not None and any(isinstance(m, torch.nn.Embedding) and m.padding_idx is not None
                                 for m in model.modules()):
        items.append(LintItem("padding-idx", "embedding padding_idx is not honoured by FlexFlow in training: "
                                             "the padding row receives gradients"))
    return items


def lint_ffmodel(ffmodel) -> List[LintItem]:
    """FlexFlow's rules on a model written with FlexFlow's API (embedded runtime)."""
    from .semantics import lint as semantic
    layers = [semantic.Layer(l.spec.method, l.describe(), [id(h) for h in l.inputs], [id(h) for h in l.outputs],
                             l.problems) for l in ffmodel._graph]
    final = None
    if ffmodel._graph:
        last = ffmodel._final_layer()
        final = layers[ffmodel._graph.index(last)]
    loss = ffmodel._loss_type.name if ffmodel._loss_type is not None else None
    output = ffmodel._final_output_handle().meta if ffmodel._graph and ffmodel._loss_type is not None else None
    return _items(semantic.lint(layers, final, loss, output))
