"""FFModel life cycle, optimizers, initializers, metrics and data loaders
(``flexflow_c.cc`` over ``src/runtime/model.cc``, ``src/dataloader/dataloader.cc``).

No numerics: forward, backward and update compute nothing. What is checked is the
order of calls and the asserts on the way."""

from . import partition
from .capi import c_function, destroy
from .capi_config import require_runtime
from .errors import AssertionAbort, UndefinedBehaviourAbort
from .records import DT_FLOAT, DT_INT32, DT_INT64, DataLoader, Initializer, Model, Optimizer, PerfMetrics
from .report import REPORT

COMP_MODE_TRAINING = 70
LOSS_SPARSE_CATEGORICAL_CROSSENTROPY = 51
LOSS_MEAN_SQUARED_ERROR_SUM_REDUCE = 53
METRICS_CATEGORICAL_CROSSENTROPY = 1002
METRICS_TYPES = (1001, 1002, 1004, 1008, 1016, 1032)
MAX_NUM_SAMPLES = 4196              # include/flexflow/dataloader.h (SampleIdxs::idxs)

# Ops whose training forward is assert(false) (serving only): src/ops/<op>.cc ::forward.
TRAINING_FORWARD_ABORTS = {"OP_RESIDUAL_LAYERNORM", "OP_ADD_BIAS_RESIDUAL_LAYERNORM", "OP_RESIDUAL_RMS_NORM",
                           "OP_SIGMOID_SILU_MULTI"}


@c_function("flexflow_model_create")
def model_create(fn, config, cpu_offload):
    require_runtime(fn)
    model = Model(config.copy(), cpu_offload=cpu_offload)
    REPORT.models.append(model)
    return model


@c_function("flexflow_model_destroy", "flexflow_sgd_optimizer_destroy", "flexflow_adam_optimizer_destroy",
            "flexflow_glorot_uniform_initializer_destroy", "flexflow_zero_initializer_destroy",
            "flexflow_uniform_initializer_destroy", "flexflow_norm_initializer_destroy",
            "flexflow_per_metrics_destroy", "flexflow_single_dataloader_destroy")
def delete(fn, record):
    destroy(fn, record)


@c_function("flexflow_model_compile")
def model_compile(fn, model, loss_type, metrics, nb_metrics, comp_mode):
    """FFModel::compile (model.cc): operators from layers, the data-parallel graph, the
    label tensor, then the optimizer."""
    chosen = [metrics[i] for i in range(nb_metrics)]
    for metric in chosen:
        if metric not in METRICS_TYPES:
            raise AssertionAbort(fn, f"Metrics::Metrics: unrecognised metrics type {metric}")
    if model.num_gpus < 1:
        raise AssertionAbort(fn, "no GPU processors (-ll:gpu 0): the data-parallel repartition of every "
                                 "input has degree numNodes*workersPerNode = 0 (model.cc OP_INPUT case)")
    for layer in model.layers:
        if layer.op == "OP_BATCHNORM":
            raise AssertionAbort(fn, f"{layer.full_name}: create_operator_from_layer has no case for "
                                     "batch_norm (model.cc)")
    model.comp_mode, model.loss_type, model.metrics = comp_mode, loss_type, tuple(chosen)
    final = next((layer for layer in reversed(model.layers) if layer.op not in ("OP_INPUT", "OP_WEIGHT")), None)
    if final is None or len(final.outputs) != 1:
        raise AssertionAbort(fn, "get_final_operator: the last operator must have exactly one output")
    model.final_layer = final
    label_dims = list(final.outputs[0].dims)
    label_type = DT_FLOAT
    if loss_type == LOSS_SPARSE_CATEGORICAL_CROSSENTROPY:
        label_dims[-1] = 1
        label_type = DT_INT32
    model.partition = partition.plan(fn, model, training=comp_mode == COMP_MODE_TRAINING)
    model.label = model.new_tensor(label_dims, label_type, role="label", create_grad=False)
    if loss_type == LOSS_SPARSE_CATEGORICAL_CROSSENTROPY and model.partition[final.outputs[0]][-1] != 1:
        raise AssertionAbort(fn, "sparse labels: assert(p_dims[0].degree == 1) (model.cc compile)")
    model.partition[model.label] = model.partition[final.outputs[0]]
    for layer in model.layers:
        for tensor in layer.weights + (layer.outputs if layer.op == "OP_INPUT" else []):
            if tensor is not None:
                tensor.parallel = True
    model.label.parallel = True
    if comp_mode == COMP_MODE_TRAINING and model.optimizer is None:
        raise AssertionAbort(fn, "assert(optimizer != NULL): set an optimizer before compile in training mode")
    model.compiled = True


@c_function("flexflow_model_init_layers")
def model_init_layers(fn, model):
    """FFModel::init_operators. NoOp::init of every OP_INPUT (inputs, constants, the
    label) fills it with zeros (noop.cc), so values written earlier are lost."""
    if not model.compiled:
        return                                    # no operators yet: nothing runs
    for layer, message in model.partition.init_problems:
        raise AssertionAbort(fn, f"{layer.full_name}: {message}")
    inputs = [t for layer in model.layers if layer.op == "OP_INPUT" for t in layer.outputs] + [model.label]
    for tensor in inputs:                         # the label's NoOp is an OP_INPUT too
        if tensor.value is not None:
            model.zeroed_at_init.append(f"{tensor.label} (written by {tensor.value_source})")
        tensor.value = None
    model.initialized = True


def _require_initialized(fn, model, what):
    if not model.compiled:
        raise AssertionAbort(fn, f"{what} before compile(): no operators, loss or metrics (NULL dereference)")
    if not model.initialized:
        raise AssertionAbort(fn, f"{what} before init_layers(): the operators have no OpMeta")


@c_function("flexflow_model_forward")
def model_forward(fn, model, seq_length):
    _require_initialized(fn, model, "forward()")
    for layer, message in model.partition.forward_problems:
        raise AssertionAbort(fn, f"{layer.full_name}: {message}")
    if model.comp_mode == COMP_MODE_TRAINING:
        for layer in model.layers:
            if layer.op in TRAINING_FORWARD_ABORTS:
                raise AssertionAbort(fn, f"{layer.full_name}: {layer.op}::forward is assert(false) "
                                         "(serving only)")


@c_function("flexflow_model_backward")
def model_backward(fn, model, seq_length):
    _require_initialized(fn, model, "backward()")
    if model.comp_mode != COMP_MODE_TRAINING:
        raise AssertionAbort(fn, "assert(config.computationMode == COMP_MODE_TRAINING)")
    _compute_metrics(fn, model)
    if model.loss_type == LOSS_MEAN_SQUARED_ERROR_SUM_REDUCE:
        raise AssertionAbort(fn, "Loss::backward_task: LOSS_MEAN_SQUARED_ERROR_SUM_REDUCE is unsupported")


@c_function("flexflow_model_compute_metrics")
def model_compute_metrics(fn, model):
    _require_initialized(fn, model, "compute_metrics()")
    _compute_metrics(fn, model)


def _compute_metrics(fn, model):
    if model.loss_type == LOSS_SPARSE_CATEGORICAL_CROSSENTROPY and METRICS_CATEGORICAL_CROSSENTROPY in model.metrics:
        raise AssertionAbort(fn, "metrics with sparse labels: assert(!me->measure_categorical_crossentropy)")


@c_function("flexflow_model_update", "flexflow_model_zero_gradients")
def model_update(fn, model):
    _require_initialized(fn, model, fn.replace("flexflow_model_", "") + "()")


@c_function("flexflow_model_reset_metrics", "flexflow_model_prefetch")
def model_no_effect(fn, model):
    """reset_metrics launches a task that zeroes counters; prefetch is empty."""


@c_function("flexflow_model_set_sgd_optimizer", "flexflow_model_set_adam_optimizer")
def model_set_optimizer(fn, model, optimizer):
    model.optimizer = optimizer


@c_function("flexflow_model_print_layers")
def model_print_layers(fn, model, layer_id):
    for i, layer in enumerate(model.layers):
        if layer_id in (-1, i):
            print(f"layer[{i}]: type({layer.op}) guid({layer.guid}) name({layer.full_name})")


@c_function("flexflow_model_get_layer_by_id")
def model_get_layer_by_id(fn, model, layer_id):
    if not 0 <= layer_id < len(model.layers):
        raise UndefinedBehaviourAbort(fn, f"layers[{layer_id}] of {len(model.layers)}")
    return model.layers[layer_id]


@c_function("flexflow_model_get_last_layer")
def model_get_last_layer(fn, model):
    if not model.layers:
        raise UndefinedBehaviourAbort(fn, "layers.back() of an empty vector")
    return model.layers[-1]


@c_function("flexflow_model_get_label_tensor")
def model_get_label_tensor(fn, model):
    return model.label                            # NULL before compile


@c_function("flexflow_model_get_perf_metrics")
def model_get_perf_metrics(fn, model):
    if not model.compiled:
        raise AssertionAbort(fn, "current_metrics is an empty Future before compile()")
    return PerfMetrics()


@c_function("flexflow_per_metrics_get_accuracy")
def perf_metrics_get_accuracy(fn, metrics):
    return metrics.accuracy


@c_function("flexflow_sgd_optimizer_create")
def sgd_create(fn, model, lr, momentum, nesterov, weight_decay):
    return Optimizer("sgd", dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay))


@c_function("flexflow_adam_optimizer_create")
def adam_create(fn, model, alpha, beta1, beta2, weight_decay, epsilon):
    return Optimizer("adam", dict(alpha=alpha, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
                                  epsilon=epsilon))


@c_function("flexflow_sgd_optimizer_set_lr", "flexflow_adam_optimizer_set_lr")
def optimizer_set_lr(fn, optimizer, lr):
    optimizer.params["lr" if optimizer.kind == "sgd" else "alpha"] = lr


_INITIALIZERS = {"flexflow_glorot_uniform_initializer_create": ("glorot_uniform", ("seed",)),
                 "flexflow_zero_initializer_create": ("zero", ()),
                 "flexflow_uniform_initializer_create": ("uniform", ("seed", "min_val", "max_val")),
                 "flexflow_norm_initializer_create": ("norm", ("seed", "mean", "stddev"))}


@c_function(*_INITIALIZERS)
def initializer_create(fn, *args):
    kind, names = _INITIALIZERS[fn]
    return Initializer(kind, dict(zip(names, args)))


@c_function("flexflow_initializer_create_null")
def initializer_create_null(fn):
    return None


@c_function("flexflow_single_dataloader_create2")
def dataloader_create_from_pointer(fn, model, batch, full_input, num_samples, data_type):
    """SingleDataLoader(ff, input->parallel_tensor, ptr, num_samples, datatype)."""
    if not batch.parallel or batch.role not in ("input", "label"):
        raise AssertionAbort(fn, f"assert(input->parallel_tensor != nullptr): {batch.label} is not an input "
                                 "or label tensor of a compiled model")
    if data_type not in (DT_FLOAT, DT_INT32, DT_INT64):
        raise AssertionAbort(fn, f"SingleDataLoader: data type {data_type} is not float, int32 or int64")
    if data_type != batch.data_type:
        raise UndefinedBehaviourAbort(fn, f"the array's data type {data_type} differs from {batch.label}'s "
                                          f"{batch.data_type}: the copy task misreads the buffer")
    # an input's loader fills its un-partitioned NoOp tensor; the label is partitioned
    per_shard = batch.dims[0] // (model.partition[batch][0] if batch.role == "label" else 1)
    if per_shard > MAX_NUM_SAMPLES:
        raise UndefinedBehaviourAbort(fn, f"{per_shard} samples per shard overflow SampleIdxs::idxs "
                                          f"[{MAX_NUM_SAMPLES}]")
    loader = DataLoader(model, batch, num_samples, data_type)
    _next_batch(fn, loader)
    return loader


@c_function("flexflow_single_dataloader_set_num_samples")
def dataloader_set_num_samples(fn, loader, samples):
    loader.num_samples = samples


@c_function("flexflow_single_dataloader_get_num_samples")
def dataloader_get_num_samples(fn, loader):
    return loader.num_samples


@c_function("flexflow_single_dataloader_reset")
def dataloader_reset(fn, loader):
    loader.next_index = 0


@c_function("flowflow_single_dataloader_next_batch")
def dataloader_next_batch(fn, loader, model):
    _next_batch(fn, loader)


def _next_batch(fn, loader):
    batch_size = loader.model.config.batchSize
    if batch_size != loader.batch.dims[0]:
        raise AssertionAbort(fn, f"assert(ff.config.batchSize == batch_input->dims[NDIM - 1].size): "
                                 f"batch size {batch_size}, {loader.batch.label}")
    if loader.next_index + batch_size > loader.num_samples:
        raise UndefinedBehaviourAbort(fn, f"samples {loader.next_index}..{loader.next_index + batch_size - 1} "
                                          f"of {loader.num_samples}: reads past the array (no wrap-around)")
    loader.next_index += batch_size
