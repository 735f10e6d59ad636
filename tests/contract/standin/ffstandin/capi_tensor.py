"""Tensor and op (layer) accessors (``flexflow_c.cc`` over ``TensorBase`` in
``src/runtime/parallel_tensor.cc`` and ``FFModel::get_parallel_tensor_from_tensor``)."""

import sys

import numpy as np

from .capi import C, c_function, destroy
from .errors import AssertionAbort, UndefinedBehaviourAbort
from .records import DATA_TYPES, DT_FLOAT, DT_INT32, DT_INT64, Layer

# The C++ type each typed accessor copies: function -> DataType the buffer holds.
_SETTERS = {"flexflow_tensor_set_tensor_float": DT_FLOAT, "flexflow_tensor_set_tensor_int": DT_INT32,
            "flexflow_tensor_set_tensor_int64": DT_INT64}
_GETTERS = {"flexflow_tensor_get_tensor_float": DT_FLOAT, "flexflow_tensor_get_tensor_int": DT_INT32,
            "flexflow_tensor_get_tensor_int64": DT_INT64}


@c_function("flexflow_tensor_create")
def tensor_create(fn, model, num_dims, dims, data_type, create_grad):
    """FFModel::create_tensor<NDIM>: an OP_INPUT layer owning the new tensor."""
    return _input_tensor(fn, model, num_dims, dims, data_type, create_grad, "OP_INPUT")


@c_function("flexflow_constant_create")
def constant_create(fn, model, num_dims, dims, value, data_type):
    """FFModel::create_constant: also an OP_INPUT layer; the ConstantInitializer is not
    copied to the parallel tensor, and init_layers zero-fills inputs (noop.cc)."""
    return _input_tensor(fn, model, num_dims, dims, data_type, False, "OP_INPUT", constant=value)


def _input_tensor(fn, model, num_dims, dims, data_type, create_grad, op, constant=None):
    from .capi_layers import new_layer
    if not 1 <= num_dims <= 5:
        raise AssertionAbort(fn, f"{num_dims}-D tensor: flexflow_c.cc handles 1 to 5 dims (assert(0))")
    shape = [dims[i] for i in range(num_dims)]
    if any(d <= 0 for d in shape):
        raise AssertionAbort(fn, f"dims {shape}: every size must be positive")
    layer = new_layer(fn, model, op, None, [])
    tensor = model.new_tensor(shape, data_type, layer, 0, "input", create_grad)
    layer.outputs.append(tensor)
    layer.props["constant"] = constant
    return tensor


@c_function("flexflow_tensor_destroy")
def tensor_destroy(fn, tensor):
    destroy(fn, tensor)


@c_function("flexflow_tensor_get_num_dims")
def tensor_get_num_dims(fn, tensor):
    return len(tensor.dims)


@c_function("flexflow_tensor_get_dim")
def tensor_get_dim(fn, tensor, legion_axis):
    if not 0 <= legion_axis < len(tensor.dims):
        raise UndefinedBehaviourAbort(fn, f"dims[{legion_axis}] of a {len(tensor.dims)}-D tensor")
    return tensor.legion_dims[legion_axis]


@c_function("flexflow_tensor_get_dims")
def tensor_get_dims(fn, tensor):
    if tensor.c_dims is None:
        tensor.c_dims = C.new("int[]", list(tensor.legion_dims))
    return C.cast("int *", tensor.c_dims)


@c_function("flexflow_tensor_get_data_type")
def tensor_get_data_type(fn, tensor):
    return tensor.data_type


@c_function("flexflow_tensor_get_owner_op")
def tensor_get_owner_op(fn, tensor):
    return tensor.owner


def parallel_tensor(fn, model, tensor):
    """FFModel::get_parallel_tensor_from_tensor: set at compile for inputs, weights and
    the label; found through the owner layer's operator for op outputs; else assert."""
    if tensor.parallel:
        return
    if tensor.owner is not None and tensor.owner.op != "OP_INPUT" and model.compiled \
            and tensor.owner in model.layers and tensor in tensor.owner.outputs:
        return
    raise AssertionAbort(fn, f"get_parallel_tensor_from_tensor: {tensor.label} has no parallel tensor "
                             "(compile() not called yet, or not a tensor of this model)")


@c_function(*_SETTERS)
def tensor_set(fn, tensor, model, num_dim, dims, data):
    """TensorBase::set_tensor returns false on a shape mismatch, then copies the buffer
    into the parallel tensor (no data-type check: 'TODO: check data type matches')."""
    sizes = [dims[i] for i in range(num_dim)]
    if sizes != list(tensor.dims):
        return False
    parallel_tensor(fn, model, tensor)
    buffer_type = _SETTERS[fn]
    if buffer_type != tensor.data_type:
        raise UndefinedBehaviourAbort(fn, f"copies {np.dtype(DATA_TYPES[buffer_type][0])} data into "
                                          f"{tensor.label} of data type {tensor.data_type}")
    dtype, size = DATA_TYPES[buffer_type]
    raw = C.buffer(C.cast("char *", data), tensor.volume * size)
    tensor.value = np.frombuffer(raw, dtype=dtype).reshape(tensor.dims).copy()
    tensor.set_in_compile = _called_from_flexflow_compile()
    tensor.value_source = "FFModel.compile" if tensor.set_in_compile else "set_tensor"
    return True


@c_function(*_GETTERS)
def tensor_get(fn, tensor, model, data, get_gradients):
    parallel_tensor(fn, model, tensor)
    buffer_type = _GETTERS[fn]
    if buffer_type != tensor.data_type:
        raise UndefinedBehaviourAbort(fn, f"reads {tensor.label} of data type {tensor.data_type} as "
                                          f"{np.dtype(DATA_TYPES[buffer_type][0])}")
    _write(data, tensor, None if get_gradients else tensor.value)
    return True


@c_function("flexflow_model_get_output_tensor_float")
def model_get_output_tensor(fn, model, tensor, data, get_gradients):
    """TensorBase::get_output_parallel_tensor: the final operator's output, whatever
    tensor the call names; it is copied into a buffer sized for that tensor."""
    if not model.compiled:
        raise AssertionAbort(fn, "get_final_operator() before compile(): no operators")
    output = model.final_layer.outputs[0]
    if output.volume > tensor.volume:
        raise UndefinedBehaviourAbort(fn, f"copies the final output {output.dims} into a buffer sized for "
                                          f"{tensor.label}")
    _write(data, output, None)
    return True


def _write(data, tensor, value):
    dtype, size = DATA_TYPES[tensor.data_type]
    out = np.frombuffer(C.buffer(C.cast("char *", data), tensor.volume * size), dtype=dtype)
    out[:] = 0 if value is None else value.reshape(-1)


def _called_from_flexflow_compile():
    frame = sys._getframe()
    while frame is not None:
        code = frame.f_code
        if code.co_name == "compile" and code.co_filename.replace("\\", "/").endswith("flexflow/core/flexflow_cffi.py"):
            return True
        frame = frame.f_back
    return False


@c_function("flexflow_tensor_inline_map", "flexflow_tensor_inline_unmap")
def tensor_inline_map(fn, tensor, model, config):
    parallel_tensor(fn, model, tensor)


@c_function("flexflow_tensor_get_raw_ptr_float", "flexflow_tensor_get_raw_ptr_int32")
def tensor_get_raw_ptr(fn, tensor, model, config):
    parallel_tensor(fn, model, tensor)
    wanted = DT_FLOAT if fn.endswith("float") else DT_INT32
    if tensor.data_type != wanted:
        raise UndefinedBehaviourAbort(fn, f"{tensor.label} has data type {tensor.data_type}")
    if tensor.value is None:
        tensor.value = np.zeros(tensor.dims, dtype=DATA_TYPES[tensor.data_type][0])
    return C.cast("float *" if wanted == DT_FLOAT else "int32_t *", C.from_buffer(tensor.value))


@c_function("flexflow_op_get_num_parameters")
def op_get_num_parameters(fn, layer):
    return len(layer.weights)


@c_function("flexflow_op_get_num_inputs")
def op_get_num_inputs(fn, layer):
    return len(layer.inputs)


@c_function("flexflow_op_get_num_outputs")
def op_get_num_outputs(fn, layer):
    return len(layer.outputs)


@c_function("flexflow_op_get_parameter_by_id", "flexflow_op_get_input_by_id", "flexflow_op_get_output_by_id")
def op_get_by_id(fn, layer: Layer, index):
    items = {"parameter": layer.weights, "input": layer.inputs, "output": layer.outputs}[fn.split("_")[3]]
    if not 0 <= index < len(items):
        raise UndefinedBehaviourAbort(fn, f"index {index} of {len(items)} in {layer.full_name}")
    return items[index]
