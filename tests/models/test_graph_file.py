"""A saved graph (program + weights in one safetensors file) reloads without the
PyTorch model and gives identical outputs."""

import numpy as np
import torch

import flexflow_torch
from flexflow_torch import PyTorchModel
from flexflow_torch.runtime import (DataType, FFConfig, FFModel, LossType, MetricsType, SGDOptimizer,
                                    init_flexflow_runtime)
from flexflow_torch.testing import run_ff

from tiny_models import t5


def _run_from_file(path, inputs):
    init_flexflow_runtime({"batch_size": 2})
    ffmodel = FFModel(FFConfig())
    dtypes = {torch.int64: DataType.DT_INT64, torch.float32: DataType.DT_FLOAT}
    tensors = [ffmodel.create_tensor(list(x.shape), dtypes[x.dtype]) for x in inputs.values()]
    outputs = PyTorchModel.file_to_ff(path, ffmodel, tensors)
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.01), loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR])
    for t, x in zip(tensors, inputs.values()):
        loader = ffmodel.create_data_loader(t, x.numpy())
        loader.reset()
        loader.next_batch(ffmodel)
    ffmodel.init_layers()
    ffmodel.forward()
    return [o.get_tensor(ffmodel) for o in outputs]


def test_graph_file_round_trip(tmp_path):
    model, kwargs = t5()
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    path = tmp_path / "t5.safetensors"
    ptm.torch_to_file(path)
    expected = run_ff(ptm)
    del model                                          # the file is self-contained
    program = flexflow_torch.load_program(path)
    assert program.ff_ops() == ptm.program.ff_ops()
    assert program.output_names == ["logits", "encoder_last_hidden_state"]
    got = _run_from_file(path, ptm.example_inputs)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)
