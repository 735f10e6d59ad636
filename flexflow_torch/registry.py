"""Converter registry keyed by ATen overload (`torch.ops.aten.add.Tensor`).

A converter is a small function named after the op (`aten_add`) whose
parameters are the schema's argument names. Before it is called, the FX node's
`args`/`kwargs` are bound to the overload's schema with defaults filled in, and
every FX node among them is replaced by its converted value, so no converter
ever indexes `node.args`. Users can register new converters or override ours:

    @flexflow_torch.registry.register(torch.ops.aten.hardtanh.default)
    def aten_hardtanh(ctx, self, min_val=-1.0, max_val=1.0): ...

Besides ATen overloads, the fusion passes insert calls of plain Python
functions (see `passes/fused_ops.py`); those are keys too, bound with
`inspect.signature`.
"""

from __future__ import annotations

import inspect
from typing import Callable, Dict, Iterable

import torch

_CONVERTERS: Dict[object, Callable] = {}

def register(*targets, override: bool = False):
    """Decorator registering `fn(ctx, **bound_args)` for one or more targets.

    `override=True` is needed to replace an existing converter, so that two
    modules cannot silently fight over an op."""
    if not targets:
        raise TypeError("register() needs at least one ATen overload")

    def decorate(fn):
        for target in targets:
            if not override and target in _CONVERTERS and _CONVERTERS[target] is not fn:
                raise ValueError(f"a converter for {target} is already registered "
                                 f"({_CONVERTERS[target].__name__}); pass override=True")
            _CONVERTERS[target] = fn
        return fn

    return decorate


def unregister(target) -> None:
    _CONVERTERS.pop(target, None)


def get_converter(target):
    _ensure_loaded()
    return _CONVERTERS.get(target)


def has_converter(target) -> bool:
    _ensure_loaded()
    return target in _CONVERTERS


def registered_targets() -> Iterable:
    _ensure_loaded()
    return list(_CONVERTERS)


def target_name(target) -> str:
    """`aten::add.Tensor` for an overload, the qualified name for a function."""
    if isinstance(target, torch._ops.OpOverload):
        return str(target._schema.name) + ("." + target._overloadname
                                            if target._overloadname != "default" else "")
    return getattr(target, "__qualname__", str(target))


def bind_arguments(target, args, kwargs) -> dict:
    """Map positional and keyword arguments to the schema's names, defaults filled."""
    if isinstance(target, torch._ops.OpOverload):
        bound = {}
        schema_args = target._schema.arguments
        positional = list(args)
        for i, arg in enumerate(schema_args):
            if i < len(positional) and not arg.kwarg_only:
                bound[arg.name] = positional[i]
            elif arg.name in kwargs:
                bound[arg.name] = kwargs[arg.name]
            elif arg.has_default_value():
                bound[arg.name] = arg.default_value
            else:
                bound[arg.name] = None
        # ATen names like `self` are fine as Python keyword arguments.
        return bound
    signature = inspect.signature(target)
    ba = signature.bind(*args, **kwargs)
    ba.apply_defaults()
    return dict(ba.arguments)


_loaded = False


def _ensure_loaded():
    """Import the built-in converter modules (they register on import)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import converters  # noqa: F401
