"""Data loaders for converted programs, on either backend.

FlexFlow's `init_layers()` zero-fills every input tensor, constants included
(src/ops/noop.cc NoOp::init:183-240), and `fit`/`eval` only call `reset()` and
`next_batch(ffmodel)` on each loader and read `num_samples` of the label loader
(python/flexflow/core/flexflow_cffi.py fit:4377-4420). So a converted program's
constants travel with its first input loader: they are written at every `reset()`,
which comes after `init_layers()` in FlexFlow's own loops."""

from __future__ import annotations

import weakref

import numpy as np

from .errors import DataLoaderError, DTypeError, ModelStateError

NUMPY_OF = {"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_INT64": np.int64}


#: id(ffmodel) -> the replays of converted programs onto it, in order (pytorch_model.Replay)
_REPLAYS = {}


def register_replay(ffmodel, replay):
    if id(ffmodel) not in _REPLAYS:
        _REPLAYS[id(ffmodel)] = []
        try:    # the embedded runtime's FFModel can be weakly referenced; real FlexFlow's cannot
            weakref.finalize(ffmodel, _REPLAYS.pop, id(ffmodel), None)
        except TypeError:
            replay.ffmodel = ffmodel      # keep the id valid as long as the entry lives
    _REPLAYS[id(ffmodel)].append(replay)


def replays_of(ffmodel):
    return list(_REPLAYS.get(id(ffmodel), []))


def replay_of(ffmodel, program=None):
    """The replay of `program` on `ffmodel` (the only one when `program` is None)."""
    replays = _REPLAYS.get(id(ffmodel), [])
    if program is not None:
        replays = [r for r in replays if r.program is program]
    if not replays:
        raise ModelStateError("add the converted model to this FFModel first (PyTorchModel.torch_to_ff "
                              "or file_to_ff)")
    if len(replays) > 1 and program is None:
        raise ModelStateError(f"this FFModel holds {len(replays)} converted models: use the methods of the "
                              "PyTorchModel (hf.create_data_loaders, hf.load_constants) or pass `program`")
    return replays[-1]


def write_constants(ffmodel, constants):
    """Write (tensor, array) pairs with `set_tensor` (call after init_layers)."""
    for tensor, array in constants:
        tensor.set_tensor(ffmodel, array)


def as_input_array(array, dtype: str, name: str) -> np.ndarray:
    """`array` in the C-contiguous NumPy dtype FlexFlow's loader needs for `dtype`."""
    array = np.asarray(array.detach().cpu().numpy() if hasattr(array, "detach") else array)
    if array.dtype.kind not in "biuf" or array.ndim == 0:
        raise DTypeError(f"input {name!r} takes a numeric array with the samples on axis 0, got "
                         f"{array.dtype} of shape {array.shape}")
    want = NUMPY_OF[dtype]
    if array.dtype != want:
        if np.issubdtype(want, np.integer) and np.issubdtype(array.dtype, np.floating):
            raise DTypeError(f"input {name!r} takes integers ({dtype}), got a {array.dtype} array")
        if want is np.int32 and array.size and (array.max() > 2**31 - 1 or array.min() < -2**31):
            raise DTypeError(f"input {name!r}: values do not fit in int32")
        array = array.astype(want)
    return np.ascontiguousarray(array)


class InputLoader:
    """A FlexFlow data loader that also writes the program's constants at `reset()`."""

    def __init__(self, loader, ffmodel, constants):
        self.loader, self.ffmodel, self.constants = loader, ffmodel, list(constants)

    @property
    def num_samples(self):
        return self.loader.num_samples

    @num_samples.setter
    def num_samples(self, value):
        self.loader.num_samples = value

    def reset(self):
        self.loader.reset()
        write_constants(self.ffmodel, self.constants)

    def next_batch(self, ffmodel):
        self.loader.next_batch(ffmodel)


def check_samples(arrays, names):
    counts = {n: len(a) for n, a in zip(names, arrays)}
    if len(set(counts.values())) > 1:
        raise DataLoaderError(f"every input needs as many samples: {counts}")
