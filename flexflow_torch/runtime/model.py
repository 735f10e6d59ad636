"""`FFModel`: FlexFlow's model API on PyTorch kernels.

Operators are recorded in creation order (FlexFlow's layer order) and run in that
order by `forward()`, each as a PyTorch function, with autograd providing the
backward pass. Loss gradients, metrics and optimizer updates follow FlexFlow's
conventions (see training.py and LIMITS.md).
"""

import torch

from ..errors import DTypeError, ModelStateError, ShapeError, UnsupportedByFlexFlowError
from .config import FFConfig, _require_runtime, runtime_device
from .dataloader import DataLoaderOps
from .enums import CompMode, DataType, LossType, MetricsType, OpType
from .layers import WRAPPERS, Layer, Op
from .ops.dense import DenseOps
from .ops.elementwise import ElementwiseOps
from .ops.norm import NormOps
from .ops.reduction import ReductionOps
from .ops.serving import ServingOps
from .ops.shape import ShapeOps
from .optimizers import check_optimizer
from .tensor import DATA_TYPES, FLOAT_TYPES, TORCH_DTYPES, Tensor, TensorHandle
from .training import PerfMetrics, TrainingLoop

MAX_DIMS = 4        # FF_MAX_DIM 5 minus FlexFlow's replica dimension
MAX_OPNAME = 128


class FFModel(ElementwiseOps, DenseOps, NormOps, ShapeOps, ReductionOps, ServingOps,
              DataLoaderOps, TrainingLoop):
    """A FlexFlow model (embedded runtime)."""

    def __init__(self, ffconfig):
        _require_runtime()
        if not isinstance(ffconfig, FFConfig):
            raise TypeError(f"FFModel takes an FFConfig, got {type(ffconfig).__name__}")
        self.handle = self._handle = self
        self._ffconfig = ffconfig
        self._layers, self._nb_layers, self._tracing_id = {}, 0, 0
        self.initializers, self.attr_tensors = {}, {}
        self._graph, self._input_handles = [], []
        self._device = torch.device(runtime_device())
        self._compiled = self._initialized = False
        self._optimizer = self._loss_type = self._label = None
        self._metrics, self._comp_mode = [], CompMode.TRAINING
        self._perf = PerfMetrics(None)
        self._seeded_grads, self._pending_backward = {}, None
        self._generator = torch.Generator().manual_seed(0)
        self._grad_enabled = True

    # -- bookkeeping ---------------------------------------------------------------
    def _torch_dtype(self, data_type):
        return TORCH_DTYPES[data_type]

    def get_layers(self):
        return self._layers

    def add_layer(self, op_type, name):
        """FlexFlow's bookkeeping hook: wrap the last layer created as an `Op`."""
        layer = self._graph[-1]
        op = WRAPPERS.get(op_type, Op)(layer, idx=self._nb_layers, name=name)
        layer.op, layer.idx = op, self._nb_layers
        self._layers[self._nb_layers] = op
        self._nb_layers += 1

    def _check_dims(self, dims, what):
        if not 1 <= len(dims) <= MAX_DIMS:
            raise UnsupportedByFlexFlowError(
                f"{what}: {len(dims)}-D tensor {tuple(dims)}; FlexFlow tensors have 1 to "
                f"{MAX_DIMS} axes (its build adds a replica axis to FF_MAX_DIM=5)")
        if any(int(d) < 1 for d in dims):
            raise ShapeError(f"{what}: every axis must be positive, got {tuple(dims)}")

    def _weight(self, dims, initializer, label, data_type=DataType.DT_FLOAT):
        return TensorHandle(dims, data_type, is_parameter=True, initializer=initializer,
                            label=label)

    def _add_layer(self, op_type, name, inputs, fn, weights=(), num_outputs=1,
                   inplace_input=None, attrs=None):
        """Record one operator. Output shapes come from running `fn` on meta tensors,
        so every operator's shape logic is exactly its PyTorch kernel's."""
        if self._compiled:
            raise ModelStateError("operators must be added before compile()")
        for t in inputs:
            if not isinstance(t, Tensor):
                raise TypeError(f"{op_type.name.lower()}: inputs must be FlexFlow Tensors, "
                                f"got {type(t).__name__}")
        if name is not None and len(f"{name}_{len(self._graph)}") >= MAX_OPNAME:
            raise UnsupportedByFlexFlowError(
                f"layer name {name!r} is too long: FlexFlow layer names must stay under "
                f"{MAX_OPNAME} characters including its _<id> suffix")
        layer = Layer(op_type, name, [t.handle for t in inputs], fn, weights, attrs)
        for w in weights:
            w.owner_layer = layer
        metas = [torch.empty(h.dims, dtype=h.torch_dtype, device="meta") for h in layer.inputs]
        wmetas = [torch.empty(w.dims, dtype=w.torch_dtype, device="meta") for w in weights]
        try:
            outs = fn(metas, wmetas)
        except (ShapeError, UnsupportedByFlexFlowError, DTypeError):
            raise
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ShapeError(f"{op_type.name.lower()}: inputs "
                             f"{[h.dims for h in layer.inputs]} do not fit: {exc}") from None
        for k, out in enumerate(outs[:num_outputs]):
            self._check_dims(tuple(out.shape), f"output of {op_type.name.lower()}")
            layer.outputs.append(TensorHandle(tuple(out.shape), DATA_TYPES[out.dtype], owner_layer=layer,
                                              output_index=k))
        if inplace_input is not None and inplace_input.handle.dims == layer.outputs[0].dims:
            layer.inplace_input = inplace_input.handle
        self._graph.append(layer)
        self.add_layer(op_type, name)
        tensors = [Tensor(h) for h in layer.outputs]
        return tensors if num_outputs > 1 or op_type == OpType.SPLIT else tensors[0]

    # -- tensors ---------------------------------------------------------------------
    def create_tensor(self, dims, data_type, create_grad=True):
        """A graph input of NumPy-order `dims`; dim 0 is the sample (batch) axis."""
        dims = tuple(int(d) for d in dims)
        self._check_dims(dims, "create_tensor")
        if not isinstance(data_type, DataType) or data_type == DataType.DT_NONE:
            raise DTypeError(f"create_tensor needs a concrete DataType, got {data_type!r}")
        gpus = self._ffconfig.workers_per_node * self._ffconfig.num_nodes
        if dims[0] % gpus:
            raise ShapeError(f"create_tensor: dim 0 ({dims[0]}) is split across {gpus} GPUs "
                             "for data parallelism and must be divisible by that count")
        handle = TensorHandle(dims, data_type, create_grad=create_grad, label="input")
        self._input_handles.append(handle)
        return Tensor(handle, owner_op_type=OpType.INPUT)

    def create_constant(self, dims, value, data_type):
        """An input without gradient filled with `value` (FlexFlow's create_constant)."""
        tensor = self.create_tensor(dims, data_type, create_grad=False)
        tensor.handle.value = torch.full(tensor.dims, value, dtype=tensor.handle.torch_dtype,
                                         device=self._device)
        return tensor

    def map_tensor(self, tensor, parallel_op=None):
        raise UnsupportedByFlexFlowError("map_tensor asserts in FlexFlow's C API; use "
                                         "create_data_loader or set_tensor")

    def get_tensor_by_id(self, id):
        raise UnsupportedByFlexFlowError("get_tensor_by_id asserts in FlexFlow's C API; use "
                                         "get_layer_by_id(i).get_parameter_by_id(j)")

    def get_output_tensor(self, ffmodel, data_type):
        raise UnsupportedByFlexFlowError("FFModel.get_output_tensor is broken in FlexFlow; "
                                         "use tensor.get_tensor(ffmodel)")

    # -- layers ------------------------------------------------------------------------
    def get_layer_by_id(self, layer_id):
        try:
            return self._layers[layer_id]
        except KeyError:
            raise IndexError(f"no layer {layer_id}: the model has {self._nb_layers}") from None

    def get_last_layer(self):
        return self.get_layer_by_id(self._nb_layers - 1)

    def get_layer_by_name(self, layer_name):
        for op in self._layers.values():
            if op.name == layer_name:
                return op
        raise KeyError(f"Cannot find the layer with name {layer_name!r}")

    def print_layers(self, id=-1):
        ops = self._layers.values() if id == -1 else [self.get_layer_by_id(id)]
        for op in ops:
            layer = op.handle
            print(f"{op.idx:4d} {layer.op_type.name:<22} {str(op.name):<40} "
                  f"{[h.dims for h in layer.inputs]} -> {[h.dims for h in layer.outputs]}")

    def _final_layer(self):
        if not self._graph:
            raise ModelStateError("the model has no operators")
        return self._graph[-1]

    def _final_output_handle(self):
        layer = self._final_layer()
        if len(layer.outputs) != 1:
            raise ModelStateError(f"the last operator ({layer.describe()}) has "
                                  f"{len(layer.outputs)} outputs; FlexFlow binds the loss "
                                  "to a final operator with exactly one output")
        return layer.outputs[0]

    # -- compile and run -------------------------------------------------------------
    def set_optimizer(self, optimizer):
        check_optimizer(optimizer)
        if optimizer is not None:
            self._optimizer = optimizer

    optimizer = property(fset=set_optimizer)

    def compile(self, optimizer=None, loss_type=None, metrics=None, comp_mode=None):
        """Create weights and optimizer state, the label tensor, then load pending
        `attr_tensors` (FlexFlow's order)."""
        self.optimizer = optimizer
        if not isinstance(loss_type, LossType):
            raise TypeError(f"compile needs a LossType loss_type, got {loss_type!r}")
        if metrics is None:
            raise TypeError("compile: metrics must be an iterable of MetricsType")
        metrics = list(metrics)
        for m in metrics:
            if not isinstance(m, MetricsType):
                raise TypeError(f"compile: {m!r} is not a MetricsType")
        comp_mode = CompMode.TRAINING if comp_mode is None else comp_mode
        if self._compiled:
            raise ModelStateError("the model is already compiled")
        out = self._final_output_handle()
        self._check_loss(loss_type, metrics, out)
        self._loss_type, self._metrics, self._comp_mode = loss_type, metrics, comp_mode
        for layer in self._graph:
            for w in layer.weights:
                value = torch.empty(w.dims, dtype=w.torch_dtype)
                with torch.no_grad():
                    w.initializer.fill(value, self._generator)
                w.value = value.to(self._device).requires_grad_(w.data_type in FLOAT_TYPES)
        sparse = loss_type == LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY
        label_dims = out.dims[:-1] + (1,) if sparse else out.dims
        self._label = TensorHandle(label_dims, DataType.DT_INT32 if sparse else DataType.DT_FLOAT,
                                   create_grad=False, label="label tensor")
        self._compiled = True
        for ff_tensor, np_tensor in self.attr_tensors.items():
            ff_tensor.set_tensor(self, np_tensor)
        print("Compiled ffmodel!")

    def _check_loss(self, loss_type, metrics, out):
        final = self._final_layer()
        if loss_type == LossType.LOSS_MEAN_SQUARED_ERROR_SUM_REDUCE:
            raise UnsupportedByFlexFlowError(
                "LOSS_MEAN_SQUARED_ERROR_SUM_REDUCE is not implemented in FlexFlow's backward "
                "task (it aborts); use LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE")
        if loss_type in (LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                         LossType.LOSS_CATEGORICAL_CROSSENTROPY) and final.op_type != OpType.SOFTMAX:
            raise UnsupportedByFlexFlowError(
                f"{loss_type.name} expects the final operator to be softmax (FlexFlow's "
                f"gradient is p - y on probabilities), but it is {final.describe()}: add "
                "ffmodel.softmax(logits) as the last layer")
        if (MetricsType.METRICS_CATEGORICAL_CROSSENTROPY in metrics
                and loss_type == LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY):
            raise UnsupportedByFlexFlowError(
                "METRICS_CATEGORICAL_CROSSENTROPY cannot be measured with sparse labels; use "
                "METRICS_SPARSE_CATEGORICAL_CROSSENTROPY")
        if out.data_type not in FLOAT_TYPES:
            raise DTypeError(f"the model output must be floating point, got {out.data_type.name}")

    @property
    def label_tensor(self):
        if self._label is None:
            raise ModelStateError("label_tensor exists only after compile()")
        return Tensor(self._label, deallocate=False)

    def init_layers(self):
        if not self._compiled:
            raise ModelStateError("call compile() before init_layers()")
        self._initialized = True

    def prefetch(self):
        pass

    def _params(self):
        return [w.value for layer in self._graph for w in layer.weights
                if w.value is not None and w.value.requires_grad]

    def forward(self, seq_length=None):
        """Run every operator in layer order (dropout included, as in FlexFlow)."""
        if not self._initialized:
            raise ModelStateError("call compile() and init_layers() before forward()")
        training = self._grad_enabled and self._comp_mode == CompMode.TRAINING
        for h in self._input_handles:
            if h.value is None and any(h in layer.inputs for layer in self._graph):
                raise ModelStateError(
                    f"{h.describe()} has no data: feed it with a data loader (next_batch) "
                    "or set_tensor before forward()")
            if training and h.create_grad and h.data_type in FLOAT_TYPES:
                h.value = h.value.detach().requires_grad_(True)
        self._seeded_grads = {}
        with torch.set_grad_enabled(training):
            for layer in self._graph:
                outs = layer.fn([h.value for h in layer.inputs], [w.value for w in layer.weights])
                for h, value in zip(layer.outputs, outs):
                    if value.requires_grad:
                        value.retain_grad()
                    h.value = value
                if layer.inplace_input is not None:
                    layer.inplace_input.value = outs[0]
        self._pending_backward = training

    def zero_gradients(self):
        for p in self._params():
            p.grad = None
        for h in self._input_handles:
            if h.value is not None and h.value.requires_grad:
                h.value.grad = None

    def backward(self, seq_length=None):
        """Metrics first, then the loss gradient into the final output, then every
        operator's backward (FlexFlow's order)."""
        if self._comp_mode != CompMode.TRAINING:
            raise ModelStateError("backward() needs a model compiled with CompMode.TRAINING")
        if not self._pending_backward:
            raise ModelStateError("call forward() before backward() (once per forward)")
        self._pending_backward = False
        self.compute_metrics()
        final = self._final_layer()
        out = final.outputs[0]
        grad = self._loss_gradient(out.value.detach(), self._label_value())
        self._seeded_grads[id(out)] = grad
        if final.op_type == OpType.SOFTMAX:
            # FlexFlow's softmax backward copies the incoming gradient unchanged.
            target = final.inputs[0].value
        else:
            target = out.value
        if target.requires_grad:
            torch.autograd.backward(target, grad)
        for layer in self._graph:
            if layer.regularizer:
                kernel = layer.weights[0].value
                kernel.grad = kernel.grad + layer.regularizer * kernel.detach()

    def update(self):
        if self._optimizer is None:
            raise ModelStateError("no optimizer: pass one to compile() or set ffmodel.optimizer")
        self._optimizer.step(self._params())

    def get_perf_metrics(self):
        """A snapshot of the accumulated metrics: FlexFlow's C API copies them into a
        new PerfMetrics, so later batches do not change an object already returned."""
        snapshot = PerfMetrics(None)
        snapshot.correct, snapshot.total = self._perf.correct, self._perf.total
        snapshot.sums = dict(self._perf.sums)
        return snapshot
