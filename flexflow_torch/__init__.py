"""flexflow-torch: PyTorch and HuggingFace models to FlexFlow, with an embedded
FlexFlow runtime on PyTorch kernels."""

__version__ = "0.1.0"
