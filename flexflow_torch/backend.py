"""Which FlexFlow serves `flexflow_torch.core`: the real `flexflow.core` when it can be
imported, else the embedded runtime. FLEXFLOW_TORCH_BACKEND=embedded|flexflow forces
one (`auto`, the default, prefers real FlexFlow)."""

import importlib
import importlib.util
import os

from .errors import BackendUnavailableError

_CHOICES = ("auto", "embedded", "flexflow")


def backend_name():
    choice = os.environ.get("FLEXFLOW_TORCH_BACKEND", "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise BackendUnavailableError(
            f"FLEXFLOW_TORCH_BACKEND={choice!r} is not one of {', '.join(_CHOICES)}")
    if choice != "auto":
        return choice
    return "flexflow" if importlib.util.find_spec("flexflow") is not None else "embedded"


def load_core():
    """The module whose names `flexflow_torch.core` re-exports."""
    name = backend_name()
    if name == "embedded":
        return importlib.import_module("flexflow_torch.runtime")
    try:
        return importlib.import_module("flexflow.core")
    except ImportError as exc:
        raise BackendUnavailableError(
            f"FLEXFLOW_TORCH_BACKEND asks for real FlexFlow, but `import flexflow.core` "
            f"failed ({exc}); install FlexFlow (it needs CUDA) or set "
            "FLEXFLOW_TORCH_BACKEND=embedded") from exc


def backend_module():
    """The `flexflow.core`-like module the converter emits into (same choice as
    `flexflow_torch.core`)."""
    return load_core()


def enums_for(ffmodel):
    """The module holding the enums matching `ffmodel`'s implementation."""
    module = type(ffmodel).__module__
    if module.startswith("flexflow.") or module == "flexflow":
        return importlib.import_module("flexflow.type")
    return importlib.import_module("flexflow_torch.runtime.enums")
