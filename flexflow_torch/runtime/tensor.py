"""`Tensor` and `Parameter`: FlexFlow's Python tensor wrappers over runtime storage.

As in FlexFlow, a `Tensor` is a thin wrapper around a handle; several wrappers may
share one handle (`FFModel.label_tensor` returns a fresh wrapper each time). The
handle owns the current value (a torch tensor), its gradient and its metadata.
Shapes are NumPy order (outermost first), as FlexFlow's Python side shows them.
"""

import numpy as np
import torch

from ..errors import DTypeError, ModelStateError, ShapeError, UnsupportedByFlexFlowError
from ..semantics import Meta
from ..semantics.model import readable_rows
from .enums import DataType

TORCH_DTYPES = {
    DataType.DT_BOOLEAN: torch.bool,
    DataType.DT_INT32: torch.int32,
    DataType.DT_INT64: torch.int64,
    DataType.DT_HALF: torch.float16,
    DataType.DT_FLOAT: torch.float32,
    DataType.DT_DOUBLE: torch.float64,
}
DATA_TYPES = {v: k for k, v in TORCH_DTYPES.items()}
NUMPY_DATA_TYPES = {
    np.dtype("bool"): DataType.DT_BOOLEAN,
    np.dtype("int32"): DataType.DT_INT32,
    np.dtype("int64"): DataType.DT_INT64,
    np.dtype("float16"): DataType.DT_HALF,
    np.dtype("float32"): DataType.DT_FLOAT,
    np.dtype("float64"): DataType.DT_DOUBLE,
}
FLOAT_TYPES = (DataType.DT_HALF, DataType.DT_FLOAT, DataType.DT_DOUBLE)


def data_type_of_array(array):
    """The FlexFlow DataType of a NumPy array, or a DTypeError naming the dtype."""
    try:
        return NUMPY_DATA_TYPES[np.dtype(array.dtype)]
    except KeyError:
        raise DTypeError(
            f"arrays of dtype {array.dtype} cannot be given to FlexFlow; "
            "use float32, int32 or int64") from None


class TensorHandle:
    """Runtime storage behind a `Tensor`: what FlexFlow keeps in Legion regions."""

    __slots__ = ("dims", "data_type", "value", "owner_layer", "output_index",
                 "create_grad", "is_parameter", "initializer", "label", "part", "grad_value",
                 "pending")

    def __init__(self, dims, data_type, owner_layer=None, output_index=0,
                 create_grad=True, is_parameter=False, initializer=None, label="", part=None):
        self.dims = tuple(int(d) for d in dims)
        self.data_type = data_type
        self.value = None
        self.owner_layer = owner_layer
        self.output_index = output_index
        self.create_grad = create_grad
        self.is_parameter = is_parameter
        self.initializer = initializer
        self.label = label
        self.part = part          # NumPy axis split across data-parallel GPUs
        self.grad_value = None    # the tensor whose gradient is this one's (in place)
        self.pending = None       # the fused group that computes this tensor on demand

    @property
    def torch_dtype(self):
        return TORCH_DTYPES[self.data_type]

    @property
    def meta(self):
        return Meta(self.dims, self.data_type.name, self.part)

    @property
    def is_input(self):
        return self.owner_layer is None and not self.is_parameter

    def describe(self):
        where = self.label or (self.owner_layer.describe() if self.owner_layer else "input")
        return f"tensor {self.dims} {self.data_type.name} ({where})"


def _numpy(value):
    return value.detach().to("cpu").contiguous().numpy().copy()


class Tensor:
    """A FlexFlow tensor seen from Python (dims in NumPy order)."""

    __slots__ = ["p_handle", "handle", "_handle", "num_dims", "dims", "data_type",
                 "owner_op", "mapped"]

    def __init__(self, handle, deallocate=True, owner_op_type=None, p_handle=None):
        if not isinstance(handle, TensorHandle):
            raise TypeError("Tensor wraps a runtime handle; create tensors with "
                            "FFModel.create_tensor or an operator method")
        self.handle = handle
        self._handle = handle
        self.p_handle = p_handle
        self.num_dims = len(handle.dims)
        self.dims = handle.dims
        self.data_type = handle.data_type
        layer = handle.owner_layer
        self.owner_op = layer.op if layer is not None else None
        self.mapped = False

    def __repr__(self):
        return f"Tensor(dims={self.dims}, data_type={self.data_type.name})"

    # -- reading and writing values ------------------------------------------------
    def _value(self):
        if self.handle.value is None and self.handle.pending is not None:
            self.handle.pending.materialize(grads=False)
        if self.handle.value is None:
            raise ModelStateError(
                f"{self.handle.describe()} has no value yet: run forward() (for "
                "activations), compile() (for weights) or feed it with a data loader "
                "or set_tensor() (for inputs)")
        return self.handle.value

    def _readout(self, ffmodel, array):
        """With data parallelism FlexFlow maps only GPU 0's piece of a partitioned
        activation or label: the rest of the returned array is uninitialised (here NaN,
        or the integer minimum)."""
        degree = getattr(ffmodel, "_degree", 1)
        if ffmodel is None or self.handle in ffmodel._input_handles:
            return array
        rows = readable_rows(self.handle.part, self.dims, degree)
        if rows is None:
            return array
        axis, keep = rows
        index = [slice(None)] * array.ndim
        index[axis] = slice(keep, None)
        array[tuple(index)] = np.nan if array.dtype.kind == "f" else np.iinfo(array.dtype).min
        return array

    def get_tensor(self, ffmodel):
        """A copy of the tensor's current values as a NumPy array of shape `dims`."""
        if self.data_type == DataType.DT_HALF:
            raise DTypeError("FlexFlow's get_tensor cannot read HALF tensors")
        return self._readout(ffmodel, _numpy(self._value()).reshape(self.dims))

    def set_tensor(self, ffmodel, np_array):
        """Overwrite the tensor with `np_array` (C-contiguous, exactly `dims`).

        As in FlexFlow only float32 (DT_FLOAT tensors) and int32 (DT_INT32) arrays
        are accepted; int64 must be cast to int32 by the caller."""
        if not isinstance(np_array, np.ndarray):
            raise DTypeError(f"set_tensor needs a NumPy array, got {type(np_array).__name__}")
        if not np_array.flags["C_CONTIGUOUS"]:
            raise ShapeError("set_tensor needs a C-contiguous array: pass "
                             "np.ascontiguousarray(array)")
        if tuple(np_array.shape) != self.dims:
            raise ShapeError(f"set_tensor: array shape {tuple(np_array.shape)} does not "
                             f"match the tensor's dims {self.dims}")
        allowed = {np.dtype("float32"): DataType.DT_FLOAT, np.dtype("int32"): DataType.DT_INT32}
        expected = allowed.get(np_array.dtype)
        if expected is None:
            raise DTypeError(f"set_tensor: unsupported array dtype {np_array.dtype}; FlexFlow "
                             "accepts float32 or int32 (cast int64 ids with .astype('int32'))")
        if expected != self.data_type:
            raise DTypeError(f"set_tensor: a {np_array.dtype} array cannot be written into a "
                             f"{self.data_type.name} tensor")
        device = ffmodel._device if ffmodel is not None else "cpu"
        if self.handle.is_parameter and self.handle.value is not None:
            with torch.no_grad():
                self.handle.value.copy_(torch.from_numpy(np_array))
        else:
            self.handle.value = torch.from_numpy(np_array.copy()).to(device)
            self.handle.pending = None
        return True

    def get_gradients(self, ffmodel, comm_type):
        """The gradient from the last backward() (zeros where nothing flowed).

        For the final operator this is the loss gradient FlexFlow writes into its
        output (e.g. (p - onehot) / batch_size for sparse cross-entropy)."""
        if self.handle.pending is not None:
            self.handle.pending.materialize(grads=True)
        value = self._value()
        grad = None
        if ffmodel is not None and self.handle in ffmodel._input_handles and not ffmodel._exact:
            value = value.detach()      # Repartition::backward skips graph inputs: never written
        elif self.handle.grad_value is not None:
            value = self.handle.grad_value
        elif ffmodel is not None:
            grad = ffmodel._seeded_grads.get(id(self.handle))
        if grad is None and value.requires_grad:
            grad = ffmodel._grad_of(value) if ffmodel is not None else value.grad
        layer = self.handle.owner_layer
        if grad is not None and layer is not None and not self.handle.is_parameter \
                and self.handle.grad_value is None and ffmodel is not None and not ffmodel._exact:
            grad = layer.spec.stored_output_grad(grad, value.detach(), **layer.attrs)
        array = _numpy(grad if grad is not None else torch.zeros_like(value)).reshape(self.dims)
        return self._readout(ffmodel, array)

    def get_model_output_tensor(self, ffmodel):
        """The final operator's output, whichever tensor this is called on (FlexFlow)."""
        return Tensor(ffmodel._final_output_handle()).get_tensor(ffmodel)

    def get_model_output_gradients(self, ffmodel, comm_type):
        return Tensor(ffmodel._final_output_handle()).get_gradients(ffmodel, comm_type)

    # -- mapping (zero-copy views) --------------------------------------------------
    def inline_map(self, ffmodel, ffconfig):
        if self.mapped:
            raise ModelStateError("tensor is already mapped")
        self._value()
        self.mapped = True

    def inline_unmap(self, ffmodel, ffconfig):
        if not self.mapped:
            raise ModelStateError("tensor is not mapped")
        self.mapped = False

    def get_array(self, ffmodel, ffconfig):
        """A NumPy view of the mapped tensor (writes go to the tensor)."""
        if not self.mapped:
            raise ModelStateError("call inline_map(ffmodel, ffconfig) before get_array")
        value = self._value()
        if value.device.type != "cpu":
            raise ModelStateError("get_array views host memory; the embedded runtime is "
                                  "running on a GPU: use get_tensor instead")
        value._ff_external = True       # written through NumPy: nothing may cache what it holds
        return value.detach().numpy().reshape(self.dims)

    def get_flat_array(self, ffmodel, ffconfig):
        return self.get_array(ffmodel, ffconfig).reshape(-1)

    def attach_numpy_array(self, ffmodel, ffconfig, np_array):
        if tuple(np_array.shape) != self.dims or not np_array.flags["C_CONTIGUOUS"]:
            raise ShapeError(f"attach_numpy_array needs a C-contiguous array of shape {self.dims}")
        if data_type_of_array(np_array) != self.data_type:
            raise DTypeError(f"cannot attach a {np_array.dtype} array to a "
                             f"{self.data_type.name} tensor")
        self.handle.value = torch.from_numpy(np_array)
        self.handle.value._ff_external = True       # the caller's array: it may change any time
        self.handle.pending = None

    def detach_numpy_array(self, ffconfig):
        raise UnsupportedByFlexFlowError(
            "detach_numpy_array cannot work in FlexFlow: its Python side passes 2 arguments to the "
            "3-argument C function flexflow_tensor_detach_raw_ptr [python/flexflow/core/flexflow_cffi.py "
            "__detach_raw_ptr]")

    def is_mapped(self):
        raise UnsupportedByFlexFlowError(
            "is_mapped's C body is assert(false && \"Deprecated API\") [src/c/flexflow_c.cc "
            "flexflow_tensor_is_mapped]; keep track of inline_map/inline_unmap yourself")


class Parameter(Tensor):
    """A layer weight (FlexFlow layouts equal PyTorch's for dense, conv2d, embedding)."""

    __slots__ = ["parameter_handle"]

    def __init__(self, handle):
        super().__init__(handle)
        self.parameter_handle = handle

    def set_weights(self, ffmodel, np_array):
        """Copy `np_array` into the weight; needs a compiled model, exact shape,
        C-contiguous float32 (FlexFlow would reinterpret other dtypes byte-wise)."""
        if self.handle.value is None:
            raise ModelStateError("weights exist only after ffmodel.compile(); call "
                                  "set_weights after compile")
        if not isinstance(np_array, np.ndarray) or not np_array.flags["C_CONTIGUOUS"]:
            raise ShapeError("set_weights needs a C-contiguous NumPy array: pass "
                             "np.ascontiguousarray(w, dtype=np.float32)")
        if tuple(np_array.shape) != self.dims:
            raise ShapeError(f"set_weights: array shape {tuple(np_array.shape)} does not match "
                             f"the parameter's dims {self.dims} ({self.handle.describe()})")
        if np_array.dtype != np.float32:
            raise DTypeError(f"set_weights: got {np_array.dtype}; FlexFlow copies the buffer as "
                             "float32 without checking, so pass np_array.astype(np.float32)")
        with torch.no_grad():
            self.handle.value.copy_(torch.from_numpy(np_array))
        return True

    def copy_in(self, array):
        """set_weights for flexflow_torch's weight loading: `array` (float32, the weight's
        dims) may be a strided view of a PyTorch parameter, copied without a contiguous
        temporary."""
        if self.handle.value is None:
            raise ModelStateError("weights exist only after ffmodel.compile()")
        if tuple(array.shape) != self.dims or array.dtype != np.float32:
            raise ShapeError(f"weight for {self.handle.describe()}: got {array.dtype} {tuple(array.shape)}, "
                             f"needs float32 {self.dims}")
        with torch.no_grad():
            self.handle.value.copy_(torch.from_numpy(array))

    def get_weights(self, ffmodel):
        """The weight's values as a float32 NumPy array of shape `dims`."""
        if self.handle.value is None:
            raise ModelStateError("weights exist only after ffmodel.compile()")
        return _numpy(self.handle.value).astype(np.float32).reshape(self.dims)
