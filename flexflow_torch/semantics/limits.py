"""Generate runtime/LIMITS.md from the rules themselves.

Every check a rule makes is a call `ck.fail(...)`, `ck.problem(stage, ...)`,
`ck.parallel_problem(stage, ...)` or `ck.hazard(...)` with a literal message and source;
this module reads those calls from the rule modules' source (no second copy of any
rule) together with each operator's backward write mode, and adds the few places where
the embedded runtime still differs from FlexFlow.

    python -m flexflow_torch.semantics.limits > flexflow_torch/runtime/LIMITS.md
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from . import SPECS, REVISION
from . import dense, elementwise, lint, model, norm, reduction, shape

FAMILIES = [("Element-wise operators", elementwise), ("Dense, convolution, pooling, embedding", dense),
            ("Normalisation", norm), ("Data movement", shape), ("Reductions, softmax, products", reduction),
            ("Inputs, final operator, losses, the API", model), ("Operators sharing tensors", lint)]

#: where the embedded runtime still differs from FlexFlow, and why
REMAINING = [
    ("Operator order among independent branches", "FlexFlow runs a breadth-first topological order whose ties "
     "follow hash iteration (src/runtime/substitution.cc:3628-3878); the embedded runtime uses layer order. "
     "It decides only whose gradient an overwriting backward discards; `analyze()` reports every such place."),
    ("Weight gradients read before update() with several GPUs", "FlexFlow returns GPU 0's partial gradient "
     "(the all-reduce runs in update()); the embedded runtime returns the full one."),
    ("Dropout masks", "cuDNN's generator cannot be reproduced; the embedded runtime draws its own masks, "
     "repeating them per GPU as FlexFlow's identical per-GPU seeds do."),
    ("multihead_attention weights", "cuDNN's packed layout is opaque: the embedded runtime packs "
     "Wq | Wk | Wv | Wo per head; weights do not transfer between the two."),
    ("Initial weights", "FlexFlow re-creates weights with hard-wired initialisers and a random seed; the "
     "embedded runtime honours the initializer arguments with fixed seeds. Set weights after compile() for "
     "the same start on both."),
    ("Out-of-range ids and labels", "FlexFlow reads out of bounds; the embedded runtime raises LabelRangeError "
     "or ShapeError."),
    ("Kernels' float rounding", "cuBLAS/cuDNN sum in other orders (and conv may use TF32): results agree to "
     "float32 rounding, not bit for bit."),
    ("Device and memory", "The embedded runtime computes on the CPU (or CUDA with FLEXFLOW_TORCH_DEVICE=cuda); "
     "-ll:fsize/-ll:zsize are read but not enforced; get_current_time is a wall clock."),
    ("Serving API", "InferenceManager, RequestManager and the inc_* / serving-only operators raise "
     "UnsupportedByFlexFlowError."),
    ("Additions", "PerfMetrics.values()/line(), the FLEXFLOW_TORCH_BACKEND, FLEXFLOW_TORCH_DEVICE and "
     "FLEXFLOW_TORCH_SEMANTICS environment variables."),
]

_CALLS = {"fail": "at the call", "problem": None, "parallel_problem": None, "hazard": "trains differently"}


def _text(node) -> str:
    """A literal string argument, f-string placeholders shown as <expr>."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else f"<{ast.unparse(v.value)}>"
                       for v in node.values)
    if isinstance(node, ast.BinOp):
        return _text(node.left) + _text(node.right)
    return ast.unparse(node)


def _source(node, module, owner):
    """A source argument: a literal, or an expression of module constants and the
    rule class's `source` (`self.source`)."""
    if isinstance(node, (ast.Constant, ast.JoinedStr)):
        return _text(node)
    scope = dict(vars(module))
    scope["self"] = getattr(module, owner, None)
    try:
        return str(eval(compile(ast.Expression(node), "<rule>", "eval"), scope))  # noqa: S307 - our own code
    except Exception:  # noqa: BLE001 - not a static expression: show it as written
        return ast.unparse(node)


def rules_of(module):
    """[(function, when, message, source)] for every rule call in `module`."""
    tree = ast.parse(inspect.getsource(module))
    rows = []
    for fn in tree.body:
        if not isinstance(fn, (ast.FunctionDef, ast.ClassDef)):
            continue
        owner = fn.name
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Problem" \
                    and isinstance(node.args[2], (ast.Constant, ast.JoinedStr)):
                stage = ast.unparse(node.args[0])
                when = "trains differently" if stage == "None" else \
                    "fails at " + stage.replace("Stage.", "").lower().replace("init", "init_layers")
                rows.append((owner, when, _text(node.args[2]), _source(node.args[3], module, owner)))
                continue
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in _CALLS and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "ck"):
                continue
            args = node.args
            kind = node.func.attr
            if kind in ("problem", "parallel_problem"):
                stage = ast.unparse(args[0]).replace("Stage.", "").lower().replace("init", "init_layers")
                when = ("with data parallelism, " if kind == "parallel_problem" else "") + f"fails at {stage}"
                args = args[2:] if kind == "problem" else args[1:]
            else:
                when = _CALLS[kind]
                args = args[1:] if kind == "fail" else args
            message, source = _text(args[0]), (_source(args[1], module, owner) if len(args) > 1 else "")
            rows.append((owner, when, message, source))
    seen, unique = set(), []
    for row in rows:
        if row[1:] not in seen:
            seen.add(row[1:])
            unique.append(row)
    return unique


def render() -> str:
    out = ["# Embedded runtime vs real FlexFlow",
           "",
           f"Generated from `flexflow_torch/semantics/` by `python -m flexflow_torch.semantics.limits`; do not "
           f"edit by hand. Facts are {REVISION}, read from its source (paths below are in that tree).",
           "",
           "The embedded runtime applies every rule below as FlexFlow does: what FlexFlow rejects raises a "
           "typed error at the call where FlexFlow fails, and what FlexFlow computes differently from the "
           "mathematics is computed FlexFlow's way (`FLEXFLOW_TORCH_SEMANTICS=exact` selects exact "
           "gradients instead). The converter emits no program that breaks one of them.",
           "",
           "## Backward: how each operator writes its input gradient",
           "",
           "An accumulating backward adds to the gradient buffer; an overwriting one replaces what other "
           "consumers of the same tensor added; transpose doubles it.",
           "",
           "| write mode | operators |", "| --- | --- |"]
    modes = {}
    for method, spec in sorted(SPECS.items()):
        modes.setdefault(spec.input_grad, []).append(f"`{method}`")
    for mode, methods in sorted(modes.items()):
        out.append(f"| {mode} | {', '.join(methods)} |")
    for title, module in FAMILIES:
        out += ["", f"## {title}", "", "| rule | FlexFlow | source |", "| --- | --- | --- |"]
        rows = rules_of(module) + [("", when, message, source) for when, message, source in
                                   getattr(module, "API_RULES", [])]
        for owner, when, message, source in rows:
            out.append(f"| {message.replace('|', '/')} | {when} | {source.replace('|', '/')} |")
    out += ["", "## Where the embedded runtime still differs", "", "| what | difference |", "| --- | --- |"]
    out += [f"| {what} | {why} |" for what, why in REMAINING]
    return "\n".join(out) + "\n"


LIMITS = Path(__file__).resolve().parents[1] / "runtime" / "LIMITS.md"

if __name__ == "__main__":
    print(render(), end="")
