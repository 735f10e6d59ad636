"""Checkpoints of training: `save_checkpoint`, `load_checkpoint`, and `fit`, FlexFlow's
training loop that also writes them every N steps and resumes from one.

A checkpoint is one safetensors file: every layer's weights (FlexFlow's layouts, through
`Parameter.get_weights`) and, in its metadata, the position in the data (epoch, batch).
On the embedded runtime it also holds what the next step reads besides the weights: the
optimizer's state (SGD velocity; Adam's moments and beta powers), dropout generators and
the metrics accumulated in the epoch, so that a resumed run is bit for bit the
uninterrupted one. FlexFlow keeps its optimizer state in C++ (include/flexflow/optimizer.h:
SGDOptimizer::v_values, AdamOptimizer::m_values, v_values, beta1_t, beta2_t) and its C API
(include/flexflow/flexflow_c.h) only creates optimizers and sets their learning rate; so on
real FlexFlow a checkpoint restores weights and position, and a resumed run is exact for
plain SGD only (`load_checkpoint` warns)."""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import CheckpointError
from .runtime.training import finite_guard

FORMAT, VERSION = "flexflow-torch-checkpoint", 1


@dataclass(frozen=True)
class Position:
    """Where training stands: `epoch` epochs done, then `batch` batches of the next;
    `extra`: what the training script saved with it (JSON, e.g. its loss history)."""
    epoch: int = 0
    batch: int = 0
    extra: dict = field(default_factory=dict)


def _embedded(ffmodel) -> bool:
    from .runtime.model import FFModel
    return isinstance(ffmodel, FFModel)


def _parameters(ffmodel):
    """{"layer_id/param_id": (layer name, Parameter)} of every layer, in FlexFlow's order."""
    return {f"{i}/{j}": (op.name, op.get_parameter_by_id(j))
            for i, op in ffmodel.get_layers().items() for j in range(op.get_number_parameters())}


def save_checkpoint(ffmodel, path, epoch: int = 0, batch: int = 0, *, data: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write `ffmodel`'s training state (after `init_layers()`) to `path`, atomically.
    `epoch`/`batch`: the position reached (epochs done, batches of the next); `data`:
    what a resumed run must train on ({"batch_size", "samples"}); `extra`: anything the
    script wants back on resume (JSON)."""
    path = Path(path)
    arrays, layers = {}, {}
    for key, (name, param) in _parameters(ffmodel).items():
        arrays[f"weight/{key}"] = np.ascontiguousarray(param.get_weights(ffmodel))
        layers[key.split("/")[0]] = name
    meta = {"format": FORMAT, "version": VERSION, "runtime": "embedded" if _embedded(ffmodel) else "flexflow",
            "position": {"epoch": int(epoch), "batch": int(batch)}, "layers": layers, "data": data or {},
            "extra": extra or {}, "state": None}
    if _embedded(ffmodel):
        tensors, meta["state"] = ffmodel._training_state()
        arrays.update({key: t.numpy() for key, t in tensors.items()})
    from safetensors.numpy import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(arrays, str(partial), metadata={FORMAT: json.dumps(meta)})
    os.replace(partial, path)
    return path


def _read(path):
    from safetensors import safe_open
    from safetensors.numpy import load_file
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {})[FORMAT])
        arrays = load_file(str(path))
    except Exception as e:                                            # noqa: BLE001 (reported, typed)
        raise CheckpointError(f"{path} is not a flexflow-torch checkpoint: {e}") from e
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {meta.get('version')}, this flexflow-torch "
                              f"reads version {VERSION}")
    return meta, arrays


def load_checkpoint(ffmodel, path, *, data: dict | None = None) -> Position:
    """Restore a checkpoint into `ffmodel` (the same model, compiled, `init_layers()` done)
    and return the position to continue from; `data` as given to `save_checkpoint`
    must match."""
    meta, arrays = _read(path)
    if data is not None and meta["data"] and meta["data"] != json.loads(json.dumps(data)):
        raise CheckpointError(f"{path} was written training on {meta['data']}, this run has {data}: "
                              "resume with the same data and batch size")
    params = _parameters(ffmodel)
    saved = {k[len("weight/"):] for k in arrays if k.startswith("weight/")}
    if saved != set(params):
        raise CheckpointError(f"{path} holds {len(saved)} parameters, the model has {len(params)}: "
                              "a checkpoint resumes the model it was written from")
    for key, (name, param) in params.items():
        array = arrays[f"weight/{key}"]
        if meta["layers"].get(key.split("/")[0]) != name or tuple(array.shape) != tuple(param.dims):
            raise CheckpointError(f"{path}: layer {key.split('/')[0]} is {meta['layers'].get(key.split('/')[0])!r} "
                                  f"{array.shape} in the checkpoint, {name!r} {tuple(param.dims)} in the model")
        param.set_weights(ffmodel, np.ascontiguousarray(array, dtype=np.float32))
    if _embedded(ffmodel) and meta["state"] is not None:
        ffmodel._load_training_state({k: torch.from_numpy(a.copy()) for k, a in arrays.items()
                                      if not k.startswith("weight/")}, meta["state"])
    else:
        warnings.warn("resumed with the weights and the position only: FlexFlow's Python API cannot read or "
                      "write optimizer state (SGD momentum, Adam moments), which starts afresh; the run "
                      "continues exactly for plain SGD only", RuntimeWarning, stacklevel=2)
    return Position(**meta["position"], extra=meta["extra"])


def fit(ffmodel, x, y, epochs: int = 1, *, checkpoint=None, every: int | None = None, resume: bool = False,
        overwrite: bool = False) -> Position:
    """FlexFlow's `FFModel.fit` loop (flexflow_cffi.py fit: loaders reset each epoch, in
    order, leftover samples dropped), with checkpoints: every `every` steps and at the end
    when `checkpoint` (a path) is given; `resume=True` continues from it. Runs on the
    embedded runtime and on FlexFlow alike."""
    loaders = (list(x) if isinstance(x, (list, tuple)) else [x]) + [y]
    batch_size = ffmodel._ffconfig.batch_size
    iterations = int(y.num_samples / batch_size)
    data = {"batch_size": batch_size, "samples": [int(d.num_samples) for d in loaders]}
    start = Position()
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if resume:
            start = load_checkpoint(ffmodel, checkpoint, data=data)
        elif checkpoint.exists() and not overwrite:
            raise CheckpointError(f"{checkpoint} exists: resume from it, or overwrite it (overwrite=True, --force)")
    elif resume or every:
        raise CheckpointError("resume and every need a checkpoint path")
    step = start.epoch * iterations + start.batch
    ffmodel._tracing_id += 1
    for epoch in range(start.epoch, epochs):
        for d in loaders:
            d.reset()
        first = start.batch if epoch == start.epoch else 0
        if first == 0:
            ffmodel.reset_metrics()
        for _ in range(first):                                       # back to where the checkpoint was
            for d in loaders:
                d.next_batch(ffmodel)
        bar = tqdm(range(first, iterations), desc=f"epoch {epoch + 1}/{epochs}", unit="batch", file=sys.stderr,
                   leave=False, dynamic_ncols=True, disable=None, initial=first, total=iterations)
        guard = finite_guard(ffmodel, f"epoch {epoch + 1}/{epochs}")
        for batch in bar:
            ffmodel._ffconfig.begin_trace(ffmodel._tracing_id)
            for d in loaders:
                d.next_batch(ffmodel)
            guard.inputs(batch)
            ffmodel.forward()
            guard.output(batch)
            ffmodel.zero_gradients()
            ffmodel.backward()
            ffmodel.update()
            ffmodel._ffconfig.end_trace(ffmodel._tracing_id)
            step += 1
            if every and step % every == 0 and not (batch + 1 == iterations and epoch + 1 == epochs):
                save_checkpoint(ffmodel, checkpoint, *divmod(step, iterations), data=data)
        bar.close()
    end = Position(epochs, 0)
    if checkpoint is not None:
        save_checkpoint(ffmodel, checkpoint, end.epoch, end.batch, data=data)
    return end
