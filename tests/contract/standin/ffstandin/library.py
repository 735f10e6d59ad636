"""The stand-in ``libflexflow``: Legion's cffi ``FFI`` whose ``dlopen("libflexflow.so")``
returns a library of cffi callbacks, one per function of FlexFlow's C API.

Each callback has the exact C type that ``flexflow_c.h`` declares (parsed from the text
FlexFlow itself passed to ``ffi.cdef``), so calling it converts every argument as a call
into the real library would: argument count, numeric and boolean ranges, struct handle
types and pointers are checked by cffi. Behind the callback the stand-in checks handles
(known, alive, of the declared type) and enum values, then runs the emulation of the C
function (modules ``capi_*``). A Python exception cannot cross a C callback, so it is
carried over and re-raised by the ``CFunction`` object that the library hands out."""

import os
import sys
from pathlib import Path

import cffi

from . import capi_config, capi_layers, capi_model, capi_tensor  # noqa: F401  (register implementations)
from . import csource
from .capi import IMPLEMENTATIONS
from .errors import (AssertionAbort, InvalidHandleAbort, MissingSymbolError, NotEmulatedError, StandinError,
                     UndefinedBehaviourAbort)
from .handles import HANDLE_TYPES, HANDLES, NULLABLE
from .report import REPORT


class StandinFFI(cffi.FFI):
    """cffi's FFI, except for ``dlopen`` of libflexflow; remembers what was ``cdef``-ed."""

    def __init__(self):
        super().__init__()
        self.cdef_sources = []

    def cdef(self, csource, *args, **kwargs):
        self.cdef_sources.append(csource)
        return super().cdef(csource, *args, **kwargs)

    def dlopen(self, name, flags=0):
        if os.path.basename(str(name)).startswith("libflexflow."):
            return FlexFlowLibrary(self)
        return super().dlopen(name, flags)


class CFunction:
    """What ``lib.<name>`` returns: calls the callback, then re-raises its error."""
    __slots__ = ("name", "pointer", "_library")

    def __init__(self, name, pointer, library):
        self.name, self.pointer, self._library = name, pointer, library

    def __call__(self, *args):
        pending = self._library.pending
        pending.append(None)
        try:
            result = self.pointer(*args)
        except (TypeError, OverflowError) as exc:       # cffi rejected an argument
            pending.pop()
            REPORT.errors.append({"function": self.name, "error": type(exc).__name__, "message": str(exc)})
            raise type(exc)(f"{self.name}(): {exc}") from None
        error = pending.pop()
        if error is not None:
            if isinstance(error, StandinError):
                REPORT.errors.append({"function": self.name, "error": type(error).__name__,
                                      "message": str(error)})
            raise error
        return result

    def __repr__(self):
        return f"<stand-in libflexflow function {self.name}: {self.pointer!r}>"


class FlexFlowLibrary:
    """The object ``ffi.dlopen("libflexflow.so")`` returns."""

    def __init__(self, ffi):
        self.ffi = ffi
        self.pending = []
        source = _flexflow_root() / "src/c/flexflow_c.cc"
        cc_text = source.read_text()
        defined = csource.defined_functions(cc_text)
        aborting = set(csource.aborting_functions(cc_text))
        self._functions = {}
        for name, (ctype_text, params) in csource.declared_functions("\n".join(ffi.cdef_sources)).items():
            if name not in defined:
                continue                              # declared only: a missing symbol
            ctype = ffi.typeof(ctype_text)
            if name in aborting:
                impl = _aborting(name)
            else:
                impl = IMPLEMENTATIONS.get(name, _not_emulated)
            callback = ffi.callback(ctype, self._entry(name, ctype, params, impl))
            self._functions[name] = CFunction(name, callback, self)

    def __getattr__(self, name):
        functions = self.__dict__.get("_functions", {})
        if name not in functions:
            raise MissingSymbolError(f"function/symbol '{name}' not found in library 'libflexflow.so' "
                                     "(stand-in: not declared in flexflow_c.h or not defined in flexflow_c.cc)")
        return functions[name]

    def __dir__(self):
        return sorted(self._functions)

    def _entry(self, name, ctype, params, impl):
        ffi, pending = self.ffi, self.pending
        arg_types = ctype.args
        result_type = ctype.result

        def entry(*cargs):
            try:
                REPORT.calls[name] += 1
                if impl is _not_emulated:
                    raise NotEmulatedError(name)
                args = [_from_c(ffi, name, param, t, value) for param, t, value in zip(params, arg_types, cargs)]
                return _to_c(ffi, result_type, impl(name, *args))
            except BaseException as exc:             # carried to CFunction.__call__
                pending[-1] = exc
                return _zero(ffi, result_type)
        return entry


def _from_c(ffi, function, param, ctype, value):
    if ctype.kind == "struct" and ctype.cname in HANDLE_TYPES:
        address = int(ffi.cast("uintptr_t", value.impl))
        if address == 0:
            if ctype.cname in NULLABLE:
                return None
            raise InvalidHandleAbort(function, f"NULL {ctype.cname} for '{param}'")
        return HANDLES.resolve(function, ctype.cname, address)
    if ctype.kind == "struct":
        raise NotEmulatedError(function)
    if ctype.kind == "enum":
        if value not in ctype.elements:
            raise UndefinedBehaviourAbort(function, f"'{param}' = {value} is not a value of {ctype.cname}")
        return value
    if ctype.kind == "pointer" and ctype.item.cname == "char":
        return None if value == ffi.NULL else ffi.string(value).decode("utf-8")
    return value


def _to_c(ffi, ctype, result):
    if ctype.kind == "void":
        return None
    if ctype.kind == "pointer" and ctype.item.cname in HANDLE_TYPES and isinstance(result, list):
        array = ffi.new(f"{ctype.item.cname}[]", len(result))     # calloc'ed and never freed in C++ too
        for i, record in enumerate(result):
            array[i].impl = ffi.cast("void *", HANDLES.address(record))
        _KEEP_ALIVE.append(array)
        return ffi.cast(ctype, array)
    if ctype.kind == "struct":
        handle = ffi.new(ctype.cname + " *")
        if result is not None:
            handle.impl = ffi.cast("void *", HANDLES.address(result))
        return handle[0]
    if ctype.kind == "pointer" and result is None:
        return ffi.NULL
    return result


_KEEP_ALIVE = []


def _zero(ffi, ctype):
    if ctype.kind == "void":
        return None
    if ctype.kind == "struct":
        return ffi.new(ctype.cname + " *")[0]
    if ctype.kind == "pointer":
        return ffi.NULL
    return 0


def _not_emulated(function, *args):
    raise NotEmulatedError(function)


def _aborting(name):
    def impl(function, *args):
        raise AssertionAbort(function, "its body in flexflow_c.cc is assert(false)")
    return impl


def _flexflow_root():
    """FlexFlow's tree: the ``flexflow`` package being served is <root>/python/flexflow."""
    module = sys.modules.get("flexflow")
    if module is None or not getattr(module, "__file__", None):
        raise StandinError("libflexflow was opened before FlexFlow's `flexflow` package was imported")
    return Path(module.__file__).resolve().parents[2]
