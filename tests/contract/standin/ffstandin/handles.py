"""Handles: the fake addresses the stand-in hands out for its C++ objects, and the
record type each C handle type must point to."""

import cffi

from .config import ConfigRecord
from .errors import InvalidHandleAbort
from .records import DataLoader, Initializer, Layer, Model, Optimizer, PerfMetrics, Tensor

# C handle type -> (record class, record kind or None). Functions taking any other
# handle type (serving, DLRM) are not emulated.
HANDLE_TYPES = {
    "flexflow_config_t": (ConfigRecord, None),
    "flexflow_model_t": (Model, None),
    "flexflow_tensor_t": (Tensor, None),
    "flexflow_op_t": (Layer, None),
    "flexflow_sgd_optimizer_t": (Optimizer, "sgd"),
    "flexflow_adam_optimizer_t": (Optimizer, "adam"),
    "flexflow_initializer_t": (Initializer, None),
    "flexflow_glorot_uniform_initializer_t": (Initializer, "glorot_uniform"),
    "flexflow_zero_initializer_t": (Initializer, "zero"),
    "flexflow_uniform_initializer_t": (Initializer, "uniform"),
    "flexflow_norm_initializer_t": (Initializer, "norm"),
    "flexflow_perf_metrics_t": (PerfMetrics, None),
    "flexflow_single_dataloader_t": (DataLoader, None),
}
# Handle types FlexFlow's C++ accepts as NULL ("no shared op", "default initializer").
NULLABLE = {"flexflow_op_t", "flexflow_initializer_t"}
_FIRST_HANDLE, _HANDLE_STEP = 0x10000, 0x10
C = cffi.FFI()              # string/buffer/cast work on cdata of any FFI


class Handles:
    """Records behind handle values. The value is a fake address; a destroyed record
    keeps its address so that later use is reported as use after free."""

    def __init__(self):
        self._by_address = {}
        self._address = {}
        self._destroyed = set()

    def address(self, record):
        key = id(record)
        if key not in self._address:
            address = _FIRST_HANDLE + _HANDLE_STEP * len(self._by_address)
            self._address[key] = address
            self._by_address[address] = record
        return self._address[key]

    def resolve(self, function, ctype_name, address):
        record = self._by_address.get(address)
        if record is None:
            raise InvalidHandleAbort(function, f"{ctype_name} {hex(address)} was never returned by FlexFlow")
        if address in self._destroyed:
            raise InvalidHandleAbort(function, f"{ctype_name} {hex(address)} was destroyed (use after free)")
        cls, kind = HANDLE_TYPES[ctype_name]
        if not isinstance(record, cls) or (kind is not None and record.kind != kind):
            raise InvalidHandleAbort(function, f"{hex(address)} is a {type(record).__name__} handle, "
                                               f"not a {ctype_name}")
        return record

    def destroy(self, function, record):
        address = self._address[id(record)]
        if address in self._destroyed:
            raise InvalidHandleAbort(function, f"{hex(address)} destroyed twice")
        self._destroyed.add(address)


HANDLES = Handles()


def read_handles(function, array, count, ctype_name="flexflow_tensor_t"):
    """The records of a C array of handles (e.g. concat's inputs)."""
    return [HANDLES.resolve(function, ctype_name, int(C.cast("uintptr_t", array[i].impl))) for i in range(count)]


def write_handles(array, records):
    """Store handles into a C array the caller passed (e.g. split's outputs)."""
    for i, record in enumerate(records):
        array[i].impl = C.cast("void *", HANDLES.address(record))
