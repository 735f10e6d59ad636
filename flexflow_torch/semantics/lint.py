"""FlexFlow's rules applied to a whole model: every operator FlexFlow would reject, and
every place it would train differently from the mathematics, for a converted program
or a model written by hand on FlexFlow's API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from .base import Checker, Problem
from .spec import SPECS, ACC
from . import gradient_coefficients, model as rules


@dataclass
class Layer:
    """What the lint sees of one operator: its method, a label, the keys of the tensors
    it reads and writes, and the problems its own rules found."""
    method: str
    label: str
    inputs: list
    outputs: list
    problems: list


def consumer_problems(layers: List[Layer]) -> List[Problem]:
    """Gradients lost or doubled because a consumer's backward overwrites (or, for
    transpose, doubles) a buffer other consumers add to (model.cc FFModel::backward)."""
    users = {}
    for layer in layers:
        for key in dict.fromkeys(layer.inputs):
            users.setdefault(key, []).append(layer)
    found = []
    for key, uses in users.items():
        writes = [SPECS[u.method].input_grad if u.method in SPECS else ACC for u in uses]
        coefs = gradient_coefficients(writes)
        for use, coef in zip(uses, coefs):
            if coef != 1.0:
                culprit = next(u for u, w in zip(uses, writes) if w != ACC)
                effect = "discarded" if coef == 0 else f"multiplied by {coef:g}"
                found.append(Problem(None, Exception, f"{use.label}: its gradient into a tensor it shares "
                                     f"is {effect}, because {culprit.label} ({culprit.method}) "
                                     f"{SPECS[culprit.method].input_grad}s that buffer in its backward; give "
                                     f"{culprit.method} its own copy (ffmodel.identity)",
                                     "src/runtime/model.cc FFModel::backward:2931-2948"))
    return found


def softmax_problems(layers: List[Layer], final: Layer, loss_type) -> List[Problem]:
    """FlexFlow's softmax passes its gradient through (softmax.cu:254-258): right only as
    the final operator under a cross-entropy loss."""
    ce = loss_type in ("LOSS_SPARSE_CATEGORICAL_CROSSENTROPY", "LOSS_CATEGORICAL_CROSSENTROPY", None)
    return [Problem(None, Exception, f"{layer.label}: an internal softmax; FlexFlow's softmax backward "
                    "copies the incoming gradient, so everything before it trains with the wrong "
                    "gradient (compose it: exp, reduce_sum, pow(-1), multiply)",
                    "src/ops/kernels/softmax.cu Internal::backward_kernel:254-258")
            for layer in layers if layer.method == "softmax" and not (layer is final and ce)]


def lint(layers: List[Layer], final=None, loss_type=None, output=None) -> List[Problem]:
    found = [p for layer in layers for p in layer.problems]
    found += consumer_problems(layers)
    found += softmax_problems(layers, final, loss_type)
    if output is not None and loss_type is not None:
        hazard = rules.loss_hazard(loss_type, output)
        if hazard is not None:
            found.append(hazard)
    return found


def layers_of_program(program, degree="any") -> List[Layer]:
    """A recorded program (graph.FFProgram) as lint layers, its rules re-applied."""
    from . import check, enum_name
    out = []
    for op in program.ops:
        if op.kind != "op":
            continue
        args, refs = {}, []
        for k, v in op.args.items():
            if isinstance(v, dict) and "$v" in v:
                args[k] = program.values[v["$v"]].meta
                refs.append(v["$v"])
            elif isinstance(v, list) and v and isinstance(v[0], dict) and "$v" in v[0]:
                args[k] = [program.values[x["$v"]].meta for x in v]
                refs += [x["$v"] for x in v]
            else:
                args[k] = enum_name(v)
        try:
            _, problems = check(op.method, args, degree)
        except Exception as exc:   # noqa: BLE001 - a rule FlexFlow enforces at the call
            problems = [Problem("build", type(exc), str(exc), "")]
        out.append(Layer(op.method, op.name or op.method, refs, list(op.outputs), problems))
    return out
