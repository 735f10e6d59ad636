"""`FFModel`: FlexFlow's model API on PyTorch kernels.

Operators are recorded in creation order (FlexFlow's layer order) with their rules
from `flexflow_torch.semantics`, and run in that order by `forward()`. The backward
pass is PyTorch autograd over FlexFlow's per-operator backward (copy-through softmax,
overwriting gelu/rsqrt/pow/dropout/norm backwards, transpose's doubling, ...), and
losses, metrics and updates follow FlexFlow's kernels. What FlexFlow rejects raises a
typed error at the call where FlexFlow fails. `FLEXFLOW_TORCH_SEMANTICS=exact`
selects mathematically exact gradients instead (see semantics/__init__.py).
"""

import enum

import torch

from .. import semantics
from ..errors import DTypeError, ModelStateError, UnsupportedByFlexFlowError
from ..semantics import SPECS, Stage, enum_name
from ..semantics import model as rules
from .config import FFConfig, _require_runtime, runtime_device
from .dataloader import DataLoaderOps
from .enums import CompMode, DataType, LossType, MetricsType, OpType
from .initializers import ConstantInitializer, GlorotUniformInitializer, ZeroInitializer
from .layers import WRAPPERS, Layer, Op
from .ops import OperatorMethods
from .optimizers import check_optimizer
from .serving import ServingOps
from .executor import GradStore, build_plan
from ..threads import GOVERNOR
from .tensor import FLOAT_TYPES, TORCH_DTYPES, Tensor, TensorHandle
from .checkpointing import TrainingState
from .training import PerfMetrics, TrainingLoop

MAX_OPNAME = 128
_DEFAULT_INIT = {"glorot": lambda: GlorotUniformInitializer(0), "zeros": ZeroInitializer,
                 "ones": lambda: ConstantInitializer(1.0)}


class FFModel(OperatorMethods, ServingOps, DataLoaderOps, TrainingLoop, TrainingState):
    """A FlexFlow model (embedded runtime)."""

    def __init__(self, ffconfig):
        _require_runtime()
        if not isinstance(ffconfig, FFConfig):
            raise TypeError(f"FFModel takes an FFConfig, got {type(ffconfig).__name__}")
        self.handle = self._handle = self
        self._ffconfig = ffconfig
        self._degree = rules.degree_of(ffconfig)
        self._exact = semantics.mode() == "exact"
        self._layers, self._nb_layers, self._tracing_id = {}, 0, 0
        self.initializers, self.attr_tensors = {}, {}
        self._graph, self._input_handles, self._input_problems = [], [], []
        self._device = torch.device(runtime_device())
        self._compiled = self._initialized = False
        self._optimizer = self._loss_type = self._label = None
        self._metrics, self._comp_mode = [], CompMode.TRAINING
        self._perf = PerfMetrics(None)
        self._seeded_grads, self._pending_backward, self._label_ids = {}, None, None
        self._grad_store, self._plan, self._backward_done = GradStore(), None, False
        self._view_copies = {}
        self._final = self._problems_at = self._by_name = self._weighted = None
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

    def _op(self, method, name, initializers=(), **args):
        """Record one operator: its rules decide shapes, dtypes, partitions and what
        FlexFlow rejects (now, or at a later call); its spec computes it."""
        if self._compiled:
            raise ModelStateError("operators must be added before compile()")
        spec = SPECS[method]
        inputs, rule_args = [], {}
        for key, value in args.items():
            if key in spec.tensors:
                tensors = value if isinstance(value, list) else [value]
                for t in tensors:
                    if not isinstance(t, Tensor):
                        raise TypeError(f"{method}: inputs must be FlexFlow Tensors, got {type(t).__name__}")
                inputs += [t.handle for t in tensors]
                metas = [t.handle.meta for t in tensors]
                rule_args[key] = metas if isinstance(value, list) else metas[0]
            else:
                rule_args[key] = enum_name(value) if isinstance(value, enum.Enum) else value
        if name is not None and len(f"{name}_{len(self._graph)}") >= MAX_OPNAME:
            raise UnsupportedByFlexFlowError(
                f"layer name {name!r} is too long: FlexFlow layer names must stay under {MAX_OPNAME} "
                "characters including its _<id> suffix [src/runtime/layer.cc, MAX_OPNAME]")
        outs, problems = semantics.check(method, rule_args, self._degree)
        weights = []
        for i, decl in enumerate(spec.weights(**rule_args)):
            init = initializers[i] if i < len(initializers) and initializers[i] is not None \
                else _DEFAULT_INIT[decl.init]()
            weights.append(TensorHandle(decl.shape, DataType[decl.dtype], is_parameter=True,
                                        initializer=init, label=decl.label))
        attrs = {k: v for k, v in rule_args.items() if k not in spec.tensors}
        run = semantics.Run(exact=self._exact, degree=self._degree, device=self._device)
        layer = Layer(OpType[spec.op_type], name, spec, inputs, attrs, weights, problems, run)
        for w in weights:
            w.owner_layer = layer
        for k, meta in enumerate(outs):
            layer.outputs.append(TensorHandle(meta.shape, DataType[meta.dtype], owner_layer=layer,
                                              output_index=k, part=meta.part))
        aliased = spec.inplace_input(**rule_args)
        if aliased is not None:
            src = args[aliased].handle
            if src.dims == layer.outputs[0].dims and src.data_type == layer.outputs[0].data_type:
                layer.inplace_input = src
        self._graph.append(layer)
        self.add_layer(layer.op_type, name)
        tensors = [Tensor(h) for h in layer.outputs]
        return tensors if len(tensors) > 1 or method == "split" else tensors[0]

    def _raise_problems(self, stage):
        """Raise the first problem FlexFlow hits at `stage`, at every such call (FlexFlow
        aborts the process: nothing runs past it)."""
        if self._problems_at is not None:          # compiled: the problems no longer change
            if stage in self._problems_at:
                raise self._problems_at[stage]()
            return
        for problem in self._input_problems:
            if problem.stage == stage:
                raise problem.exception("create_tensor")
        for layer in self._graph:
            for problem in layer.problems:
                if problem.stage == stage:
                    raise problem.exception(layer.describe())

    def _index_problems(self):
        found = {}
        for problem in self._input_problems:
            found.setdefault(problem.stage, lambda p=problem: p.exception("create_tensor"))
        for layer in self._graph:
            for problem in layer.problems:
                found.setdefault(problem.stage, lambda p=problem, l=layer: p.exception(l.describe()))
        self._problems_at = found

    # -- tensors ---------------------------------------------------------------------
    def create_tensor(self, dims, data_type, create_grad=True):
        """A graph input of NumPy-order `dims`; dim 0 is the sample (batch) axis,
        split across GPUs for data parallelism."""
        if not isinstance(data_type, DataType) or data_type == DataType.DT_NONE:
            raise DTypeError(f"create_tensor needs a concrete DataType, got {data_type!r}")
        ck = semantics.Checker("create_tensor", self._degree)
        meta = rules.input_meta(ck, list(dims), data_type.name)
        handle = TensorHandle(meta.shape, data_type, create_grad=create_grad, label="input", part=meta.part)
        self._input_problems += ck.problems
        self._input_handles.append(handle)
        return Tensor(handle, owner_op_type=OpType.INPUT)

    def create_constant(self, dims, value, data_type):
        """An input without gradient. As in FlexFlow, `value` never reaches the tensor:
        it holds zeros (model.cc:3130-3141; init_layers zero-fills inputs)."""
        return self.create_tensor(dims, data_type, create_grad=False)

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
        if self._compiled:                      # the layers are fixed: look up by name
            if self._by_name is None:
                self._by_name = {}
                for op in self._layers.values():
                    self._by_name.setdefault(op.name, op)
            if layer_name in self._by_name:
                return self._by_name[layer_name]
        else:
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
        """The loss binds to the model's sink (see semantics.model.final_layer_problem)."""
        if self._final is not None:
            return self._final
        if not self._graph:
            raise ModelStateError("the model has no operators")
        ends = rules.sinks(self._graph)
        final = ends[-1] if ends else self._graph[-1]
        if self._compiled:              # the graph is fixed from compile on
            self._final = final
        return final

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
        """Check what FlexFlow's compile checks, create the weights, optimizer state and
        label tensor, then `set_tensor` every pending `attr_tensors` entry (FlexFlow's
        order; init_layers() later zero-fills the input tensors among them)."""
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
        final = self._final_layer()
        out = self._final_output_handle()
        if comp_mode != CompMode.TRAINING:
            self._unpartition()
        self._raise_problems(Stage.COMPILE)
        problem = rules.final_layer_problem(self._graph)
        if problem is not None and comp_mode == CompMode.TRAINING:
            raise problem.exception()
        rules.check_loss(loss_type.name, [m.name for m in metrics], final.op_type.name, out.meta)
        self._loss_type, self._metrics, self._comp_mode = loss_type, metrics, comp_mode
        self._create_weights()
        label = rules.label_meta(loss_type.name, out.meta)
        self._label = TensorHandle(label.shape, DataType[label.dtype], create_grad=False,
                                   label="label tensor", part=label.part)
        self._plan_gradients()
        self._compiled = True
        self._index_problems()
        for ff_tensor, np_tensor in self.attr_tensors.items():
            ff_tensor.set_tensor(self, np_tensor)
        print("Compiled ffmodel!")

    def _create_weights(self):
        """Every weight filled by its initializer, each from its own generator (seeded by
        its position) so that skipping one changes no other: weights an `attr_tensors`
        entry overwrites right after are left unfilled, as nothing can observe their
        initial values (FlexFlow fills them, then set_tensor overwrites them)."""
        loaded = self._loaded_weights()
        weights = [w for layer in self._graph for w in layer.weights]
        for k, w in enumerate(weights):
            if id(w) in loaded:
                value = torch.empty(w.dims, dtype=w.torch_dtype, device=self._device)
            else:
                value = torch.empty(w.dims, dtype=w.torch_dtype)
                with torch.no_grad():
                    w.initializer.fill(value, torch.Generator().manual_seed(k))
                value = value.to(self._device)
            w.value = value.requires_grad_(w.data_type in FLOAT_TYPES)

    def _loaded_weights(self):
        """ids of the weight handles the `attr_tensors` entries will write: parameters
        given as tensors, or loaders naming a layer and parameter (flexflow_torch's
        WeightLoader: `layer_name`, `param_id`)."""
        by_name, found = {}, set()
        for op in self._layers.values():
            by_name.setdefault(op.name, op.handle)      # get_layer_by_name: the first match
        for key in self.attr_tensors:
            handle = getattr(key, "handle", None)
            if isinstance(handle, TensorHandle):
                if handle.is_parameter:
                    found.add(id(handle))
                continue
            layer = by_name.get(getattr(key, "layer_name", None))
            param_id = getattr(key, "param_id", None)
            if layer is not None and isinstance(param_id, int) and 0 <= param_id < len(layer.weights):
                found.add(id(layer.weights[param_id]))
        return found

    def _unpartition(self):
        """Without training, inputs get no Repartition (model.cc create_operator_from_layer
        OP_INPUT:3147-3152): every tensor has degree 1, so nothing is partitioned."""
        self._input_problems = [p for p in self._input_problems if not (p.parallel or p.training)]
        for h in self._input_handles:
            h.part = None
        for layer in self._graph:
            layer.problems = [p for p in layer.problems if not p.parallel]
            layer.run.degree = 1
            for h in layer.outputs:
                h.part = None

    def _plan_gradients(self):
        """Per consumer of each tensor, the share of its gradient FlexFlow keeps (an
        overwriting backward discards what later consumers added; transpose doubles it)."""
        consumers = {}
        for layer in self._graph:
            for h in dict.fromkeys(layer.inputs):          # x op x is one consumer
                consumers.setdefault(id(h), []).append(layer)
        for key, uses in consumers.items():
            writes = [layer.spec.input_grad for layer in uses]
            coefs = [1.0] * len(uses) if self._exact else semantics.gradient_coefficients(writes)
            for layer, coef in zip(uses, coefs):
                for slot, h in enumerate(layer.inputs):
                    if id(h) == key:
                        layer.grad_coefficients[slot] = coef

    @property
    def label_tensor(self):
        if self._label is None:
            raise ModelStateError("label_tensor exists only after compile()")
        return Tensor(self._label, deallocate=False)

    def init_layers(self):
        """Kernel set-up; like FlexFlow, zero-fill every input tensor and the label
        (write them after init_layers: data loaders do in next_batch)."""
        if not self._compiled:
            raise ModelStateError("call compile() before init_layers()")
        self._raise_problems(Stage.INIT)
        for h in self._input_handles + [self._label]:
            h.value = torch.zeros(h.dims, dtype=h.torch_dtype, device=self._device)
        self._initialized = True

    def prefetch(self):
        pass

    def _params(self):
        layers = self._weighted if self._weighted is not None else self._graph
        return [w.value for layer in layers for w in layer.weights
                if w.value is not None and w.value.requires_grad]

    def forward(self, seq_length=None):
        """Run every operator in layer order (dropout included, as in FlexFlow)."""
        if not self._initialized:
            raise ModelStateError("call compile() and init_layers() before forward()")
        self._raise_problems(Stage.FORWARD)
        GOVERNOR.tick()
        training = self._grad_enabled and self._comp_mode == CompMode.TRAINING
        if self._plan is None:
            self._build_plan()
        fed = []
        for h in self._input_handles:
            want = training and self._input_wants_grad(h)
            if want or h.value.requires_grad:    # else keep the tensor: checks on it stay cached
                h.value = h.value.detach().requires_grad_(want)
            fed.append(h.value)
        for layer in self._graph:
            for h in layer.outputs:
                h.grad_value = None
        self._seeded_grads = {}
        self._grad_store.clear()
        self._backward_done = False
        with torch.set_grad_enabled(training):
            for step in self._plan:
                step.run(self, training)
        # An in-place op on a graph input writes into the input's Repartition output,
        # not into the input itself (model.cc create_operator_from_layer OP_INPUT:3147-3153
        # returns the Repartition; partition.cc Repartition::forward copies every pass)
        for h, value in zip(self._input_handles, fed):
            h.value = value
        self._pending_backward = training

    def _build_plan(self):
        """The step plan (executor.py) and the layer lists each step walks."""
        self._plan = build_plan(self)
        graph = self._graph
        self._inplace_inputs = {id(layer.inplace_input) for layer in graph if layer.inplace_input is not None}
        self._overwriting = [layer for layer in graph if layer.spec.weight_grad == semantics.OVER]
        self._weighted = [layer for layer in graph if layer.weights]
        self._regularized = [layer for layer in graph if layer.regularizer]
        final = self._final_layer()
        self._final_out = final.outputs[0]
        if self._comp_mode == CompMode.TRAINING and self._seeds_softmax_input(final):
            for step in self._plan:
                if getattr(step, "layer", None) is final:
                    step.grad = False          # backward starts below it

    def _seeds_softmax_input(self, final):
        """Whether backward seeds the loss gradient into the final softmax's input, so that
        the softmax itself takes no part in autograd. Exact: p - y is the gradient w.r.t.
        the logits; FlexFlow: its softmax copies its output's gradient into its input."""
        return final.op_type == OpType.SOFTMAX and final.inplace_input is None and (
            self._loss_type in (LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, LossType.LOSS_CATEGORICAL_CROSSENTROPY)
            if self._exact else final.grad_coefficients[0] == 1.0)

    def _input_wants_grad(self, h):
        """Whether autograd must run into a graph input. FlexFlow never writes an input's
        gradient (partition.cc Repartition::backward:280-285), so it is only needed where
        an in-place operator shares the input's gradient buffer; exact mode reports the
        true gradient of inputs created with create_grad."""
        if h.data_type not in FLOAT_TYPES:
            return False
        if self._exact:
            return h.create_grad
        return id(h) in self._inplace_inputs

    def _alias(self, src, out, value):
        """An in-place op: its output reuses `src`'s storage. In FlexFlow both also share
        one gradient buffer, which after backward holds the gradient of the op's input
        (element_unary.cc map_output_tensors:218-229); exact mode reads each tensor's own
        gradient. A graph input keeps its own gradient (it is never written)."""
        if src not in self._input_handles:
            root = src.grad_value if src.grad_value is not None else src.value
            src.grad_value = root
            if not self._exact:
                out.grad_value = root
        else:
            out.grad_value = src.value if not self._exact else None
        src.value = value

    def _grad_of(self, value):
        """The gradient autograd gave `value` in the last backward (None if none)."""
        return self._grad_store.of(value)

    def zero_gradients(self):
        if self._comp_mode == CompMode.TRAINING:
            self._raise_problems(Stage.BACKWARD)
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
        self._raise_problems(Stage.BACKWARD)
        if not self._pending_backward:
            raise ModelStateError("call forward() before backward() (once per forward)")
        self._pending_backward = False
        final = self._final_layer()
        out = final.outputs[0]
        output, labels = out.value.detach(), self._targets(out)   # sparse: checked class ids
        if self._metrics:
            self._measure(output, labels)
        grad = rules.loss_gradient(self._loss_type.name, output, labels,
                                   self._ffconfig.batch_size, self._exact, self._degree)
        self._seeded_grads[id(out)] = grad
        target = final.inputs[0].value if self._seeds_softmax_input(final) else out.value
        for layer in self._overwriting:
            for w in layer.weights:
                w.value.grad = None
        if target.requires_grad:
            leaves = self._params() + [h.value for h in self._input_handles if h.value.requires_grad]
            self._grad_store.backward(target, grad, leaves)
        scale = 1 if self._exact else self._degree     # L2 is added on every GPU before the all-reduce
        for layer in self._regularized:
            kernel = layer.weights[0].value
            kernel.grad = kernel.grad + layer.regularizer * scale * kernel.detach()
        self._backward_done = True

    def update(self):
        if self._optimizer is None:
            raise ModelStateError("no optimizer: pass one to compile() or set ffmodel.optimizer")
        for layer in self._weighted or ():     # an output that is a view of its weight keeps
            weight = layer.weights[0].value        # the values it had (FlexFlow's is a copy), in a
            for h in layer.outputs:                # buffer kept for it: fresh memory costs page faults
                if h.value is not None and h.value._base is not None and h.value._base is weight:
                    old, kept = h.value.detach(), self._view_copies.get(id(h))
                    if kept is None or kept.shape != old.shape or kept.dtype != old.dtype:
                        kept = self._view_copies[id(h)] = torch.empty_like(old, memory_format=torch.contiguous_format)
                    h.value = kept.copy_(old)
        self._optimizer.step(self._params())

    def get_perf_metrics(self):
        """A snapshot of the accumulated metrics: FlexFlow's C API copies them into a
        new PerfMetrics, so later batches do not change an object already returned."""
        snapshot = PerfMetrics(None)
        snapshot.correct, snapshot.total = self._perf.correct, self._perf.total
        snapshot.sums = dict(self._perf.sums)
        return snapshot
