"""Save / load a converted graph WITH its weights, without the PyTorch model.

Format: one safetensors file. Tensors `weight/<key>` (float32),
`const/<value id>` (float32/int32) and `host/<key>` (constants of the host-side input
program); the program itself (ops, shapes, names, inputs/outputs, weight sources, the
host-side program as a list of allowed ATen calls) is JSON in the file's metadata
under `flexflow_torch.program`."""

from __future__ import annotations

import json
import os

import numpy as np

from .errors import GraphFileError
from .graph import FFProgram

META_KEY = "flexflow_torch.program"


def save_program(program: FFProgram, path) -> str:
    from safetensors.numpy import save_file
    tensors = {f"weight/{k}": np.ascontiguousarray(v) for k, v in program.weights.items()}
    tensors.update({f"const/{k}": np.ascontiguousarray(v) for k, v in program.constants.items()})
    if program.host is not None:           # the host-side input program's constants
        tensors.update({f"host/{k}": v.contiguous().numpy() for k, v in program.host.constants.items()})
    path = os.fspath(path)
    save_file(tensors, path, metadata={META_KEY: json.dumps(program.to_json())})
    return path


def load_program(path) -> FFProgram:
    from safetensors import safe_open
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise GraphFileError(f"no such graph file: {path}")
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - any safetensors parse failure is a bad file
        raise GraphFileError(f"{path} is not a flexflow-torch graph file ({exc})") from exc
    if META_KEY not in meta:
        raise GraphFileError(f"{path} has no flexflow-torch program in its metadata")
    try:
        return FFProgram.from_json(json.loads(meta[META_KEY]), tensors)
    except Exception as exc:  # noqa: BLE001
        raise GraphFileError(f"{path}: unreadable program ({exc})") from exc
