"""flexflow-torch: convert PyTorch / HuggingFace models into FlexFlow models and train them."""
from setuptools import find_packages, setup

setup(
    name="flexflow-torch",
    version="0.1.0",
    description="PyTorch and HuggingFace models to FlexFlow, with an embedded FlexFlow runtime on PyTorch kernels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["flexflow_torch", "flexflow_torch.*"]),
    # torch is pinned by the set-up scripts (torch==2.13.0 installed first); any
    # later release also works, so no upper bound here.
    install_requires=[
        "torch>=2.5",
        "numpy",
        "tqdm",
        "transformers>=4.45",
        "safetensors",
        "sentencepiece",
        "protobuf",
        "pandas",
        "matplotlib",
        "sacrebleu",
        "babel==2.18.0",     # data/eng-sin was built from its CLDR 47 (data/README.md)
        "scikit-learn",
    ],
    extras_require={
        # cffi: the contract tests' stand-in libflexflow (tests/contract); setuptools:
        # FlexFlow's flexflowlib.py imports distutils, gone from the standard library in 3.12.
        "dev": ["pytest", "pytest-xdist", "nbformat", "nbclient", "ipykernel", "cffi", "setuptools"],
    },
    entry_points={"console_scripts": ["flexflow-torch=flexflow_torch.cli:main"]},
)
