"""Stand-in for Legion's ``legion_cffi`` (deps/legion/bindings/python/legion_cffi.py).

Real module: ``is_legion_python`` is True when the ``legion_builtin_cffi`` module of the
``legion_python`` interpreter is importable, else False; ``ffi`` is Legion's cffi FFI
with Legion's C header defined and ``lib`` Legion's C library.

Here: ``is_legion_python`` tells whether the stand-in ``flexflow_python`` launcher started
the process; ``ffi`` is a real ``cffi.FFI`` whose ``dlopen("libflexflow.so")`` returns the
stand-in libflexflow. FlexFlow uses only these two names (``flexflow/core/__init__.py``,
``flexflow/core/flexflowlib.py``); ``lib`` (Legion's C functions) is not provided."""

from ffstandin.library import StandinFFI
from ffstandin.realm import PROCESS

is_legion_python = PROCESS.mode == "legion_python"
ffi = StandinFFI()
