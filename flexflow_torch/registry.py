"""Converter registry keyed by operator overload (`torch.ops.aten.add.Tensor`).

A converter is a small function named after the op (`aten_add`) whose parameters
are the schema's argument names and whose docstring starts with the schema of every
overload it is registered for (tests/ops/test_converter_contract.py checks both).
Before it is called, the FX node's `args`/`kwargs` are bound to the overload's schema
with defaults filled in, and every FX node among them is replaced by its converted
value, so no converter ever indexes `node.args`. Every key is an operator with a
schema: the fusion passes insert `flexflow_torch::*` custom ops (fused_ops.py).

Users can add converters or override the built-in ones; a user's entry always wins,
whichever is registered first:

    @flexflow_torch.registry.register(torch.ops.aten.hardtanh.default)
    def aten_hardtanh(ctx, self, min_val=-1.0, max_val=1.0): ...

`supports(node) -> None | reason` (optional, per registration) says, from the node
alone, when the converter cannot convert it, so that `analyze()` reports every
problem without converting anything.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional

import torch

from .errors import RegistryError


@dataclass(frozen=True)
class Entry:
    fn: Callable
    supports: Optional[Callable] = None


_BUILTIN: Dict[object, Entry] = {}
_USER: Dict[object, Entry] = {}


_registering_builtins = [False]


@contextlib.contextmanager
def builtin_registrations():
    """Registrations made inside are the built-in converters (converters/__init__.py)."""
    saved, _registering_builtins[0] = _registering_builtins[0], True
    try:
        yield
    finally:
        _registering_builtins[0] = saved


def _check_target(target):
    if isinstance(target, torch._ops.OpOverloadPacket):
        raise RegistryError(f"register() takes an overload, e.g. {target}.default or {target}.Tensor; "
                        f"{target} has {', '.join(target.overloads())}")
    if not isinstance(target, torch._ops.OpOverload):
        raise RegistryError(f"register() takes operator overloads (torch.ops.<ns>.<op>.<overload>), got "
                        f"{target!r}")


def register(*targets, override: bool = False, supports: Optional[Callable] = None):
    """Decorator registering `fn(ctx, **bound_args)` for one or more overloads.

    A user's converter replaces a built-in one; `override=True` is needed to replace
    another user converter (or, for a user, to say that replacing a built-in is meant),
    so that two modules cannot silently fight over an op. `supports(node)` returns None
    when `fn` can convert `node`, else the reason it cannot."""
    if not targets:
        raise RegistryError("register() needs at least one operator overload")
    for target in targets:
        _check_target(target)

    def decorate(fn):
        builtin = _registering_builtins[0]
        table = _BUILTIN if builtin else _USER
        if not builtin:
            _ensure_loaded()
        for target in targets:
            taken = table.get(target) or (None if builtin else _BUILTIN.get(target))
            if taken is not None and taken.fn is not fn and not override:
                raise RegistryError(f"a converter for {target_name(target)} is already registered "
                                 f"({taken.fn.__name__}); pass override=True to replace it")
        for target in targets:
            table[target] = Entry(fn, supports)
        return fn

    return decorate


def unregister(target) -> None:
    """Remove a user's converter (the built-in one, if any, applies again)."""
    _USER.pop(target, None)


def _entry(target) -> Optional[Entry]:
    _ensure_loaded()
    return _USER.get(target) or _BUILTIN.get(target)


def get_converter(target):
    entry = _entry(target)
    return entry.fn if entry else None


def has_converter(target) -> bool:
    return _entry(target) is not None


def support_problem(node) -> Optional[str]:
    """None when `node` can be converted, else why not (no converter, or what its
    converter's `supports` says)."""
    entry = _entry(node.target)
    if entry is None:
        return "no converter"
    return entry.supports(node) if entry.supports is not None else None


def registered_targets() -> Iterable:
    _ensure_loaded()
    return list(dict.fromkeys(list(_USER) + list(_BUILTIN)))


def builtin_targets() -> Iterable:
    _ensure_loaded()
    return list(_BUILTIN)


def builtin_entries() -> Dict[object, Entry]:
    _ensure_loaded()
    return dict(_BUILTIN)


def target_name(target) -> str:
    """`aten::add.Tensor` for an overload, the qualified name for anything else."""
    if isinstance(target, torch._ops.OpOverload):
        return str(target._schema.name) + ("." + target._overloadname
                                            if target._overloadname != "default" else "")
    return getattr(target, "__qualname__", str(target))


def bind_arguments(target, args, kwargs) -> dict:
    """Map positional and keyword arguments to the schema's names, defaults filled."""
    if not isinstance(target, torch._ops.OpOverload):        # operator.getitem and the like
        try:
            ba = inspect.signature(target).bind(*args, **kwargs)
        except (TypeError, ValueError):
            return {}
        ba.apply_defaults()
        return dict(ba.arguments)
    bound = {}
    positional = list(args)
    for i, arg in enumerate(target._schema.arguments):
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


_loaded = False


def _ensure_loaded():
    """Import the built-in converter modules (they register on import)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import converters  # noqa: F401
