"""Save / load a converted graph WITH its weights, without the PyTorch model.

Format (version 3): one safetensors file. Tensors `weight/<key>` (float32, in the
FlexFlow layout), `const/<value id>` (float32/int32) and `host/<key>` (constants of the
host-side input program); the program itself (ops, shapes, names, inputs/outputs,
weight layouts, the host-side program as a list of allowed ATen calls) is JSON in the metadata under
`flexflow_torch.program`, and `flexflow_torch.sha256` is a checksum over that JSON and
every tensor (name, dtype, shape, bytes). safetensors and JSON only: loading a file
never executes anything from it.

`load_program` validates the whole file before anything is replayed; every problem is
a `GraphFileError`. A file that loads replays, compiles and runs: the checksum says it
is what `save_program` wrote, and the validation (graph_schema.py) that it is a program
the converter could have recorded, even for a file whose checksum was recomputed."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .errors import GraphFileError
from .weights import current
from .graph import FFProgram

META_KEY = "flexflow_torch.program"
CHECKSUM_KEY = "flexflow_torch.sha256"


def checksum(program_json: str, tensors: dict) -> str:
    """sha256 over the program's JSON text and every tensor in name order."""
    h = hashlib.sha256(program_json.encode("utf-8"))
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        h.update(json.dumps([name, array.dtype.str, list(array.shape)]).encode())
        h.update(array.tobytes())
    return h.hexdigest()


def save_program(program: FFProgram, path) -> str:
    from safetensors.numpy import save_file
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise GraphFileError(f"a graph file path is a str or os.PathLike, got {type(path).__name__}")
    tensors = {f"weight/{k}": np.ascontiguousarray(current(program, k)) for k in program.weights}
    tensors.update({f"const/{k}": np.ascontiguousarray(v) for k, v in program.constants.items()})
    if program.host is not None:           # the host-side input program's constants
        tensors.update({f"host/{k}": v.contiguous().numpy() for k, v in program.host.constants.items()})
    text = json.dumps(program.to_json())
    path = os.fspath(path)
    try:
        save_file(tensors, path, metadata={META_KEY: text, CHECKSUM_KEY: checksum(text, tensors)})
    except Exception as exc:  # noqa: BLE001 - safetensors reports I/O failures as SafetensorError
        raise GraphFileError(f"cannot write the graph file {path}: {exc}") from exc
    return path


def load_program(path) -> FFProgram:
    """The program saved in `path`, validated (GraphFileError on any problem)."""
    from safetensors import safe_open
    from .graph_schema import check_header, check_version, validate
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise GraphFileError(f"a graph file path is a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise GraphFileError(f"no such graph file: {path}")
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            if META_KEY not in meta:
                raise GraphFileError(f"{path} has no flexflow-torch program in its metadata")
            headers = {k: (f.get_slice(k).get_dtype(), f.get_slice(k).get_shape()) for k in f.keys()}
            check_header(headers, path)            # names, dtypes and sizes before reading any data
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except GraphFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any safetensors parse failure is a bad file
        raise GraphFileError(f"{path} is not a flexflow-torch graph file ({type(exc).__name__}: {exc})") from exc
    text = meta[META_KEY]
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise GraphFileError(f"{path}: the program is not valid JSON ({exc})") from exc
    check_version(data, path)
    if meta.get(CHECKSUM_KEY) != checksum(text, tensors):
        raise GraphFileError(f"{path}: checksum mismatch: the file was changed after it was written "
                             "(or is truncated); convert the model again")
    validate(data, tensors, path)
    return FFProgram.from_json(data, tensors)
