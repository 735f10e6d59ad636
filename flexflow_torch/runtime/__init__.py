"""The embedded FlexFlow runtime: FlexFlow's Python API (`flexflow.core`) on PyTorch.

Names, parameters and conventions follow FlexFlow (../shared/flexflow-api); where
FlexFlow rejects or aborts, a typed error says so. Every deviation is listed in
LIMITS.md beside this file.
"""

from .config import FFConfig, init_flexflow_runtime
from .dataloader import SingleDataLoader
from .enums import (ActiMode, AggrMode, CompMode, DataType, InferenceMode, LossType,
                    MetricsType, ModelType, OpType, OptimizerType, ParameterSyncType,
                    PoolType, RegularizerMode, RequestType, enum_to_int, enum_to_str,
                    int_to_enum, str_to_enum)
from .initializers import (GlorotUniformInitializer, Initializer, NormInitializer,
                           UniformInitializer, ZeroInitializer)
from . import layers as _layers
from .layers import *  # noqa: F401,F403  (Op and its per-operator subclasses)
from .layers import Op
from .model import FFModel
from .optimizers import AdamOptimizer, SGDOptimizer
from .serving_types import RotaryEmbeddingMeta
from .tensor import Parameter, Tensor
from .training import PerfMetrics

__all__ = [
    "FFConfig", "FFModel", "Tensor", "Parameter", "Op", "SGDOptimizer", "AdamOptimizer",
    "Initializer", "GlorotUniformInitializer", "ZeroInitializer", "UniformInitializer",
    "NormInitializer", "SingleDataLoader", "PerfMetrics", "RotaryEmbeddingMeta",
    "init_flexflow_runtime", "ActiMode", "AggrMode", "CompMode", "DataType",
    "InferenceMode", "LossType", "MetricsType", "ModelType", "OpType", "OptimizerType",
    "ParameterSyncType", "PoolType", "RegularizerMode", "RequestType", "enum_to_int",
    "enum_to_str", "int_to_enum", "str_to_enum",
] + sorted({cls.__name__ for cls in _layers.WRAPPERS.values()} | set(_layers.SERVING_WRAPPERS))
