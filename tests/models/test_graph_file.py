"""A saved graph (program + weights in one safetensors file) reloads without the
PyTorch model and gives identical outputs."""

import numpy as np
import torch

import flexflow_torch
from flexflow_torch import PyTorchModel
from flexflow_torch.runtime import CompMode, LossType, MetricsType, SGDOptimizer
from flexflow_torch.testing import run_ff
from flexflow_torch.verify import embedded_model

from tiny_models import t5


def _run_from_file(path, inputs):
    """The documented flow without the PyTorch model: file_to_ff creates the input
    tensors; create_data_loaders feeds them and writes the program's constants."""
    ffmodel = embedded_model(batch_size=2)
    outputs = flexflow_torch.file_to_ff(path, ffmodel)
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.01), loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR], comp_mode=CompMode.INFERENCE)
    loaders = flexflow_torch.create_data_loaders(ffmodel, dict(inputs))
    ffmodel.init_layers()
    for loader in loaders:
        loader.reset()
        loader.next_batch(ffmodel)
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
