"""`SingleDataLoader` and `FFModel.create_data_loader`: FlexFlow's pointer loader.

The whole array is copied once (FlexFlow copies it into zero-copy memory); each
`next_batch` copies the next `batch_size` samples into the batch tensor, in order,
with no shuffling and no wrap-around. Every check happens at construction, before
any compute: dtype, per-sample size, sample count, the label range of a sparse
cross-entropy model, and the range of every value that indexes something (embedding
ids, gather indices: FlexFlow reads out of bounds without a check).
"""

import math

import numpy as np
import torch

from ..errors import DataLoaderError, DTypeError, LabelRangeError, ShapeError
from .enums import DataType, LossType
from .tensor import NUMPY_DATA_TYPES, Tensor, data_type_of_array


def index_limits(layers, shapes):
    """{tensor: (bound, what)} for the tensors whose values index something: ids of an
    embedding (< num_embeddings), indices of a gather (< the input's size along `dim`),
    traced back through the data movement that copies integers unchanged (reshape,
    identity, concat, split). `layers` are (method, {parameter: tensor or [tensors]},
    attrs, [outputs], name) in program order; `shapes` maps tensors to their shapes."""
    limits = {}

    def tighten(key, bound, what):
        if key not in limits or bound < limits[key][0]:
            limits[key] = (int(bound), what)

    for method, ins, attrs, outs, name in reversed(list(layers)):
        label = f"{method} {name!r}" if name else method
        if method == "embedding":
            tighten(ins["input"], attrs["num_embeddings"], label)
        elif method == "gather":
            shape = shapes[ins["input"]]
            tighten(ins["index"], shape[int(attrs["dim"]) % len(shape)], label)
        elif method in ("reshape", "identity", "split", "concat"):
            known = [limits[o] for o in outs if o in limits]
            if known:
                bound = min(known)
                for src in (ins["tensors"] if method == "concat" else [ins["input"]]):
                    tighten(src, *bound)
    return limits


def check_index_range(array, bound, what, name):
    """Every value of an index array lies in [0, bound)."""
    flat = np.asarray(array).reshape(len(array), -1) if np.asarray(array).ndim else np.asarray(array).reshape(1, 1)
    bad = (flat < 0) | (flat >= bound)
    if flat.size and bad.any():
        sample = int(np.argwhere(bad)[0][0])
        raise DataLoaderError(f"{name}: indices must lie in [0, {bound}) ({what}), got [{int(flat.min())}, "
                              f"{int(flat.max())}]; sample {sample} is the first out of range (FlexFlow reads "
                              "out of bounds without a check)")


def _runtime_layers(ffmodel):
    for layer in ffmodel._graph:
        tensors = layer.spec.tensors
        ins = {tensors[0]: layer.inputs} if tensors == ("tensors",) else dict(zip(tensors, layer.inputs))
        yield layer.spec.method, ins, layer.attrs, layer.outputs, layer.name


class SingleDataLoader:
    __slots__ = ["handle", "_handle"]

    def __init__(self, ffmodel, input, full_input, num_samples, data_type):
        from .model import FFModel
        if type(ffmodel) is not FFModel or not isinstance(input, Tensor):
            raise TypeError("SingleDataLoader(ffmodel, input, full_input, num_samples, "
                            "data_type) needs an FFModel and its batch Tensor")
        if isinstance(full_input, Tensor):
            self.init_from_tensor(ffmodel, input, full_input, num_samples, data_type)
        else:
            self.init_from_ptr(ffmodel, input, full_input, num_samples, data_type)

    def init_from_tensor(self, ffmodel, input, full_input, num_samples, data_type):
        array = full_input.get_tensor(ffmodel)
        self.init_from_ptr(ffmodel, input, array, num_samples, data_type)

    def init_from_ptr(self, ffmodel, input, full_input, num_samples, data_type):
        array = np.asarray(full_input)
        if data_type_of_array(array) != data_type:
            raise DTypeError(f"data loader: array dtype {array.dtype} does not match "
                             f"data_type {data_type.name}")
        if data_type != input.data_type:
            wanted = {v: k for k, v in NUMPY_DATA_TYPES.items()}.get(input.data_type)
            raise DTypeError(
                f"data loader: a {array.dtype} array cannot feed a {input.data_type.name} "
                f"tensor {input.dims}; cast it, e.g. array.astype('{wanted}')")
        if array.ndim == 0 or num_samples < 1 or num_samples > array.shape[0]:
            raise ShapeError(f"data loader: num_samples {num_samples} does not fit an array of "
                             f"shape {array.shape}")
        per_sample = math.prod(input.dims[1:])
        got = math.prod(array.shape[1:])
        if per_sample != got:
            raise ShapeError(
                f"data loader: each sample of the array has shape {array.shape[1:]} "
                f"({got} values) but the tensor {input.dims} takes {input.dims[1:]} "
                f"({per_sample} values) per sample")
        if num_samples < ffmodel._ffconfig.batch_size:
            raise DataLoaderError(f"data loader: {num_samples} samples are fewer than one "
                                  f"batch of {ffmodel._ffconfig.batch_size}")
        label, classes = ffmodel._label, None
        if label is not None and input.handle is label and \
                ffmodel._loss_type == LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY:
            classes = ffmodel._final_output_handle().dims[-1]
            lo, hi = int(array.min()), int(array.max())
            if lo < 0 or hi >= classes:
                raise LabelRangeError(
                    f"labels must lie in [0, {classes}) (the output's last axis), got "
                    f"[{lo}, {hi}]; FlexFlow has no ignore index: map padding such as "
                    "-100 to a valid class")
        if data_type in (DataType.DT_INT32, DataType.DT_INT64):
            handles = [h for layer in ffmodel._graph for h in layer.inputs + layer.outputs]
            limit = index_limits(_runtime_layers(ffmodel), {h: h.dims for h in handles}).get(input.handle)
            if limit is not None:
                check_index_range(array[:num_samples], *limit, f"data loader for {input.handle.describe()}")
        data = torch.from_numpy(np.ascontiguousarray(array[:num_samples]).copy())
        self.handle = {"model": ffmodel, "tensor": input.handle, "data": data,
                       "num_samples": int(num_samples), "cursor": 0, "label_classes": classes}
        self._handle = self.handle
        self.reset()
        self.next_batch(ffmodel)      # FlexFlow loads the first batch at construction
        self.reset()

    @property
    def num_samples(self):
        return self.handle["num_samples"]

    @num_samples.setter
    def num_samples(self, samples):
        if not 1 <= samples <= self.handle["data"].shape[0]:
            raise DataLoaderError(f"num_samples must be in [1, {self.handle['data'].shape[0]}]")
        self.handle["num_samples"] = int(samples)

    def next_batch(self, ffmodel):
        """Copy the next batch_size samples into the batch tensor."""
        h = self.handle
        tensor = h["tensor"]
        batch = ffmodel._ffconfig.batch_size
        if tensor.dims[0] != batch:
            raise ShapeError(f"next_batch: the tensor's dim 0 is {tensor.dims[0]} but the "
                             f"batch size (-b) is {batch}; they must be equal")
        start = h["cursor"]
        if start + batch > h["num_samples"]:
            raise DataLoaderError(f"data loader exhausted after {h['num_samples']} samples: "
                                  "call reset() to start the next pass")
        chunk = h["data"][start:start + batch].reshape(tensor.dims)
        tensor.value = value = chunk.to(ffmodel._device)
        h["cursor"] = start + batch
        if h["label_classes"] is not None:        # sparse labels, all range-checked above
            ffmodel._label_ids = (value, value._version, h["label_classes"], None)

    def reset(self):
        self.handle["cursor"] = 0


class DataLoaderOps:
    def create_data_loader(self, batch_tensor, full_array):
        """A loader feeding `batch_tensor` from `full_array` (dim 0 = samples)."""
        if not isinstance(full_array, np.ndarray):
            raise DTypeError("create_data_loader needs a NumPy array, got "
                             f"{type(full_array).__name__}")
        if self._ffconfig.enable_control_replication and self._ffconfig.python_data_loader_type == 1:
            raise DataLoaderError("To enable control replication, please set "
                                  "--python-data-loader-type 2")
        data_type = data_type_of_array(full_array)
        if data_type not in (DataType.DT_FLOAT, DataType.DT_INT32, DataType.DT_INT64):
            raise DTypeError(f"create_data_loader: {full_array.dtype} arrays are not supported "
                             "by FlexFlow's loader; use float32, int32 or int64")
        return SingleDataLoader(self, batch_tensor, full_array, full_array.shape[0], data_type)
