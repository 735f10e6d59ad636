"""flexflow-torch: PyTorch and HuggingFace models to FlexFlow, with an embedded
FlexFlow runtime on PyTorch kernels."""

__version__ = "0.1.0"

from . import registry  # noqa: E402
from .pytorch_model import (PyTorchModel, analyze, create_data_loaders, file_to_ff,  # noqa: E402
                            load_constants)
from .heads import CrossEntropyHead  # noqa: E402
from .launch import init_runtime  # noqa: E402
from .graph import FFProgram  # noqa: E402
from .serialization import load_program, save_program  # noqa: E402
from .verify import verify  # noqa: E402  (binds the function over the submodule name)
from .checkpoint import fit, load_checkpoint, save_checkpoint  # noqa: E402


__all__ = ["PyTorchModel", "analyze", "verify", "file_to_ff", "create_data_loaders", "load_constants",
           "CrossEntropyHead", "init_runtime", "registry", "FFProgram", "load_program", "save_program",
           "FlexFlowModel", "fit", "save_checkpoint", "load_checkpoint"]


def __getattr__(name):
    """`FlexFlowModel` (HF's API over a converted model) imports transformers' pipelines
    only when asked for."""
    if name == "FlexFlowModel":
        from .hf import FlexFlowModel
        return FlexFlowModel
    raise AttributeError(f"module 'flexflow_torch' has no attribute {name!r}")
