"""FlexFlow's `flexflow.core` names: port a FlexFlow script by changing
`from flexflow.core import *` to `from flexflow_torch.core import *`.

Real FlexFlow is used when importable, else the embedded runtime (see backend.py)."""

from .backend import backend_name, load_core

_core = load_core()
BACKEND = backend_name()
__all__ = [n for n in getattr(_core, "__all__", dir(_core)) if not n.startswith("_")]
globals().update({n: getattr(_core, n) for n in __all__})
