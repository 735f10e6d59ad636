"""The C++ objects behind the handles: tensors, layers, models and their satellites.

Shapes are kept in NumPy order (outermost first); ``legion_dims`` gives FlexFlow's
stored order (``TensorBase::dims[0]`` is the innermost axis)."""

from dataclasses import dataclass, field

import numpy as np

# enum DataType (flexflow_c.h / ffconst.h) -> (numpy dtype, byte size)
DATA_TYPES = {40: (np.bool_, 1), 41: (np.int32, 4), 42: (np.int64, 8), 43: (np.float16, 2),
              44: (np.float32, 4), 45: (np.float64, 8), 46: (None, 0), 47: (np.int8, 1), 49: (None, 0)}
DT_INT32, DT_INT64, DT_FLOAT, DT_NONE = 41, 42, 44, 49

# FFModel guid counters start at these values (flexflow_c.h enum, model.cc FFModel::FFModel).
LAYER_GUID_FIRST_VALID = 1000000
TENSOR_GUID_FIRST_VALID = 3000000
MAX_OPNAME = 128                            # include/flexflow/config.h


@dataclass(eq=False)
class Tensor:
    dims: tuple
    data_type: int
    guid: int
    owner: "Layer" = None
    owner_idx: int = 0
    role: str = "activation"                # activation | input | weight | label
    create_grad: bool = True
    parallel: bool = False                  # has a ParallelTensor (after compile)
    value: np.ndarray = None                # what set_tensor / a loader last wrote
    value_source: str = None                # "compile", "set_tensor", "loader"
    set_in_compile: bool = False
    c_dims: object = None                   # keeps the int[] handed out by get_dims alive

    @property
    def legion_dims(self):
        return tuple(reversed(self.dims))

    @property
    def volume(self):
        return int(np.prod(self.dims, dtype=np.int64))

    @property
    def label(self):
        where = f"{self.owner.full_name}[{self.owner_idx}]" if self.owner is not None else "?"
        return f"{self.role} {where} {self.dims}"


@dataclass(eq=False)
class Layer:
    op: str                                 # C++ OperatorType name, e.g. "OP_LINEAR"
    name: str                               # the name FlexFlow received (may be None)
    full_name: str                          # "<name or op>_<guid>"
    guid: int
    inputs: list
    outputs: list = field(default_factory=list)
    weights: list = field(default_factory=list)
    props: dict = field(default_factory=dict)


@dataclass(eq=False)
class Model:
    config: object                          # a ConfigRecord copy
    cpu_offload: bool = False
    layers: list = field(default_factory=list)
    next_layer_guid: int = LAYER_GUID_FIRST_VALID
    next_tensor_guid: int = TENSOR_GUID_FIRST_VALID
    optimizer: object = None
    compiled: bool = False
    comp_mode: int = None
    loss_type: int = None
    metrics: tuple = ()
    label: Tensor = None
    final_layer: Layer = None
    initialized: bool = False
    partition: object = None                # partition.Partition (after compile)
    zeroed_at_init: list = field(default_factory=list)

    @property
    def num_gpus(self):
        return self.config.numNodes * self.config.workersPerNode

    def new_tensor(self, dims, data_type, owner=None, owner_idx=0, role="activation", create_grad=True):
        tensor = Tensor(tuple(int(d) for d in dims), int(data_type), self.next_tensor_guid, owner, owner_idx,
                        role, create_grad)
        self.next_tensor_guid += 1
        return tensor


@dataclass(eq=False)
class Optimizer:
    kind: str                               # "sgd" or "adam"
    params: dict


@dataclass(eq=False)
class Initializer:
    kind: str
    params: dict


@dataclass(eq=False)
class PerfMetrics:
    accuracy: float = 0.0


@dataclass(eq=False)
class DataLoader:
    model: Model
    batch: Tensor
    num_samples: int
    data_type: int
    next_index: int = 0
