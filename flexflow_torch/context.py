"""Conversion context: walks the prepared FX graph and calls one converter per
node, giving converters the helpers they share (constants, rank alignment,
parameters, layer names)."""

from __future__ import annotations

import math
import operator

import numpy as np
import torch

from .errors import ConversionError, DTypeError
from .graph import FFProgram, Value
from . import registry

NO_NAME_METHODS = {"relu", "pow", "rsqrt", "elu"}  # real FlexFlow's C API drops/misuses their name


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


def dtype_name(torch_dtype) -> str:
    if torch_dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        return "DT_FLOAT"
    if torch_dtype == torch.int64:
        return "DT_INT64"
    if torch_dtype in (torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool):
        return "DT_INT32"
    raise DTypeError(f"no FlexFlow data type for {torch_dtype}")


class ConversionContext:
    def __init__(self, prepared, program: FFProgram, param_plan):
        self.prepared = prepared
        self.program = program
        self.plan = param_plan
        self.batch_size = prepared.batch_size
        self.values = {}          # fx node -> Value | Const | Param | list | scalar
        self.node = None
        self.cache = {}           # per-conversion memo (e.g. tied embedding lookups)
        self._per_node = {}       # fx node -> FlexFlow ops emitted so far (for unique names)
        self._in_progress = set()

    # ----------------------------------------------------------------- driver
    def run(self):
        """Convert every node; problems of all nodes are collected and raised
        together as one UnsupportedOperatorsError."""
        from .analysis import UnsupportedCollector, raise_if_unsupported
        from .errors import FlexFlowTorchError
        p = self.prepared
        problems, poisoned = UnsupportedCollector(), set()
        for node, name in p.user_inputs.items():
            val = node.meta["val"]
            self.values[node] = self.program.add_input(name, tuple(val.shape), dtype_name(val.dtype))
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
                except (FlexFlowTorchError, NotImplementedError) as exc:
                    if not isinstance(exc, (ConversionError, NotImplementedError, ValueError, TypeError)):
                        raise
                    problems.add(node, reason=str(exc))
                    poisoned.add(node)
                    continue
            elif node.op == "output":
                raise_if_unsupported(problems.report())
                outs = []
                for arg in node.args[0]:
                    v = self.values.get(arg) if isinstance(arg, torch.fx.Node) else arg
                    outs.append(self.tensor(v))
                self.program.outputs = [v.id for v in outs]
                self.program.output_names = list(p.output_names)
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
        finally:
            self.node = saved
            self._in_progress.discard(node)
        self.values[node] = value
        if isinstance(value, Value):
            self.program.node_values[node.name] = value.id
        return value

    def _placeholder(self, node):
        p = self.prepared
        if node in p.user_inputs:
            name = p.user_inputs[node]
            val = node.meta["val"]
            return self.program.add_input(name, tuple(val.shape), dtype_name(val.dtype))
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
        """A FlexFlow constant tensor (float32, or int32 for integer/bool data)."""
        t = array.detach().cpu() if isinstance(array, torch.Tensor) else torch.as_tensor(array)
        if float_ or t.is_floating_point():
            arr = t.to(torch.float32).numpy()
        else:
            t64 = t.to(torch.int64)
            if t64.numel() and (t64.max() > 2**31 - 1 or t64.min() < -2**31):
                raise DTypeError("an integer constant does not fit in int32 (FlexFlow's set_tensor)")
            arr = t64.to(torch.int32).numpy()
        return self.program.add_constant(np.ascontiguousarray(arr), node=self.node.name if self.node else None)

    def tensor(self, x, rank=None, float_=None) -> Value:
        """Any converter argument as a FlexFlow Value, optionally reshaped to `rank`
        (leading 1s, as broadcasting needs equal ranks in FlexFlow)."""
        if isinstance(x, Param):
            x = self.param_tensor(x)
        if isinstance(x, (int, float, bool)):
            x = Const(torch.tensor(x))
        if isinstance(x, Const):
            t = x.tensor
            if rank is not None and t.dim() < rank:
                t = t.reshape((1,) * (rank - t.dim()) + tuple(t.shape))
            return self.constant(t, float_=float_)
        if not isinstance(x, Value):
            raise ConversionError(f"expected a tensor, got {x!r}")
        if rank is not None and x.rank < rank:
            x = self.reshape(x, (1,) * (rank - x.rank) + x.shape)
        return x

    def reshape(self, x: Value, shape):
        shape = tuple(int(s) for s in shape)
        if -1 in shape:
            known = math.prod(s for s in shape if s != -1)
            shape = tuple(math.prod(x.shape) // known if s == -1 else s for s in shape)
        if shape == x.shape:
            return x
        return self.emit("reshape", {"input": x}, {"shape": list(shape)})

    def transpose(self, x: Value, perm):
        perm = [int(p) for p in perm]
        if perm == list(range(len(perm))):
            return x
        return self.emit("transpose", {"input": x}, {"perm": perm})

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
    def param_tensor(self, param: Param) -> Value:
        """A trainable parameter as a FlexFlow tensor of its own shape (see param_plan)."""
        return self.plan.param_tensor(self, param)

    def is_native(self, param, node=None) -> bool:
        return self.plan.is_native(param, node or self.node)

    def weight(self, key_param: Param, transpose=False):
        """Register `key_param` as a program weight; returns its key.

        The array is a view of the PyTorch parameter where possible (no copy of
        a 300M-parameter model): what `compile()` loads is the model's value at
        that time, and after `copy_weights_to_torch` the program (and a file
        saved from it) holds the trained weights."""
        key = key_param.fqn
        t = key_param.tensor.detach()
        if t.dtype != torch.float32:
            t = t.to(torch.float32)
        if transpose:
            t = t.t().contiguous()
        self.program.weights[key] = t.numpy()
        self.program.weight_sources[key] = {"param": key_param.fqn, "transpose": bool(transpose)}
        return key


def _wrap_folded(v):
    if isinstance(v, torch.Tensor):
        return Const(v)
    if isinstance(v, (list, tuple)):
        return type(v)(_wrap_folded(x) for x in v)
    return v
