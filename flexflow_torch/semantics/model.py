"""Rules about the model as a whole: input tensors, data parallelism, the final
operator, losses and their gradients, and what `init_layers` does to inputs."""

from __future__ import annotations

import torch

from ..errors import DTypeError, LabelRangeError, ModelStateError, ShapeError, UnsupportedByFlexFlowError
from .base import BOOLEAN, FLOAT, HALF, INT32, Checker, Meta, Problem, Stage

INPUT_SRC = "src/runtime/model.cc create_operator_from_layer (OP_INPUT):3110-3153"


def input_meta(ck: Checker, dims, dtype) -> Meta:
    """`create_tensor`: an INPUT layer, repartitioned on axis 0 over every GPU in
    training (model.cc:3147-3151); check_valid aborts compile when axis 0 is not
    divisible (parallel_tensor.cc:502, model.cc:1880)."""
    dims = tuple(int(d) for d in dims)
    ck.rank(dims, "tensor")
    if dtype == BOOLEAN:
        ck.problem(Stage.COMPILE, DTypeError, "DT_BOOLEAN tensors cannot be mapped",
                   "src/runtime/model.cc map_tensor_with_dim2:2061-2085")
    elif dtype == HALF:
        ck.problem(Stage.FORWARD, DTypeError, "DT_HALF inputs: the Repartition every input gets "
                   "in training has no DT_HALF case", "src/parallel_ops/partition.cc "
                   "Repartition::forward_task:375-387, " + INPUT_SRC)
        ck.problems[-1].training = True
    if isinstance(ck.degree, int) and dims[0] % ck.degree:
        ck.problem(Stage.COMPILE, ShapeError, f"axis 0 ({dims[0]}) is split across {ck.degree} GPUs for "
                   "data parallelism and must be divisible by that count",
                   "src/runtime/parallel_tensor.cc check_valid:502, " + INPUT_SRC)
        ck.problems[-1].parallel = True
    return Meta(dims, dtype, part=0)


#: rules of FlexFlow's API that are behaviour rather than checks (when, what, source)
API_RULES = [
    ("at init_layers", "every input tensor, constants and the label included, is zero-filled: write them "
     "after init_layers (data loaders do in next_batch)", "src/ops/noop.cc NoOp::init:183-240"),
    ("always", "create_constant's value never reaches the tensor: it holds zeros",
     "src/runtime/model.cc:3130-3141, src/ops/noop.cc NoOp::init"),
    ("always", "gradients of create_tensor inputs are never written (the input's Repartition skips its "
     "backward)", "src/parallel_ops/partition.cc:280-285"),
    ("with data parallelism", "get_tensor/get_gradients of a partitioned activation or the label return GPU "
     "0's rows only (the rest is uninitialised)", "src/runtime/parallel_tensor.cc get_tensor:703-750"),
    ("with data parallelism", "a dense L2 regulariser is added on every GPU before the all-reduce: N x lambda",
     "src/ops/kernels/linear_kernels.cu:691-706, src/runtime/optimizer_kernel.cu:91-97"),
    ("with data parallelism", "every GPU seeds dropout identically over its own rows: masks repeat per GPU",
     "src/ops/kernels/dropout_kernels.cu:60-65"),
    ("plain python", "init_flexflow_runtime requires num_gpus, memory_per_gpu and zero_copy_memory_per_node "
     "and replaces sys.argv with the flags its keys translate to (flexflow_torch.init_runtime passes them)",
     "python/flexflow/core/__init__.py:98-153"),
]


def degree_of(ffconfig) -> int:
    """FlexFlow's data-parallel degree: numNodes x workersPerNode (model.cc:3147-3151)."""
    return int(ffconfig.num_nodes) * int(ffconfig.workers_per_node)


def sinks(layers):
    """Layers none of whose outputs feed another layer (`layers`: objects with `inputs`
    and `outputs` handle lists, in creation order)."""
    used = {id(h) for layer in layers for h in layer.inputs}
    return [layer for layer in layers if not any(id(h) in used for h in layer.outputs)]


def final_layer_problem(layers):
    """FlexFlow binds the loss and metrics to the last operator of its compiled order, a
    breadth-first topological order whose ties follow hash iteration
    (substitution.cc convert_graph_to_operators:3628-3878, model.cc get_final_operator:2958).
    That is the model's sink only when the sink is unique."""
    ends = sinks(layers)
    if len(ends) > 1:
        names = ", ".join(layer.describe() for layer in ends[:4])
        return Problem(Stage.COMPILE, UnsupportedByFlexFlowError,
                       f"{len(ends)} operators have unused outputs ({names}); FlexFlow binds the loss "
                       "to the last operator of a hash-ordered topological sort, so it is undefined "
                       "which: consume or remove every other output", "src/runtime/model.cc "
                       "get_final_operator:2958-2967, src/runtime/substitution.cc:3628-3878")
    return None


def label_meta(loss_type, out: Meta) -> Meta:
    """The label tensor compile() creates from the final operator (model.cc:3895-3925)."""
    if loss_type == "LOSS_SPARSE_CATEGORICAL_CROSSENTROPY":
        return Meta(out.shape[:-1] + (1,), INT32, out.part)
    return Meta(out.shape, FLOAT, out.part)


def check_loss(loss_type, metrics, final_op_type, out: Meta):
    """What compile() accepts (raised there)."""
    if loss_type == "LOSS_MEAN_SQUARED_ERROR_SUM_REDUCE":
        raise UnsupportedByFlexFlowError(
            "LOSS_MEAN_SQUARED_ERROR_SUM_REDUCE is not implemented in FlexFlow's backward task (it "
            "prints 'Unsupported loss' and aborts); use LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE "
            "[src/loss_functions/loss_functions.cc Loss::backward_task_with_dim]")
    if loss_type in ("LOSS_SPARSE_CATEGORICAL_CROSSENTROPY", "LOSS_CATEGORICAL_CROSSENTROPY") \
            and final_op_type != "SOFTMAX":
        raise UnsupportedByFlexFlowError(
            f"{loss_type} expects the final operator to be softmax (its gradient is p - y on "
            f"probabilities), but it is {final_op_type.lower()}: add ffmodel.softmax(logits) last "
            "[src/loss_functions/loss_functions.cu]")
    if "METRICS_CATEGORICAL_CROSSENTROPY" in metrics and loss_type == "LOSS_SPARSE_CATEGORICAL_CROSSENTROPY":
        raise UnsupportedByFlexFlowError("METRICS_CATEGORICAL_CROSSENTROPY cannot be measured with "
                                         "sparse labels; use METRICS_SPARSE_CATEGORICAL_CROSSENTROPY "
                                         "[src/metrics_functions/metrics_functions.cc]")
    if out.dtype != FLOAT:
        raise DTypeError(f"the model output must be float, got {out.dtype}")


def loss_hazard(loss_type, out: Meta):
    if loss_type == "LOSS_SPARSE_CATEGORICAL_CROSSENTROPY" and out.rank > 2:
        return Problem(None, UnsupportedByFlexFlowError,
                       f"sparse cross-entropy on a {out.rank}-D output {out.shape}: the kernel takes "
                       f"axis 0 as the samples and all other axes as one class axis, so only "
                       f"{out.shape[0]} labels take part; end the model with a 2-D (samples, classes) "
                       "softmax, or use flexflow_torch.CrossEntropyHead",
                       "src/loss_functions/loss_functions.cc backward_task_with_dim:134-136")
    return None


def check_labels(labels, classes):
    flat = labels.reshape(-1)
    if not flat.numel():
        return
    lo, hi = (int(v) for v in torch.aminmax(flat))
    if lo < 0 or hi >= classes:
        raise LabelRangeError(
            f"labels must lie in [0, {classes}), got [{lo}, {hi}]; FlexFlow "
            "has no ignore index and no bounds check, so map padding such as -100 to a valid class")


def sparse_ce_gradient(probs, ids, scale, exact, shards=1):
    """d(loss)/d(output) as loss_functions.cu writes it for sparse CE: copy p, subtract 1 at
    label[i] for each of the num_samples = axis-0 rows of the shard (num_classes =
    volume / num_samples), then times `scale`. `exact`: one label per position. `ids`:
    the labels as flat int64 class ids in [0, classes) (the caller checks them,
    `check_labels`)."""
    classes = probs.shape[-1]
    if exact or probs.dim() <= 2:
        rows = probs.reshape(-1, classes)
        index = ids.reshape(-1, 1)
        grad = rows.clone().scatter_add_(1, index, rows.new_full(index.shape, -1.0))
        return grad.reshape(probs.shape).mul_(scale)
    grads = []
    for p, y in zip(probs.chunk(shards), ids.chunk(shards)):
        n = p.shape[0]
        rows = p.reshape(n, -1).clone()
        rows[torch.arange(n, device=rows.device), y[:n]] -= 1.0      # label[i], i < num_samples, read flat
        grads.append(rows.reshape(p.shape))
    return torch.cat(grads).mul_(scale)


def loss_gradient(loss_type, output, labels, batch_size, exact, shards=1):
    """The gradient FlexFlow's loss backward writes into the final output (it overwrites
    the buffer; loss_functions.cu:40,49,57), then multiplies by its scale factor:
    float(1 / batchSize), 2 / volume for MSE (loss_functions.cc Loss::backward:48-54,
    cuda_helper.cu scale_kernel). Sparse CE takes `labels` as `_class_ids` gives them."""
    scale = 1.0 / batch_size        # a Python float: PyTorch rounds it to the float32 FlexFlow uses
    if loss_type == "LOSS_SPARSE_CATEGORICAL_CROSSENTROPY":
        return sparse_ce_gradient(output, labels, scale, exact, shards)
    if loss_type == "LOSS_CATEGORICAL_CROSSENTROPY":
        return (output - labels).mul_(scale)
    if loss_type == "LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE":
        return (output - labels).mul_(2.0 / output.numel())
    return torch.full_like(output, scale)          # LOSS_IDENTITY


def readable_rows(meta_part, dims, degree):
    """With data parallelism, get_tensor of a partitioned activation maps only the
    sub-region of GPU 0 (parallel_tensor.cc get_tensor:703-750): the first B/N rows of
    the partitioned axis hold values, the rest of the returned array is uninitialised."""
    if degree <= 1 or meta_part is None:
        return None
    return meta_part, dims[meta_part] // degree


def check_state(ok, message):
    if not ok:
        raise ModelStateError(message)
