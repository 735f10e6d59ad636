"""`OpSpec`: one FlexFlow training operator, as FlexFlow 24.9.1+13 implements it.

Each spec says, in one place, everything both sides need:
- `infer(ck, **args)`: output shapes, dtypes and data-parallel partition, with every
  check FlexFlow makes (raised at the call, or recorded with the stage at which
  FlexFlow aborts) and every training hazard;
- `weights(**args)`: the parameters the layer owns (NumPy-order shapes);
- `forward(run, ins, ws, **args)`: the PyTorch computation, with FlexFlow's forward
  and backward quirks when `run.exact` is False;
- `input_grad`: how FlexFlow's backward writes input gradients (accumulate, overwrite,
  or transpose's doubling), which decides what survives when a tensor has several
  consumers.

`args` are FlexFlow's own parameter names; tensors arrive as `Meta` (in `infer`) and
enums as member names ("AC_MODE_RELU").
"""

from __future__ import annotations

from dataclasses import dataclass, field

ACC, OVER, DOUBLE = "accumulate", "overwrite", "double"
#: coefficient each write mode applies to the gradient already in the buffer
CARRY = {ACC: 1.0, OVER: 0.0, DOUBLE: 2.0}


@dataclass
class Run:
    """How the embedded runtime executes one layer: `exact` selects mathematically
    exact gradients (and forwards without FlexFlow's bugs); `state` persists across
    forward passes (transpose's accumulating output, dropout's generator) and is part of
    a checkpoint; `cache` holds what can be derived again (checked indices, the
    runtime's fast-path hints) and is not."""
    exact: bool = False
    degree: int = 1
    state: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    device: object = "cpu"


@dataclass(frozen=True)
class WeightDecl:
    shape: tuple
    label: str                 # "kernel", "bias", "gamma", ...
    init: str = "glorot"       # FlexFlow's hard-wired initialiser: glorot | zeros | ones
    dtype: str = "DT_FLOAT"


class OpSpec:
    method = ""            # FFModel method name
    op_type = ""           # OpType member name
    source = ""            # where FlexFlow implements it
    tensors = ("input",)   # tensor-valued parameters, in order
    input_grad = ACC
    weight_grad = ACC

    def infer(self, ck, **args):
        raise NotImplementedError

    def weights(self, **args):
        return []

    def forward(self, run, ins, ws, **args):
        raise NotImplementedError

    def stored_output_grad(self, grad, output, **args):
        """The output's gradient as FlexFlow's buffer holds it once this op's backward has
        run (default: as its consumers wrote it)."""
        return grad

    def inplace_input(self, **args):
        """The tensor parameter whose storage the output reuses (in-place ops), or None."""
        return None

    def __repr__(self):
        return f"OpSpec({self.method})"


SPECS = {}


def register(spec):
    """Register a spec (a class, instantiated, or an instance) under its method name."""
    SPECS[(spec() if isinstance(spec, type) else spec).method] = spec() if isinstance(spec, type) else spec
    return spec
