"""The program's weights view the PyTorch parameters from conversion on (no copy: the
FFModel's weights are the one copy), and what compile() and torch_to_file read is what
the model held at conversion or a WeightsChangedError; copy-back goes through each
weight's layout record, and two conversions into one FFModel keep their own layers
(findings 1 and 2 of issue 11)."""

import numpy as np
import pytest
import torch

import flexflow_torch
from flexflow_torch import PyTorchModel
from flexflow_torch.errors import WeightsChangedError
from flexflow_torch.runtime import CompMode, LossType, MetricsType, SGDOptimizer
from flexflow_torch.testing import sgd_steps_ff, torch_outputs
from flexflow_torch.verify import embedded_model
from flexflow_torch.weights import read_weights, to_flexflow

from graph_fuzz import run_file
from tiny_models import VOCAB, gpt2


def test_file_saved_after_training_and_copy_back_is_the_trained_model(tmp_path):
    """GPT-2's Conv1D kernels change layout (transposed); the other weights do not. After
    training and copy-back, the saved file holds every trained weight."""
    model, kwargs = gpt2()
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    labels = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(3))
    _, ffmodel = sgd_steps_ff(ptm, ptm.example_inputs, labels, lr=0.5, steps=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ptm.copy_weights_to_torch(ffmodel)
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    path = tmp_path / "trained.safetensors"
    ptm.torch_to_file(path)
    got = run_file(path, ptm.example_inputs)
    want = torch_outputs(model, ptm.example_inputs)
    torch.testing.assert_close(torch.from_numpy(got[0]), want[0])
    assert flexflow_torch.verify(ptm).ok          # the eval program follows the trained weights too


def test_conversion_views_the_weights_and_refuses_to_read_changed_ones(tmp_path):
    """float32 parameters are bound as views (GPT-2's Conv1D kernels transposed, the tied
    table as rows): nothing is copied at conversion. A parameter changed afterwards
    makes compile() and torch_to_file raise WeightsChangedError naming it, not load a mix
    of old and new weights; converting again loads the new values."""
    model, kwargs = gpt2()
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    program = ptm.program
    params = dict(model.named_parameters())
    for key, src in program.weight_sources.items():
        assert np.shares_memory(program.weights[key], params[src["param"]].detach().numpy()), key
    ffmodel = embedded_model(batch_size=2)
    ptm.torch_to_ff(ffmodel)
    with torch.no_grad():
        params["transformer.h.0.attn.c_attn.weight"].add_(1.0)
    with pytest.raises(WeightsChangedError, match="transformer.h.0.attn.c_attn.weight"):
        ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.0), loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                        metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR], comp_mode=CompMode.INFERENCE)
    with pytest.raises(WeightsChangedError):
        ptm.torch_to_ff(embedded_model(batch_size=2))
    with pytest.raises(WeightsChangedError):
        ptm.torch_to_file(tmp_path / "mixed.safetensors")

    again = PyTorchModel(model, is_hf_model=True, **kwargs)
    expected = {key: to_flexflow(params[src["param"]], src) for key, src in again.program.weight_sources.items()}
    ffmodel = embedded_model(batch_size=2)
    again.torch_to_ff(ffmodel)
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.0), loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR], comp_mode=CompMode.INFERENCE)
    loaded = read_weights(ffmodel, again.program)
    assert loaded.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(loaded[key], expected[key])


def test_weights_of_other_dtypes_are_copied_at_conversion():
    """A bfloat16 model's weights cannot be viewed as FlexFlow's float32: they are copied
    when bound, so later changes to the model do not reach compile()."""
    model, kwargs = gpt2()
    model = model.to(torch.bfloat16)
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    expected = {key: to_flexflow(dict(model.named_parameters())[src["param"]], src)
                for key, src in ptm.program.weight_sources.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ffmodel = embedded_model(batch_size=2)
    ptm.torch_to_ff(ffmodel)
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.0), loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR], comp_mode=CompMode.INFERENCE)
    loaded = read_weights(ffmodel, ptm.program)
    for key in expected:
        np.testing.assert_array_equal(loaded[key], expected[key])


class MLP(torch.nn.Module):
    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1, self.fc2 = torch.nn.Linear(5, 8), torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def test_two_conversions_into_one_ffmodel_keep_their_own_weights():
    x1 = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    x2 = torch.randn(4, 5, generator=torch.Generator().manual_seed(2))
    models = [MLP(10).eval(), MLP(20).eval()]
    ptms = [PyTorchModel(m, example_inputs=(x,)) for m, x in zip(models, (x1, x2))]
    ffmodel = embedded_model(batch_size=4)
    outs = [ptm.torch_to_ff(ffmodel)[0] for ptm in ptms]
    names = [op.name for op in ffmodel.get_layers().values()]
    assert len(names) == len(set(names)) and "fc1" in names and "model2/fc1" in names
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.0), loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR], comp_mode=CompMode.INFERENCE)
    loaders = ptms[0].create_data_loaders(ffmodel, [x1]) + ptms[1].create_data_loaders(ffmodel, [x2])
    ffmodel.init_layers()
    for loader in loaders:
        loader.reset()
        loader.next_batch(ffmodel)
    ffmodel.forward()
    for out, model, x in zip(outs, models, (x1, x2)):
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(out.get_tensor(ffmodel)), model(x))
    with torch.no_grad():                     # copy-back reads each model's own layers
        for m in models:
            for p in m.parameters():
                p.zero_()
    for ptm, seed in zip(ptms, (10, 20)):
        ptm.copy_weights_to_torch(ffmodel)
        torch.testing.assert_close(ptm.model.fc1.weight, MLP(seed).fc1.weight)

