"""The vocabulary of FlexFlow's rules: what a rule sees of a tensor (`Meta`), when
FlexFlow fails (`Stage`), and how a rule reports it (`Problem`, `Checker`).

A rule never raises for a failure FlexFlow only hits later: it records a `Problem`
with the stage at which FlexFlow aborts (`compile`, `init_layers`, the first
`forward` or `backward`), so the embedded runtime can raise it at that same call,
the converter can refuse to emit it, and `analyze()` can list it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import List, Optional

from ..errors import DTypeError, ShapeError, UnsupportedByFlexFlowError

#: FlexFlow 24.9.1+13 (commit 89f10f4 of flexflow/flexflow-train); every `source` below
#: is a path in that tree.
REVISION = "FlexFlow 24.9.1+13 (89f10f4)"

MAX_RANK = 4            # FF_MAX_DIM 5 minus the replica dim every ParallelTensor gets
FLOAT = "DT_FLOAT"
INT32, INT64, BOOLEAN, HALF, DOUBLE = "DT_INT32", "DT_INT64", "DT_BOOLEAN", "DT_HALF", "DT_DOUBLE"
INTS = (INT32, INT64)
#: FlexFlow's DataType order: an implicit cast always goes to the larger one
DTYPE_ORDER = [BOOLEAN, INT32, INT64, HALF, FLOAT, DOUBLE]

#: data-parallel degree used by the converter: "more than one GPU, any number"
ANY = "any"


class Stage:
    """When FlexFlow fails, in call order."""
    BUILD = "build"          # the FFModel method itself (Python or C++ builder assert)
    COMPILE = "compile"      # FFModel.compile (operator creation, parallel tensors)
    INIT = "init_layers"     # FFModel.init_layers (kernel set-up)
    FORWARD = "forward"      # the first forward()
    BACKWARD = "backward"    # the first backward() / zero_gradients()
    ORDER = [BUILD, COMPILE, INIT, FORWARD, BACKWARD]


@dataclass(frozen=True)
class Meta:
    """What FlexFlow's rules see of a tensor: NumPy-order shape, DataType name, and the
    NumPy axis carrying the data-parallel partition (None: not partitioned)."""
    shape: tuple
    dtype: str
    part: Optional[int] = None

    @property
    def rank(self):
        return len(self.shape)

    def with_(self, **changes) -> "Meta":
        return replace(self, **changes)


@dataclass
class Problem:
    """A call FlexFlow rejects (`stage`), or, with `stage=None`, a call FlexFlow runs
    but computes differently from the mathematics it names (a training hazard)."""
    stage: Optional[str]
    error: type
    message: str
    source: str
    parallel: bool = False     # only with more than one data-parallel GPU
    training: bool = False     # only when compiled for training (inputs are repartitioned)

    def exception(self, where=""):
        prefix = f"{where}: " if where else ""
        return self.error(f"{prefix}{self.message} [{self.source}]")

    def __str__(self):
        when = f"fails at {self.stage}" if self.stage else "trains differently"
        return f"{when}: {self.message} [{self.source}]"


@dataclass
class Checker:
    """Collects the problems of one call. `degree` is the data-parallel degree (1, an
    int, or ANY); `training` whether the model is compiled for training."""
    op: str
    degree: object = 1
    problems: List[Problem] = field(default_factory=list)

    @property
    def parallel(self):
        return self.degree == ANY or self.degree > 1

    def fail(self, error, message, source):
        """A problem FlexFlow's Python or C++ builder hits at the call itself."""
        raise error(f"{self.op}: {message} [{source}]")

    def problem(self, stage, error, message, source):
        self.problems.append(Problem(stage, error, f"{self.op}: {message}", source))

    def parallel_problem(self, stage, message, source):
        """A problem only with more than one data-parallel GPU."""
        if self.parallel:
            self.problems.append(Problem(stage, UnsupportedByFlexFlowError,
                                         f"{self.op}: {message} (data parallelism over "
                                         f"{self.degree} GPUs)", source, parallel=True))

    def hazard(self, message, source):
        """FlexFlow runs this but trains differently from the mathematics."""
        self.problems.append(Problem(None, UnsupportedByFlexFlowError, f"{self.op}: {message}", source))

    # -- common rules -------------------------------------------------------------------
    def dtypes(self, meta, allowed, what, stage, source, name="input"):
        if meta.dtype not in allowed:
            self.problem(stage, DTypeError, f"{name} is {meta.dtype}; {what} handles "
                         f"{', '.join(allowed)} only", source)

    def rank(self, shape, what="output"):
        if not 1 <= len(shape) <= MAX_RANK:
            self.fail(UnsupportedByFlexFlowError, f"{what} would be a {len(shape)}-D tensor "
                      f"{tuple(shape)}; FlexFlow tensors have 1 to {MAX_RANK} axes (FF_MAX_DIM "
                      "5 minus the replica dim)", "config/config.linux FF_MAX_DIM; include/flexflow/ffconst.h")
        if any(int(s) < 1 for s in shape):
            self.fail(ShapeError, f"every axis of the {what} must be positive, got {tuple(shape)}",
                      "src/runtime/parallel_tensor.cc ParallelTensorBase::check_valid")


def promote(a: str, b: str) -> str:
    """FFModel::binary casts the operand with the smaller DataType to the larger."""
    return a if DTYPE_ORDER.index(a) >= DTYPE_ORDER.index(b) else b


def volume(shape) -> int:
    return math.prod(shape)


def enum_name(value) -> str:
    """An enum member (real FlexFlow's, ours, or a recorded {"$enum": "Cls.NAME"}) as NAME."""
    if isinstance(value, dict) and "$enum" in value:
        return value["$enum"].split(".")[1]
    return getattr(value, "name", value)
