"""The registry of emulated C functions. Each implementation receives the function's
name, then its arguments with handles resolved to records (``None`` for NULL), enums as
ints, ``char *`` as ``str``/``None``; other pointers stay cdata. It returns a record for
a handle result."""

import cffi

IMPLEMENTATIONS = {}
C = cffi.FFI()              # for string/buffer/cast on cdata from any FFI


def c_function(*names):
    def register(impl):
        for name in names:
            assert name not in IMPLEMENTATIONS, name
            IMPLEMENTATIONS[name] = impl
        return impl
    return register


def destroy(function, record):
    """``delete`` of the C++ object: its handle becomes invalid."""
    from .handles import HANDLES
    HANDLES.destroy(function, record)
