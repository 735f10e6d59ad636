"""Conversion context: walks the prepared FX graph and calls one converter per
node, giving converters the helpers they share (constants, the batch axis,
parameters, data movement, layer names).

Every tensor of a converted program carries the batch on axis 0, so that FlexFlow's
data parallelism (which splits axis 0 of every input, constants included) gives each
GPU whole samples. Constants and parameters meet activations as per-sample copies.
A value computed from parameters and constants only (T5's position bias) is *lifted*:
its FlexFlow tensor has a leading batch axis its PyTorch value lacks (or has as 1);
`lifted` records its PyTorch shape."""

from __future__ import annotations

import math
import operator

import numpy as np
import torch

from .errors import ConversionError, DTypeError, FlexFlowTorchError
from .graph import FFProgram, Value
from . import registry

NO_NAME_METHODS = {"relu", "pow", "rsqrt", "elu"}  # FlexFlow's C API turns their name into inplace=True


class Const:
    """A folded, input-independent tensor flowing through the converters."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    @property
    def shape(self):
        return tuple(self.tensor.shape)

    def __repr__(self):
        return f"Const{list(self.tensor.shape)}"


class Param:
    """A trainable parameter (canonical one when tied) seen as a converter argument."""

    def __init__(self, node, fqn, tensor):
        self.node, self.fqn, self.tensor = node, fqn, tensor

    @property
    def shape(self):
        return tuple(self.tensor.shape)

    @property
    def layer_name(self):
        owner, _, leaf = self.fqn.rpartition(".")
        return owner if leaf == "weight" and owner else self.fqn

    def __repr__(self):
        return f"Param({self.fqn})"


class Merged:
    """A PyTorch view that merges the batch axis with the axes after it ((B, S, D) seen
    as (B*S, D), e.g. GPT-2's Conv1D): kept as the unmerged `value` for the operators
    that can compute on it (a reshape changing axis 0 aborts under data parallelism,
    src/ops/reshape.cc:127-146); any other consumer gets the real reshape."""

    def __init__(self, value, shape):
        self.value, self.shape, self.materialized = value, tuple(shape), None

    def __repr__(self):
        return f"Merged({self.value} as {list(self.shape)})"


def merges_batch(shape, torch_shape) -> bool:
    """`torch_shape` merges the first k >= 2 axes of `shape` and keeps the rest."""
    for k in range(2, len(shape) + 1):
        if torch_shape[0] == math.prod(shape[:k]) and tuple(torch_shape[1:]) == tuple(shape[k:]):
            return True
    return False


def dtype_name(torch_dtype, is_input=False) -> str:
    """FlexFlow's DataType for a PyTorch dtype. Integers are DT_INT32: FlexFlow's
    concat/split/gather copy 4-byte elements only, and it has no cast to narrow an
    INT64 input (src/ops/concat.cc, src/runtime/accessor.cc)."""
    if torch_dtype.is_floating_point:
        return "DT_FLOAT"
    if torch_dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool):
        return "DT_INT32"
    raise DTypeError(f"no FlexFlow data type for {torch_dtype}")


def lifted_shape(batch, torch_shape):
    """The FlexFlow shape of a batch-less PyTorch value: a size-1 axis 0 becomes the
    batch, otherwise a batch axis is prepended."""
    torch_shape = tuple(torch_shape) or (1,)
    if torch_shape[0] == 1:
        return (batch,) + torch_shape[1:]
    return (batch,) + torch_shape


class ConversionContext:
    def __init__(self, prepared, program: FFProgram, param_plan, one_gpu=False, snapshot=None):
        self.prepared = prepared
        self.program = program
        self.plan = param_plan
        self.snapshot = {} if snapshot is None else snapshot     # weights.bind: copies shared by programs
        self.batch_size = prepared.batch_size
        #: copies of a shared table used as a matrix: one per step on one GPU, else one per sample
        self.table_copies = 1 if one_gpu else prepared.batch_size
        self.values = {}          # fx node -> Value | Const | Param | list | scalar
        self.node = None
        self.cache = {}           # per-conversion memo (tables, shared constants)
        self.lifted = {}          # value id -> PyTorch shape, for lifted values
        self._per_node = {}       # fx node -> FlexFlow ops emitted so far (for unique names)
        self._in_progress = set()
        self.per_sample = set()   # fx nodes that depend on a user input
        for node in prepared.graph.nodes:
            if node in prepared.user_inputs or any(d in self.per_sample for d in node.all_input_nodes):
                self.per_sample.add(node)

    # ----------------------------------------------------------------- driver
    def run(self):
        """Convert every node; problems of all nodes are collected and raised
        together as one UnsupportedOperatorsError."""
        from .analysis import UnsupportedCollector, raise_if_unsupported
        p = self.prepared
        problems, poisoned = UnsupportedCollector(), set()
        for node, name in p.user_inputs.items():
            val = node.meta["val"]
            self.values[node] = self.program.add_input(name, tuple(val.shape), dtype_name(val.dtype, True))
        for node in p.graph.nodes:
            if node.op == "placeholder":
                if node not in self.values:
                    self.node = node
                    self.values[node] = self._placeholder(node)
            elif node.op == "call_function":
                if node in self.values:
                    continue                 # converted early, on demand (see ensure)
                if any(d in poisoned for d in node.all_input_nodes):
                    poisoned.add(node)
                    continue
                try:
                    self.ensure(node)
                except Exception as exc:  # noqa: BLE001 - every failure goes into the one report
                    culprit = getattr(exc, "flexflow_torch_node", node)
                    problems.add(culprit, reason=failure_reason(exc))
                    poisoned.update({node, culprit})
                    continue
            elif node.op == "output":
                raise_if_unsupported(problems.report())
                outs = []
                for arg in node.args[0]:
                    v = self.values.get(arg) if isinstance(arg, torch.fx.Node) else arg
                    v = self.tensor(v)
                    if v.id in self.lifted:
                        raise ConversionError(f"output {arg} depends on no input: nothing to compute "
                                              "per sample (leave it out of the model's outputs)")
                    outs.append(v)
                self.program.outputs = [v.id for v in outs]
                self.program.output_names = list(p.output_names)
        from .program_rules import protect_overwritten_inputs
        protect_overwritten_inputs(self.program)
        return self.program

    def ensure(self, node):
        """Convert `node` now if it has not been (dependencies first). Used by
        the main loop and by tied tables, which need the ids of every lookup
        of a parameter at its first use."""
        if node in self.values:
            return self.values[node]
        if node in self._in_progress:
            raise ConversionError(f"{node.name} depends on its own result through a shared parameter "
                                  "(a recurrent use of a tied weight cannot be one FlexFlow layer)")
        if node in self.prepared.folded:
            self.values[node] = _wrap_folded(self.prepared.folded[node])
            return self.values[node]
        self._in_progress.add(node)
        saved = self.node
        try:
            for dep in node.all_input_nodes:
                self.ensure(dep)
            self.node = node
            value = self._call(node)
            self._check_output(node, value)
        except Exception as exc:
            if not hasattr(exc, "flexflow_torch_node"):
                exc.flexflow_torch_node = node       # the innermost node that failed
            raise
        finally:
            self.node = saved
            self._in_progress.discard(node)
        self.values[node] = value
        if isinstance(value, Value) and value.id not in self.lifted:
            self.program.node_values[node.name] = value.id
        return value

    def _check_output(self, node, value):
        """A converter's result must be what PyTorch computes, as FlexFlow holds it: the
        shape of node.meta["val"] (for a value depending on no input, per sample); float
        where PyTorch has float, DT_INT32 or float (integer masks and integer arithmetic
        become float) where PyTorch has integers or bools."""
        vals = node.meta.get("val")
        if isinstance(vals, (list, tuple)) != isinstance(value, (list, tuple)) or \
                (isinstance(vals, (list, tuple)) and len(vals) != len(value)):
            raise ConversionError(f"the converter returned {_describe(value)} where PyTorch computes "
                                  f"{_describe(vals)}")
        pairs = list(zip(value, vals)) if isinstance(vals, (list, tuple)) else [(value, vals)]
        for v, meta in pairs:
            if not isinstance(meta, torch.Tensor) or v is None:
                continue
            if isinstance(v, (Merged, Const, Param)) or getattr(v, "stands_for_tensor", False):
                if tuple(v.shape) != tuple(meta.shape):
                    raise ConversionError(f"the converter produced a {tuple(v.shape)} value where PyTorch "
                                          f"computes {tuple(meta.shape)}")
                continue
            if not isinstance(v, Value):
                raise ConversionError(f"the converter returned {v!r} where PyTorch computes a tensor")
            if v.dtype not in ("DT_FLOAT", "DT_INT32"):
                raise ConversionError(f"the converter produced {v.dtype}; FlexFlow programs hold DT_FLOAT "
                                      "and DT_INT32 only")
            want = tuple(meta.shape) or (1,)
            if v.id in self.lifted:
                got = self.lifted[v.id]
            elif v.shape != want and node not in self.per_sample and v.shape in (
                    lifted_shape(self.batch_size, want), (self.batch_size,) + want):
                self.lift(v, want)
                got = want
            else:
                got = v.shape
            if tuple(got) != want:
                raise ConversionError(f"the converter produced a {tuple(got)} tensor where PyTorch "
                                      f"computes {want}")
            if meta.is_floating_point() and v.dtype != "DT_FLOAT":
                raise ConversionError(f"the converter produced {v.dtype} where PyTorch computes {meta.dtype}")

    def _placeholder(self, node):
        p = self.prepared
        if node in p.params:
            return p.params[node]
        if node in p.folded:
            return _wrap_folded(p.folded[node])
        raise ConversionError(f"placeholder {node.name} is neither an input, a parameter nor a constant")

    def _call(self, node):
        if node.target is operator.getitem:
            seq = self.values[node.args[0]]
            return seq[node.args[1]]
        fn = registry.get_converter(node.target)
        bound = registry.bind_arguments(node.target, node.args, node.kwargs)
        bound = {k: self._resolve(v) for k, v in bound.items()}
        return fn(self, **bound)

    def _resolve(self, v):
        if isinstance(v, torch.fx.Node):
            return self.values[v]
        if isinstance(v, (list, tuple)):
            return type(v)(self._resolve(x) for x in v)
        return v

    # ---------------------------------------------------------------- metadata
    @property
    def out_val(self):
        return self.node.meta.get("val")

    @property
    def out_shape(self):
        return tuple(self.out_val.shape)

    @property
    def module_path(self):
        stack = self.node.meta.get("nn_module_stack") or {}
        if not stack:
            return ""
        return list(stack.values())[-1][0]

    def op_name(self, method):
        """`<module path>:<fx node>[.k]`, unique per FlexFlow op (weighted layers
        are named after their parameter's module instead)."""
        if method in NO_NAME_METHODS or self.node is None:
            return None
        base = self.module_path
        name = f"{base}:{self.node.name}" if base else self.node.name
        k = self._per_node.get(self.node, 0)
        self._per_node[self.node] = k + 1
        return name if k == 0 else f"{name}.{k}"

    # ---------------------------------------------------------------- emitting
    def emit(self, method, inputs, attrs=None, *, name=None, weights=None):
        if name is None:
            name = self.op_name(method)
        return self.program.call(method, inputs, attrs, name=name,
                                 node=self.node.name if self.node is not None else None, weights=weights)

    def constant(self, array, float_=None) -> Value:
        """A FlexFlow constant tensor exactly of `array`'s shape (float32, or int32 for
        integer/bool data); identical constants are shared."""
        t = array.detach().cpu() if isinstance(array, torch.Tensor) else torch.as_tensor(array)
        if float_ or t.is_floating_point():
            arr = t.to(torch.float32).numpy()
        else:
            t64 = t.to(torch.int64)
            if t64.numel() and (t64.max() > 2**31 - 1 or t64.min() < -2**31):
                raise DTypeError("an integer constant does not fit in int32 (FlexFlow's set_tensor)")
            arr = t64.to(torch.int32).numpy()
        arr = np.ascontiguousarray(arr)
        key = ("const", arr.dtype.str, arr.shape, hash(arr.tobytes()))
        if key not in self.cache:
            self.cache[key] = self.program.add_constant(arr, node=self.node.name if self.node else None)
        return self.cache[key]

    def batched_constant(self, t, float_=None) -> Value:
        """A constant holding the batch-less PyTorch tensor `t` once per sample."""
        t = torch.as_tensor(t)
        shape = lifted_shape(self.batch_size, t.shape)
        per_sample = t.reshape(shape[1:])
        return self.constant(per_sample.unsqueeze(0).expand(shape).contiguous(), float_=float_)

    def tensor(self, x, like=None, float_=None) -> Value:
        """Any converter argument as a FlexFlow Value. Constants and parameters become
        per-sample copies; `like` (a Value) gives the rank to align them to
        (PyTorch broadcasting: leading 1s)."""
        if isinstance(x, Merged):
            if x.materialized is None:
                x.materialized = self.reshape(x.value, x.shape)
            return x.materialized
        if isinstance(x, (int, float, bool)):
            x = Const(torch.tensor(x))
        if isinstance(x, Const):
            t = x.tensor
            if like is not None and like.id not in self.lifted:       # meets an activation
                t = t.reshape((1,) * (like.rank - t.dim()) + tuple(t.shape))
                if t.shape[0] == self.batch_size:
                    return self.constant(t, float_=float_)
                if t.shape[0] != 1:
                    raise ConversionError(f"a constant of shape {tuple(t.shape)} does not broadcast "
                                          f"against the batch of {like}")
                return self.constant(t.expand(self.batch_size, *t.shape[1:]), float_=float_)
            if t.dim() and t.shape[0] == self.batch_size:              # already one row per sample
                return self.constant(t, float_=float_)
            return self.lift(self.batched_constant(t, float_=float_), tuple(t.shape) or (1,))
        if isinstance(x, Param):
            return self.plan.param_tensor(self, x)
        if not isinstance(x, Value):
            raise ConversionError(f"expected a tensor, got {x!r}")
        return x

    # ---------------------------------------------------------------- lifted values
    def lift(self, value: Value, torch_shape) -> Value:
        """Mark `value` as the per-sample copy of a batch-less PyTorch value."""
        torch_shape = tuple(torch_shape)
        if value.shape[0] == self.batch_size and tuple(value.shape[1:]) == torch_shape[1:] and \
                torch_shape and torch_shape[0] == 1:
            self.lifted[value.id] = torch_shape
        elif tuple(value.shape) == (self.batch_size,) + torch_shape:
            self.lifted[value.id] = torch_shape
        else:
            raise ConversionError(f"internal: {value} is no per-sample copy of a {torch_shape} value")
        return value

    def torch_shape(self, v) -> tuple:
        if isinstance(v, Value):
            return self.lifted.get(v.id, v.shape)
        return tuple(v.shape)

    def torch_rank(self, v) -> int:
        return len(self.torch_shape(v))

    def as_torch_rank(self, v: Value, rank: int) -> Value:
        """A lifted value reshaped to meet an activation of PyTorch rank `rank`: its
        PyTorch shape right-aligned, the axis meeting the batch of size 1."""
        if v.id not in self.lifted:
            return v
        shape = self.lifted[v.id]
        aligned = (1,) * (rank - len(shape)) + tuple(shape)
        if aligned[0] != 1:
            raise ConversionError(f"a {shape} value depending on no input cannot be broadcast "
                                  f"against the batch")
        return self.reshape(v, (self.batch_size,) + aligned[1:])

    # ---------------------------------------------------------------- data movement
    def reshape(self, x: Value, shape):
        shape = tuple(int(s) for s in shape)
        if -1 in shape:
            known = math.prod(s for s in shape if s != -1)
            shape = tuple(math.prod(x.shape) // known if s == -1 else s for s in shape)
        if shape == x.shape:
            return x
        return self.emit("reshape", {"input": x}, {"shape": list(shape)})

    def transpose(self, x: Value, perm):
        """Permute axes. FlexFlow's transpose adds into its output buffer on every
        forward (transpose_kernels.cu:78), so permutations are gathers: per sample when
        the batch stays on axis 0."""
        perm = [int(p) for p in perm]
        if perm == list(range(len(perm))):
            return x
        key = ("moves", ("permute", tuple(perm)), x.shape, x.part)
        if key not in self.cache and perm[0] == 0 and math.prod(x.shape) < 2**31:
            self.cache[key] = self._per_sample_permutation(x, perm)
        return self.gather_moves(x, lambda t: t.permute(perm), key=("permute", tuple(perm)))

    def _per_sample_permutation(self, x, perm):
        """gather_moves' plan for a permutation that keeps the batch on axis 0, computed
        on one sample."""
        inner = x.shape[1:]
        src = torch.arange(math.prod(inner), dtype=torch.int32).reshape(inner).permute([p - 1 for p in perm[1:]])
        out_shape = (x.shape[0],) + tuple(src.shape)
        src = src.reshape(1, -1)
        if torch.equal(src[0], torch.arange(src.shape[1], dtype=torch.int32)):
            return "reshape", None, out_shape
        B = x.shape[0]
        if x.part == 0:
            return "rows", self.constant(src.expand(B, -1)), out_shape
        starts = torch.arange(B, dtype=torch.int32).unsqueeze(1) * src.shape[1]
        return "flat", self.constant((starts + src).reshape(-1)), out_shape

    def gather_moves(self, x: Value, index_fn, key=None):
        """Any data movement with constant indices (`index_fn` applied to a tensor of
        x's shape): a reshape when the order is unchanged, else a FlexFlow gather -
        along axis 1 of (batch, rest) when every output sample reads only its own
        input sample, else over the flattened tensor (one GPU only). `key` names the
        movement so that its index is computed once per input shape."""
        plan_key = None if key is None else ("moves", key, x.shape, x.part)
        plan = self.cache.get(plan_key) if plan_key is not None else None
        if plan is None:
            plan = self._moves_plan(x, index_fn)
            if plan_key is not None:
                self.cache[plan_key] = plan
        kind, idx, out_shape = plan
        if kind == "reshape":
            return self.reshape(x, out_shape)
        B = x.shape[0]
        if kind == "rows":
            flat = self.reshape(x, (B, math.prod(x.shape[1:])))
            return self.reshape(self.emit("gather", {"input": flat, "index": idx}, {"dim": 1}), out_shape)
        flat = self.reshape(x, (math.prod(x.shape),))
        return self.reshape(self.emit("gather", {"input": flat, "index": idx}, {"dim": 0}), out_shape)

    def _moves_plan(self, x, index_fn):
        src = index_fn(torch.arange(math.prod(x.shape)).reshape(x.shape))
        out_shape = tuple(src.shape) or (1,)
        flat_src = src.reshape(-1)
        if flat_src.numel() == math.prod(x.shape) and torch.equal(flat_src, torch.arange(flat_src.numel())):
            return "reshape", None, out_shape
        B = x.shape[0]
        per = math.prod(x.shape[1:])
        if out_shape[0] == B and x.part == 0 and len(out_shape) > 1:
            rows = src.reshape(B, -1)
            if torch.equal(rows // per, torch.arange(B).unsqueeze(1).expand_as(rows)):
                return "rows", self.constant((rows % per).to(torch.int32)), out_shape
        return "flat", self.constant(flat_src.to(torch.int32)), out_shape

    def view(self, x: Value, torch_shape):
        """x reshaped to the PyTorch shape `torch_shape` (per sample if x is lifted)."""
        torch_shape = tuple(torch_shape) or (1,)
        if x.id not in self.lifted:
            return self.reshape(x, torch_shape)
        shape = lifted_shape(self.batch_size, torch_shape)
        if shape == x.shape and self.lifted[x.id] != torch_shape:
            y = self.emit("reshape", {"input": x}, {"shape": list(shape)})   # a new value for the new view
        else:
            y = self.reshape(x, shape)
        return self.lift(y, torch_shape)

    def move(self, x: Value, fn):
        """Data movement `fn` (a PyTorch function of one tensor) with constant indices,
        per sample for a lifted x."""
        if x.id not in self.lifted:
            return self.gather_moves(x, fn)
        shape = self.lifted[x.id]
        out_shape = tuple(fn(torch.empty(shape, device="meta")).shape) or (1,)
        inner, out_inner = _within_rank(shape), _within_rank(out_shape)     # with the batch: <= 4 axes
        out = self.gather_moves(self.reshape(x, (self.batch_size,) + inner),
                                torch.vmap(lambda t: fn(t.reshape(shape)).reshape(out_inner)))
        if self.lifted.get(out.id, out_shape) != out_shape:
            out = self.emit("reshape", {"input": out}, {"shape": list(out.shape)})
        return self.lift(out, out_shape)

    def scalar(self, x):
        """x as a Python number if it is one (or a one-element constant), else None."""
        if isinstance(x, bool):
            return float(x)
        if isinstance(x, (int, float)):
            return x
        if isinstance(x, Const) and x.tensor.numel() == 1:
            return x.tensor.item()
        return None

    # ---------------------------------------------------------------- parameters
    def is_native(self, param, node=None) -> bool:
        return self.plan.is_native(param, node or self.node)

    def weight(self, key_param: Param, layout=None):
        """Register `key_param` as a program weight; returns its key. `layout`
        (see weights.layout_of) maps the PyTorch parameter to the FlexFlow weight."""
        from .weights import bind
        return bind(self.program, key_param, layout, self.snapshot)


def failure_reason(exc) -> str:
    """The report's reason for an exception raised while converting a node."""
    if isinstance(exc, (FlexFlowTorchError, NotImplementedError)):
        return str(exc)
    return f"the converter failed ({type(exc).__name__}: {exc}); please report this"


def _describe(v):
    if isinstance(v, (list, tuple)):
        return f"{len(v)} values"
    return "one value" if v is not None else "nothing"


def _within_rank(shape):
    """`shape` without leading 1s beyond 3 axes (a per-sample shape under the batch axis)."""
    shape = tuple(shape)
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _wrap_folded(v):
    if isinstance(v, torch.Tensor):
        return Const(v)
    if isinstance(v, (list, tuple)):
        return type(v)(_wrap_folded(x) for x in v)
    return v
