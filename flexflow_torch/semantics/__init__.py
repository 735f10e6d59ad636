"""FlexFlow's semantics, in one place: per training operator the accepted data types,
the shape and data-parallel partition rule, the forward and backward as FlexFlow's
kernels compute them, with the source file and function each rule comes from
(FlexFlow 24.9.1+13, commit 89f10f4). The converter records programs through these
rules, the embedded runtime executes them, and `analyze()` lints with them.

`FLEXFLOW_TORCH_SEMANTICS=exact` makes the embedded runtime compute mathematically
exact gradients (and forwards without FlexFlow's kernel bugs) instead; the default,
`flexflow`, reproduces FlexFlow."""

from __future__ import annotations

import os

from .base import ANY, REVISION, Checker, Meta, Problem, Stage, enum_name
from .spec import ACC, CARRY, DOUBLE, OVER, SPECS, OpSpec, Run, WeightDecl
from . import elementwise, dense, norm, shape, reduction  # noqa: F401  (register the specs)
from . import model

MODES = ("flexflow", "exact")


def mode() -> str:
    """`flexflow` (default) or `exact`, from FLEXFLOW_TORCH_SEMANTICS."""
    value = os.environ.get("FLEXFLOW_TORCH_SEMANTICS", "flexflow").strip().lower() or "flexflow"
    if value not in MODES:
        from ..errors import ConfigError
        raise ConfigError(f"FLEXFLOW_TORCH_SEMANTICS={value!r} is not one of {', '.join(MODES)}")
    return value


def spec(method) -> OpSpec:
    return SPECS[method]


def check(method, args: dict, degree=1):
    """Apply `method`'s rules to `args` (tensors as Meta, enums as names).

    Returns (output metas, problems). Raises the typed error of any check FlexFlow
    makes at the call itself; later failures and hazards come back as `Problem`s."""
    ck = Checker(method, degree)
    outs = SPECS[method].infer(ck, **args)
    for o in outs:
        ck.rank(o.shape)
    return outs, ck.problems


def gradient_coefficients(consumers):
    """How much of each consumer's gradient contribution survives in a tensor's buffer.

    FlexFlow zeroes the buffer, then runs backward in reverse operator order; an
    accumulating backward adds (g += c), an overwriting one replaces (g = c), transpose
    doubles (g = 2g + c) (model.cc FFModel::backward:2931-2948). `consumers` are the
    write modes of the consumers in forward order; the coefficient of consumer i is the
    product of the carry factors of the consumers before it."""
    coefficients, carry = [], 1.0
    for write in consumers:
        coefficients.append(carry)
        carry *= CARRY[write]
    return coefficients


__all__ = ["ANY", "REVISION", "Checker", "Meta", "Problem", "Stage", "enum_name", "ACC", "OVER", "DOUBLE",
           "SPECS", "OpSpec", "Run", "WeightDecl", "mode", "spec", "check", "gradient_coefficients", "model"]
