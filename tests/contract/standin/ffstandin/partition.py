"""What ``compile()`` does with the layers: the operator constructors' asserts and the
data-parallel partition (FlexFlow always compiles a data-parallel graph:
``DefaultConfig::onlyDataParallel = true``).

Every OP_INPUT gets a Repartition of its axis 0 into N = numNodes * workersPerNode
parts in training mode (model.cc, ``create_operator_from_layer`` OP_INPUT case); each
operator derives its outputs' partition from its inputs'. Operators that would mix
samples across parts assert, at compile or at ``init_layers``
(``Op::check_output_input_weight_same_parallel_is``). Degrees are kept per NumPy axis."""

from .errors import AssertionAbort

MAX_USER_DIMS = 4       # MAX_TENSOR_DIM (5 with config.linux's FF_MAX_DIM) minus the replica dim
SAME_AS_INPUT = {"OP_EXP", "OP_SIN", "OP_COS", "OP_GELU", "OP_IDENTITY", "OP_SIGMOID", "OP_TANH", "OP_RELU",
                 "OP_ELU", "OP_RSQRT", "OP_POW", "OP_SCALAR_MULTIPLY", "OP_SCALAR_ADD", "OP_SCALAR_SUB",
                 "OP_SCALAR_TRUE_DIV", "OP_DROPOUT", "OP_CAST", "OP_RESIDUAL_LAYERNORM",
                 "OP_ADD_BIAS_RESIDUAL_LAYERNORM", "OP_RESIDUAL_RMS_NORM", "OP_SIGMOID_SILU_MULTI"}


class Partition(dict):
    """tensor -> degrees per NumPy axis, plus the problems found for later stages."""

    def __init__(self):
        super().__init__()
        self.init_problems = []       # (layer, message): init_layers() aborts
        self.forward_problems = []    # (layer, message): the first forward() aborts


def plan(fn, model, training):
    n = model.num_gpus
    part = Partition()
    for layer in model.layers:
        for tensor in layer.inputs + layer.outputs + [w for w in layer.weights if w is not None]:
            if len(tensor.dims) > MAX_USER_DIMS:
                raise AssertionAbort(fn, f"{layer.full_name}: {tensor.label} has {len(tensor.dims)} axes; "
                                         f"with the replica dim that exceeds MAX_TENSOR_DIM ({MAX_USER_DIMS + 1})")
        if "compile_problem" in layer.props:
            raise AssertionAbort(fn, f"{layer.full_name}: {layer.props['compile_problem']}")
        if "forward_problem" in layer.props:
            part.forward_problems.append((layer, layer.props["forward_problem"]))
        if layer.op == "OP_INPUT":
            part[layer.outputs[0]] = _input(fn, layer, n if training else 1)
            continue
        degrees = [part[t] for t in layer.inputs]
        rule = _RULES.get(layer.op)
        outputs = [degrees[0]] * len(layer.outputs) if layer.op in SAME_AS_INPUT else \
            rule(fn, layer, degrees, part)
        for tensor, d in zip(layer.outputs, outputs):
            part[tensor] = tuple(d)
        spaces = {_space(d) for d in degrees + [part[t] for t in layer.outputs]}
        if len(spaces) > 1:
            part.init_problems.append((layer, "check_output_input_weight_same_parallel_is() fails: its inputs "
                                              f"and outputs are partitioned differently {sorted(spaces)}"))
    return part


def _space(degrees):
    """The launch space get_or_create_task_is() derives from a tensor's degrees."""
    return tuple(d for d in degrees if d > 1)


def _input(fn, layer, n):
    tensor = layer.outputs[0]
    if tensor.dims[0] % n:
        raise AssertionAbort(fn, f"{tensor.label}: the data-parallel Repartition splits axis 0 ({tensor.dims[0]}) "
                                 f"into {n} parts: assert(tensor->check_valid()) (size % degree != 0)")
    return (n,) + (1,) * (len(tensor.dims) - 1)


def _binary(fn, layer, degrees, part):
    (x, y), (dx, dy) = [t.dims for t in layer.inputs], degrees
    out = []
    for i, (a, b) in enumerate(zip(x, y)):
        if a == b and dx[i] != dy[i]:
            raise AssertionAbort(fn, f"{layer.full_name}: operands partitioned differently on axis {i} "
                                     "(element_binary.cc: assert(in1->dims[i] == in2->dims[i]))")
        out.append(dy[i] if a == 1 and b != 1 else dx[i])
    return [out]


def _softmax(fn, layer, degrees, part):
    rank = len(layer.inputs[0].dims) + 1                     # with the replica dim
    legion_dim = _c_mod(rank - 1 - layer.props["dim"], rank)
    if legion_dim != 0:
        raise AssertionAbort(fn, f"{layer.full_name}: softmax axis {layer.props['dim']} is not the last axis: "
                                 "Softmax::Softmax asserts(dim == 0) (pass -1)")
    return [degrees[0]]


def _c_mod(a, b):
    """C++ % (truncates toward zero)."""
    return a - b * int(a / b)


def _channels_last(fn, layer, degrees, part):
    d = degrees[0]
    if layer.op == "OP_EMBEDDING" and layer.props["aggr"] == 20:
        return [tuple(d) + (1,)]
    return [tuple(d[:-1]) + (1,)]


def _sample_only(fn, layer, degrees, part):
    return [(degrees[0][0],) + (1,) * (len(layer.outputs[0].dims) - 1)]


def _layer_norm(fn, layer, degrees, part):
    if any(d > 1 for d in degrees[0]):
        if layer.props["elementwise_affine"]:
            raise AssertionAbort(fn, f"{layer.full_name}: gamma/beta keep the sample axis' degree with size 1: "
                                     "create_parallel_weight asserts(p->check_valid())")
        part.forward_problems.append((layer, "layer_norm forward_task asserts the shard volume "
                                             "(effective_batch_size is global)"))
    return [degrees[0]]


def _rms_norm(fn, layer, degrees, part):
    if any(d > 1 for d in degrees[0]):
        raise AssertionAbort(fn, f"{layer.full_name}: RMSNorm asserts every non-replica dim has degree 1 "
                                 "(rms_norm.cc)")
    return [degrees[0]]


def _reshape(fn, layer, degrees, part):
    x, out = layer.inputs[0].dims, layer.outputs[0].dims
    if layer.inputs[0].volume != layer.outputs[0].volume:
        raise AssertionAbort(fn, f"{layer.full_name}: reshape {x} -> {out}: "
                                 "assert(outputs[0]->get_volume() == inputs[0]->get_volume())")
    result = [1] * len(out)
    for i in range(min(len(x), len(out))):          # outermost first while sizes match (reshape.cc)
        if x[i] != out[i]:
            break
        result[i] = degrees[0][i]
    return [result]


def _transpose(fn, layer, degrees, part):
    return [[degrees[0][p] for p in layer.props["perm"]]]


def _split(fn, layer, degrees, part):
    axis, sizes, x = layer.props["axis"], layer.props["sizes"], layer.inputs[0].dims
    if degrees[0][axis] > 1:
        raise AssertionAbort(fn, f"{layer.full_name}: split along the partitioned axis {axis}: "
                                 "assert(dims[legion_axis].degree == 1) (split.cc)")
    if sum(sizes) != x[axis]:
        raise AssertionAbort(fn, f"{layer.full_name}: split sizes {sizes} do not add up to {x[axis]}: "
                                 "assert(split_size == input->dims[legion_axis].size) (split.cc)")
    return [degrees[0]] * len(sizes)


def _concat(fn, layer, degrees, part):
    axis = layer.props["axis"]
    for i, d in enumerate(degrees[1:], 1):
        if d[axis] > 1:
            raise AssertionAbort(fn, f"{layer.full_name}: concat along the partitioned axis {axis}: "
                                     "assert(inputs[i]->dims[j].degree == 1) (concat.cc)")
        if any(d[j] != degrees[0][j] for j in range(len(d)) if j != axis):
            raise AssertionAbort(fn, f"{layer.full_name}: input {i} is partitioned differently "
                                     "(concat.cc: assert(inputs[i]->dims[j] == inputs[0]->dims[j]))")
    return [degrees[0]]


def _gather(fn, layer, degrees, part):
    dim, (dx, di) = layer.props["dim"], degrees
    if dx[dim] > 1 or di[dim] > 1:
        raise AssertionAbort(fn, f"{layer.full_name}: gather along the partitioned axis {dim} (gather.cc)")
    if any(a != b for j, (a, b) in enumerate(zip(dx, di)) if j != dim):
        raise AssertionAbort(fn, f"{layer.full_name}: input and index are partitioned differently (gather.cc)")
    return [di]


def _reduce(fn, layer, degrees, part):
    axes = layer.props["axes"]
    if any(degrees[0][a] > 1 for a in axes):
        raise AssertionAbort(fn, f"{layer.full_name}: reduce over a partitioned axis (reduce.cc)")
    d = degrees[0]
    if len(layer.outputs[0].dims) == len(d):
        return [[1 if i in axes else x for i, x in enumerate(d)]]
    return [[x for i, x in enumerate(d) if i not in axes]]


def _batch_matmul(fn, layer, degrees, part):
    da, db = degrees
    if tuple(da[:-2]) != tuple(db[:-2]) or da[-1] != db[-2]:
        raise AssertionAbort(fn, f"{layer.full_name}: A and B are partitioned differently "
                                 "(batch_matmul.cc: ParallelDim equality of batch and K dims)")
    return [tuple(da[:-1]) + (db[-1],)]


_RULES = {"OP_EW_ADD": _binary, "OP_EW_SUB": _binary, "OP_EW_MUL": _binary, "OP_EW_DIV": _binary,
          "OP_EW_MAX": _binary, "OP_EW_MIN": _binary, "OP_SOFTMAX": _softmax,
          "OP_LINEAR": _channels_last, "OP_EMBEDDING": _channels_last, "OP_MULTIHEAD_ATTENTION": _channels_last,
          "OP_CONV2D": _sample_only, "OP_POOL2D": _sample_only, "OP_FLAT": _sample_only,
          "OP_LAYERNORM": _layer_norm, "OP_RMS_NORM": _rms_norm, "OP_RESHAPE": _reshape,
          "OP_TRANSPOSE": _transpose, "OP_SPLIT": _split, "OP_CONCAT": _concat, "OP_GATHER": _gather,
          "OP_REDUCE_SUM": _reduce, "OP_BATCHMATMUL": _batch_matmul}
