"""The registry of emulated C functions. Each implementation receives the function's
name, then its arguments with handles resolved to records (``None`` for NULL), enums as
ints, ``char *`` as ``str``/``None``; other pointers stay cdata. It returns a record for
a handle result."""

from .handles import C, HANDLES  # noqa: F401  (C: re-exported for the capi_* modules)

IMPLEMENTATIONS = {}


def c_function(*names):
    def register(impl):
        for name in names:
            assert name not in IMPLEMENTATIONS, name
            IMPLEMENTATIONS[name] = impl
        return impl
    return register


def destroy(function, record):
    """``delete`` of the C++ object: its handle becomes invalid."""
    HANDLES.destroy(function, record)
