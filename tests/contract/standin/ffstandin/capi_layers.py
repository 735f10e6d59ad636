"""``flexflow_model_add_*``: the layer builders of ``src/ops/*.cc`` (``FFModel::<op>``).

Each builder makes a Layer with the C++ output shapes, data types and weight shapes
(Legion order in C++, NumPy order here) and fires the asserts the C++ builder fires.
Checks that C++ makes later, when operators are created at compile (partitions,
split sizes, reshape volumes), live in partition.py. Where the C wrapper passes
arguments into other C++ parameters, that is modelled too (``name`` into ``inplace``)."""

from .capi import c_function
from .errors import AssertionAbort, UndefinedBehaviourAbort
from .handles import read_handles, write_handles
from .records import DT_FLOAT, DT_INT32, DT_INT64, DT_NONE, MAX_OPNAME, Layer

AGGR_MODE_NONE = 20


def new_layer(fn, model, op, name, inputs, data_type=None):
    """Layer::Layer (src/runtime/layer.cc): '<name or op>_<guid>' must be < MAX_OPNAME."""
    guid = model.next_layer_guid
    full_name = f"{name if name is not None else op[3:].lower()}_{guid}"
    if len(full_name) >= MAX_OPNAME:
        raise AssertionAbort(fn, f"layer name {full_name!r} has {len(full_name)} characters: "
                                 f"assert(pcname.length() < MAX_OPNAME) ({MAX_OPNAME})")
    for tensor in inputs:
        if tensor.owner is not None and tensor.owner not in model.layers:
            raise UndefinedBehaviourAbort(fn, f"{tensor.label} belongs to another model")
    model.next_layer_guid += 1
    layer = Layer(op, name, full_name, guid, list(inputs))
    layer.props["data_type"] = data_type
    model.layers.append(layer)
    return layer


def _output(model, layer, dims, data_type, index=0):
    tensor = model.new_tensor(dims, data_type, layer, index)
    layer.outputs.append(tensor)
    return tensor


def _weight(model, layer, dims, data_type):
    tensor = model.new_tensor(dims, data_type, layer, len(layer.weights), "weight")
    layer.weights.append(tensor)
    return tensor


def _cast(fn, model, tensor, data_type):
    """FFModel::cast, inserted by dense/layer_norm/rms_norm/binary ops on a type mismatch."""
    layer = new_layer(fn, model, "OP_CAST", None, [tensor], data_type)
    return _output(model, layer, tensor.dims, data_type)


def _unary(fn, model, op, x, name, inplace=False, scalar=0.0):
    """FFModel::unary (element_unary.cc): same shape and data type."""
    layer = new_layer(fn, model, op, name, [x], x.data_type)
    layer.props.update(inplace=bool(inplace), scalar=scalar)
    return _output(model, layer, x.dims, x.data_type)


_UNARY = {"flexflow_model_add_exp": "OP_EXP", "flexflow_model_add_sin": "OP_SIN",
          "flexflow_model_add_cos": "OP_COS", "flexflow_model_add_gelu": "OP_GELU",
          "flexflow_model_add_identity": "OP_IDENTITY", "flexflow_model_add_sigmoid": "OP_SIGMOID",
          "flexflow_model_add_tanh": "OP_TANH"}


@c_function(*_UNARY)
def add_unary(fn, model, x, name):
    return _unary(fn, model, _UNARY[fn], x, name)


@c_function("flexflow_model_add_relu", "flexflow_model_add_elu")
def add_relu_elu(fn, model, x, inplace, name):
    """The C wrapper calls handle->relu(input, name): the name lands in C++'s ``bool
    inplace`` and the layer gets no name; elu then asserts(!inplace) (element_unary.cc)."""
    if fn == "flexflow_model_add_elu" and name is not None:
        raise AssertionAbort(fn, "elu with a name: the name is passed as inplace=true and "
                                 "FFModel::elu asserts(!inplace)")
    op = "OP_ELU" if fn == "flexflow_model_add_elu" else "OP_RELU"
    return _unary(fn, model, op, x, None, inplace=name is not None)


@c_function("flexflow_model_add_rsqrt")
def add_rsqrt(fn, model, x, name):
    """handle->rsqrt(input, name): name -> inplace, no layer name."""
    return _unary(fn, model, "OP_RSQRT", x, None, inplace=name is not None)


@c_function("flexflow_model_add_pow")
def add_pow(fn, model, x, exponent, name):
    """handle->pow(input, exponent, name): name -> inplace, no layer name."""
    return _unary(fn, model, "OP_POW", x, None, inplace=name is not None, scalar=exponent)


_SCALAR = {"flexflow_model_add_scalar_multiply": "OP_SCALAR_MULTIPLY", "flexflow_model_add_scalar_add":
           "OP_SCALAR_ADD", "flexflow_model_add_scalar_sub": "OP_SCALAR_SUB",
           "flexflow_model_add_scalar_truediv": "OP_SCALAR_TRUE_DIV"}


@c_function(*_SCALAR)
def add_scalar(fn, model, x, scalar, inplace, name):
    return _unary(fn, model, _SCALAR[fn], x, name, inplace=inplace, scalar=scalar)


_BINARY = {"flexflow_model_add_add": "OP_EW_ADD", "flexflow_model_add_subtract": "OP_EW_SUB",
           "flexflow_model_add_multiply": "OP_EW_MUL", "flexflow_model_add_divide": "OP_EW_DIV",
           "flexflow_model_add_max": "OP_EW_MAX", "flexflow_model_add_min": "OP_EW_MIN"}


@c_function(*_BINARY)
def add_binary(fn, model, x, y, inplace_a, name):
    """FFModel::binary (element_binary.cc): broadcastable over the common Legion dims,
    the smaller data type is cast, the output has x's rank."""
    if len(x.dims) != len(y.dims):
        raise UndefinedBehaviourAbort(fn, f"operands of rank {len(x.dims)} and {len(y.dims)}: the output "
                                          "loop reads y->dims beyond y's rank")
    for a, b in zip(x.dims, y.dims):
        if a != b and a > 1 and b > 1:
            raise AssertionAbort(fn, f"assert(broadcastable(in1, in2)): {x.dims} and {y.dims}")
    if x.data_type < y.data_type:
        x = _cast(fn, model, x, y.data_type)
    elif y.data_type < x.data_type:
        y = _cast(fn, model, y, x.data_type)
    layer = new_layer(fn, model, _BINARY[fn], name, [x, y], x.data_type)
    layer.props["inplace_a"] = bool(inplace_a)
    return _output(model, layer, [b if a == 1 else a for a, b in zip(x.dims, y.dims)], x.data_type)


@c_function("flexflow_model_add_reduce_sum")
def add_reduce_sum(fn, model, x, axes_ptr, n, keepdims, name):
    """FFModel::reduce_sum (reduce.cc): NumPy axes, removed or kept as 1."""
    axes = [axes_ptr[i] for i in range(n)]
    if any(not 0 <= a < len(x.dims) for a in axes):
        raise UndefinedBehaviourAbort(fn, f"axes {axes} of a {len(x.dims)}-D tensor")
    layer = new_layer(fn, model, "OP_REDUCE_SUM", name, [x], DT_FLOAT)
    layer.props["axes"] = axes
    dims = [1 if i in axes else d for i, d in enumerate(x.dims)] if keepdims else \
        [d for i, d in enumerate(x.dims) if i not in axes]
    if not dims:
        raise AssertionAbort(fn, "reduce_sum over every axis leaves a 0-D tensor (no DIMFUNC case)")
    return _output(model, layer, dims, x.data_type)


@c_function("flexflow_model_add_mean")
def add_mean(fn, model, x, dims, n, keepdims, name):
    raise AssertionAbort(fn, "FFModel::mean (src/ops/mean.cc) is assert(false)")


@c_function("flexflow_model_add_reverse")
def add_reverse(fn, model, x, axis, name):
    raise AssertionAbort(fn, "FFModel::reverse (src/ops/reverse.cc) is assert(false)")


@c_function("flexflow_model_add_conv2d")
def add_conv2d(fn, model, x, out_channels, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w,
               activation, groups, use_bias, shared_op, kernel_init, bias_init, name):
    """FFModel::conv2d (conv_2d.cc): NCHW; kernel (out, in, kh, kw) with the full input
    channels whatever ``groups``; float output."""
    if len(x.dims) != 4:
        raise AssertionAbort(fn, f"assert(input->num_dims == 4): {x.dims}")
    n, c, h, w = x.dims
    layer = new_layer(fn, model, "OP_CONV2D", name, [x], DT_FLOAT)
    layer.props.update(groups=groups, activation=activation)
    out = _output(model, layer, [n, out_channels, 1 + (h + 2 * padding_h - kernel_h) // stride_h,
                                 1 + (w + 2 * padding_w - kernel_w) // stride_w], DT_FLOAT)
    _weight(model, layer, [out_channels, c, kernel_h, kernel_w], DT_FLOAT)
    if use_bias:
        _weight(model, layer, [out_channels], DT_FLOAT)
    _positive(fn, out)
    return out


@c_function("flexflow_model_add_pool2d")
def add_pool2d(fn, model, x, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w, pool_type, activation,
               name):
    if len(x.dims) != 4:
        raise AssertionAbort(fn, f"assert(input->num_dims == 4): {x.dims}")
    n, c, h, w = x.dims
    layer = new_layer(fn, model, "OP_POOL2D", name, [x], DT_FLOAT)
    out = _output(model, layer, [n, c, 1 + (h + 2 * padding_h - kernel_h) // stride_h,
                                 1 + (w + 2 * padding_w - kernel_w) // stride_w], DT_FLOAT)
    _positive(fn, out)
    return out


def _positive(fn, tensor):
    if any(d <= 0 for d in tensor.dims):
        raise AssertionAbort(fn, f"output {tensor.dims}: ParallelTensorShape::is_valid asserts size > 0")


@c_function("flexflow_model_add_batch_norm")
def add_batch_norm(fn, model, x, relu, name):
    """The layer declares two weights it never creates (batch_norm.cc); compile() aborts."""
    if len(x.dims) != 4:
        raise AssertionAbort(fn, f"assert(input->num_dims == 4): {x.dims}")
    layer = new_layer(fn, model, "OP_BATCHNORM", name, [x], DT_FLOAT)
    layer.weights.extend([None, None])
    return _output(model, layer, x.dims, DT_FLOAT)


@c_function("flexflow_model_add_embedding")
def add_embedding(fn, model, x, num_entries, out_dim, aggr, data_type, shared_op, kernel_init, name):
    """FFModel::embedding (embedding.cc): weight (num_entries, out_dim) of ``dtype``;
    AGGR_MODE_NONE appends out_dim, the others replace the last axis (the bag)."""
    layer = new_layer(fn, model, "OP_EMBEDDING", name, [x], data_type)
    layer.props["aggr"] = aggr
    dims = list(x.dims) + [out_dim] if aggr == AGGR_MODE_NONE else list(x.dims[:-1]) + [out_dim]
    out = _output(model, layer, dims, data_type)
    _weight(model, layer, [num_entries, out_dim], data_type)
    if x.data_type not in (DT_INT32, DT_INT64):
        layer.props["forward_problem"] = ("embedding_kernels: assert(m->input_type[0] == DT_INT32 || "
                                          f"m->input_type[0] == DT_INT64), input has data type {x.data_type}")
    return out


@c_function("flexflow_model_add_layer_norm")
def add_layer_norm(fn, model, x, n, axes_ptr, elementwise_affine, eps, use_bias, name):
    """FFModel::layer_norm (layer_norm.cc): ``axes`` are Legion dims and must be 0..k-1
    (the last k NumPy axes); gamma and beta have those axes' sizes."""
    axes = [axes_ptr[i] for i in range(n)]
    if n > len(x.dims):
        raise AssertionAbort(fn, "number of axes must be less than tensor dimensions")
    if axes != list(range(n)):
        raise AssertionAbort(fn, f"axes {axes}: assert(axes[i] == i && \"axes must be the first "
                                 "axes.size() dimensions\") (Legion order: [0] is the last axis)")
    layer = new_layer(fn, model, "OP_LAYERNORM", name, [x], x.data_type)
    layer.props.update(axes=axes, elementwise_affine=bool(elementwise_affine))
    out = _output(model, layer, x.dims, x.data_type)
    if elementwise_affine:
        for _ in range(2 if use_bias else 1):
            _weight(model, layer, x.dims[len(x.dims) - n:], x.data_type)
    return out


@c_function("flexflow_model_add_residual_layer_norm")
def add_residual_layer_norm(fn, model, x, residual1, residual2, use_two_residuals, n, axes_ptr,
                            elementwise_affine, eps, use_bias, inplace_residual, name):
    inputs = [x, residual1] + ([residual2] if use_two_residuals else [])
    return _residual_norm(fn, model, "OP_RESIDUAL_LAYERNORM", inputs, x.dims[len(x.dims) - n:],
                          (2 if use_bias else 1) if elementwise_affine else 0, name)


@c_function("flexflow_model_add_add_bias_residual_layer_norm")
def add_add_bias_residual_layer_norm(fn, model, x, residual, n, axes_ptr, elementwise_affine, eps, use_bias,
                                     inplace_residual, name):
    outputs = _residual_norm(fn, model, "OP_ADD_BIAS_RESIDUAL_LAYERNORM", [x, residual],
                             x.dims[len(x.dims) - n:], (2 if use_bias else 1) if elementwise_affine else 0, name)
    layer = outputs[0].owner
    layer.weights.insert(0, model.new_tensor(x.dims[-1:], x.data_type, layer, 0, "weight"))   # attention bias
    return outputs


@c_function("flexflow_model_add_residual_rms_norm")
def add_residual_rms_norm(fn, model, x1, x2, eps, dim, inplace_residual, name):
    return _residual_norm(fn, model, "OP_RESIDUAL_RMS_NORM", [x1, x2], [dim], 1, name)


def _residual_norm(fn, model, op, inputs, weight_dims, num_weights, name):
    """Serving-only fused norms: (sum of inputs, normalised sum); training forward asserts."""
    x = inputs[0]
    layer = new_layer(fn, model, op, name, inputs, x.data_type)
    outputs = [_output(model, layer, x.dims, x.data_type, i) for i in range(2)]
    for _ in range(num_weights):
        _weight(model, layer, weight_dims, x.data_type)
    return outputs


@c_function("flexflow_model_add_sigmoid_silu_multi")
def add_sigmoid_silu_multi(fn, model, x1, x2, name):
    layer = new_layer(fn, model, "OP_SIGMOID_SILU_MULTI", name, [x1, x2], x1.data_type)
    return _output(model, layer, x1.dims, x1.data_type)


@c_function("flexflow_model_add_rms_norm")
def add_rms_norm(fn, model, x, eps, dim, name):
    """FFModel::rms_norm (rms_norm.cc): weight (dim,)."""
    layer = new_layer(fn, model, "OP_RMS_NORM", name, [x], x.data_type)
    out = _output(model, layer, x.dims, x.data_type)
    _weight(model, layer, [dim], x.data_type)
    return out


@c_function("flexflow_model_add_batch_matmul")
def add_batch_matmul(fn, model, a, b, a_seq_length_dim, b_seq_length_dim):
    """FFModel::batch_matmul (batch_matmul.cc); the C API has no name argument."""
    if a_seq_length_dim > 1 or b_seq_length_dim > 1:
        raise AssertionAbort(fn, "FlexFlow currently only supports seq_length_dim of 0 or 1 (in Fortran ordering)")
    if len(a.dims) != len(b.dims):
        raise AssertionAbort(fn, f"assert(A->num_dims == B->num_dims): {a.dims} and {b.dims}")
    if len(a.dims) < 2 or a.dims[:-2] != b.dims[:-2] or a.dims[-1] != b.dims[-2]:
        raise AssertionAbort(fn, f"batch_matmul {a.dims} @ {b.dims}: batch axes must be equal and "
                                 "assert(A->dims[0] == B->dims[1])")
    layer = new_layer(fn, model, "OP_BATCHMATMUL", None, [a, b], DT_FLOAT)
    return _output(model, layer, list(a.dims[:-1]) + [b.dims[-1]], a.data_type)


@c_function("flexflow_model_add_dense")
def add_dense(fn, model, x, out_dim, activation, use_bias, data_type, shared_op, kernel_init, bias_init,
              kernel_reg_type, kernel_reg_lambda, name):
    """FFModel::dense (linear.cc): kernel (out_dim, in_dim), bias (out_dim,)."""
    if data_type == DT_NONE:
        data_type = x.data_type
    in_dim = x.dims[-1]
    if data_type != x.data_type:
        x = _cast(fn, model, x, data_type)
    layer = new_layer(fn, model, "OP_LINEAR", name, [x], data_type)
    layer.props.update(activation=activation, kernel_reg_type=kernel_reg_type)
    out = _output(model, layer, list(x.dims[:-1]) + [out_dim], data_type)
    _weight(model, layer, [out_dim, in_dim], data_type)
    if use_bias:
        _weight(model, layer, [out_dim], data_type)
    return out


@c_function("flexflow_model_add_concat")
def add_concat(fn, model, n, tensors_ptr, axis, name):
    """FFModel::concat (concat.cc): axis taken modulo the rank; same data type, rank and
    other sizes."""
    tensors = read_handles(fn, tensors_ptr, n)
    first = tensors[0]
    rank = len(first.dims)
    axis = (axis % rank + rank) % rank
    dims = list(first.dims)
    for t in tensors[1:]:
        if t.data_type != first.data_type or len(t.dims) != rank:
            raise AssertionAbort(fn, f"concat: {t.label} differs from {first.label} in data type or rank")
        for j in range(rank):
            if j == axis:
                dims[j] += t.dims[j]
            elif t.dims[j] != first.dims[j]:
                raise AssertionAbort(fn, f"concat on axis {axis}: {t.dims} and {first.dims}")
    layer = new_layer(fn, model, "OP_CONCAT", name, tensors, DT_FLOAT)
    layer.props["axis"] = axis
    return _output(model, layer, dims, first.data_type)


@c_function("flexflow_model_add_split")
def add_split(fn, model, x, n, outputs_ptr, split_ptr, axis, name):
    """FFModel::split (split.cc): writes dims[numdim - axis - 1], so axis must be a
    non-negative NumPy axis. The sizes' sum is checked when the operator is created."""
    sizes = [split_ptr[i] for i in range(n)]
    if not 0 <= axis < len(x.dims):
        raise UndefinedBehaviourAbort(fn, f"axis {axis} of a {len(x.dims)}-D tensor: writes "
                                          f"dims[{len(x.dims) - axis - 1}]")
    layer = new_layer(fn, model, "OP_SPLIT", name, [x], DT_FLOAT)
    layer.props.update(axis=axis, sizes=sizes)
    outputs = [_output(model, layer, x.dims[:axis] + (size,) + x.dims[axis + 1:], x.data_type, i)
               for i, size in enumerate(sizes)]
    write_handles(outputs_ptr, outputs)


@c_function("flexflow_model_add_flat")
def add_flat(fn, model, x, name):
    if len(x.dims) != 4:
        raise AssertionAbort(fn, f"assert(input->num_dims == 4): {x.dims}")
    layer = new_layer(fn, model, "OP_FLAT", name, [x], DT_FLOAT)
    return _output(model, layer, [x.dims[0], x.dims[1] * x.dims[2] * x.dims[3]], DT_FLOAT)


@c_function("flexflow_model_add_gather")
def add_gather(fn, model, x, index, dim, name):
    """FFModel::gather (gather.cc): index int32/int64 of x's rank, equal sizes except on
    ``dim``; the output has the index's shape and x's data type."""
    if index.data_type not in (DT_INT32, DT_INT64):
        raise AssertionAbort(fn, f"assert(index->data_type == DT_INT32 || DT_INT64): {index.label}")
    if len(x.dims) != len(index.dims):
        raise AssertionAbort(fn, f"assert(input->num_dims == index->num_dims): {x.dims}, {index.dims}")
    if not 0 <= dim < len(x.dims):
        raise UndefinedBehaviourAbort(fn, f"dim {dim} of a {len(x.dims)}-D tensor")
    if any(a != b for i, (a, b) in enumerate(zip(x.dims, index.dims)) if i != dim):
        raise AssertionAbort(fn, f"gather on dim {dim}: input {x.dims} and index {index.dims} differ elsewhere")
    layer = new_layer(fn, model, "OP_GATHER", name, [x, index], DT_FLOAT)
    layer.props["dim"] = dim
    return _output(model, layer, index.dims, x.data_type)


@c_function("flexflow_model_add_softmax")
def add_softmax(fn, model, x, dim, name):
    """The operator later asserts that ``dim`` names the innermost axis (partition.py)."""
    layer = new_layer(fn, model, "OP_SOFTMAX", name, [x], x.data_type)
    layer.props["dim"] = dim
    return _output(model, layer, x.dims, x.data_type)


@c_function("flexflow_model_add_transpose")
def add_transpose(fn, model, x, n, perm_ptr, name):
    """FFModel::transpose (transpose.cc): NumPy semantics, out axis i = input axis perm[i]."""
    perm = [perm_ptr[i] for i in range(n)]
    if n != len(x.dims):
        raise AssertionAbort(fn, f"assert(_perm.size() == input->num_dims): {perm} for {x.dims}")
    if any(not 0 <= p < n for p in perm):
        raise UndefinedBehaviourAbort(fn, f"perm {perm}: reads dims outside the tensor")
    layer = new_layer(fn, model, "OP_TRANSPOSE", name, [x], DT_FLOAT)
    layer.props["perm"] = perm
    return _output(model, layer, [x.dims[p] for p in perm], x.data_type)


@c_function("flexflow_model_add_reshape")
def add_reshape(fn, model, x, n, shape_ptr, name):
    """FFModel::reshape (reshape.cc): every size > 0 (no -1); the volume is checked when
    the operator is created."""
    shape = [shape_ptr[i] for i in range(n)]
    if any(s <= 0 for s in shape):
        raise AssertionAbort(fn, f"assert(shape[i] > 0): {shape}")
    layer = new_layer(fn, model, "OP_RESHAPE", name, [x], x.data_type)
    return _output(model, layer, shape, x.data_type)


@c_function("flexflow_model_add_dropout")
def add_dropout(fn, model, x, rate, seed, name):
    layer = new_layer(fn, model, "OP_DROPOUT", name, [x], DT_FLOAT)
    return _output(model, layer, x.dims, DT_FLOAT)


@c_function("flexflow_model_add_multihead_attention")
def add_multihead_attention(fn, model, query, key, value, embed_dim, num_heads, kdim, vdim, dropout, bias,
                            add_bias_kv, add_zero_attn, kernel_init, name):
    """FFModel::multihead_attention (attention.cc): float only; one packed weight
    (num_heads, kdim*(q+k+v features) + embed_dim*(kdim or v features))."""
    if query.data_type != DT_FLOAT:
        raise AssertionAbort(fn, "assert(data_type == DT_NONE || data_type == DT_FLOAT)")
    layer = new_layer(fn, model, "OP_MULTIHEAD_ATTENTION", name, [query, key, value], DT_FLOAT)
    out = _output(model, layer, list(query.dims[:-1]) + [embed_dim], DT_FLOAT)
    q, k, v = query.dims[-1], key.dims[-1], value.dims[-1]
    _weight(model, layer, [num_heads, kdim * (q + k + v) + embed_dim * (kdim if kdim > 0 else v)], DT_FLOAT)
    if len(key.dims) < 2 or len(value.dims) < 2 or key.dims[-2] != value.dims[-2]:
        layer.props["compile_problem"] = (f"assert key and value have the same sequence length: {key.dims}, "
                                          f"{value.dims}")
    return out
