"""Checkpoint and resume: a run stopped (at an epoch's end or mid-epoch) and resumed
from its checkpoint ends with the very weights of the uninterrupted run of FlexFlow's
`fit`, for SGD, SGD with momentum and Adam, on a converted GPT-2 with dropout trained
on 2 data-parallel GPUs."""

import numpy as np
import pytest
import torch

import flexflow_torch
from flexflow_torch import PyTorchModel, load_checkpoint, save_checkpoint
from flexflow_torch.errors import CheckpointError
from flexflow_torch.heads import CrossEntropyHead
from flexflow_torch import runtime as ff
from flexflow_torch.verify import embedded_model

from tiny_models import gpt2

BATCH, SAMPLES, DEGREE = 4, 12, 2                   # 3 batches per epoch
OPTIMIZERS = {"sgd": lambda m: ff.SGDOptimizer(m, 0.05),
              "momentum": lambda m: ff.SGDOptimizer(m, 0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
              "adam": lambda m: ff.AdamOptimizer(m, 0.01, weight_decay=1e-3)}


@pytest.fixture(scope="module")
def converted():
    model, kwargs = gpt2()
    model.config.resid_pdrop = model.config.attn_pdrop = 0.1       # dropout's generators are state too
    model = type(model)(model.config)
    kwargs.update(batch_size=BATCH)
    ptm = PyTorchModel(model, is_hf_model=True, training=True, **kwargs)
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(1, 100, (SAMPLES, 7), generator=g)
    data = [ids.numpy(), np.ones((SAMPLES, 7), dtype=np.int64)]
    labels = torch.roll(ids, -1, dims=1).numpy()
    return ptm, data, labels


class Interrupted(Exception):
    pass


class StopAt:
    """A label loader that fails on its `n`-th batch, as a killed job would."""

    def __init__(self, loader, n):
        self.loader, self.n = loader, n
        self.num_samples = loader.num_samples

    def reset(self):
        self.loader.reset()

    def next_batch(self, ffmodel):
        self.n -= 1
        if self.n < 0:
            raise Interrupted
        self.loader.next_batch(ffmodel)


def _model(converted, optimizer):
    ptm, data, labels = converted
    ffmodel = embedded_model(BATCH, DEGREE)
    head = CrossEntropyHead(ffmodel, ptm.torch_to_ff(ffmodel)[0])
    ffmodel.compile(optimizer=OPTIMIZERS[optimizer](ffmodel), loss_type=head.loss_type, metrics=head.metrics)
    x = ptm.create_data_loaders(ffmodel, data)
    y = head.create_label_loader(ffmodel, labels)
    ffmodel.init_layers()
    return ffmodel, x, y


def _weights(ffmodel):
    return [op.get_parameter_by_id(j).get_weights(ffmodel)
            for op in ffmodel.get_layers().values() for j in range(op.get_number_parameters())]


def _assert_same(a, b):
    for wa, wb in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_two_plus_two_epochs_equal_four(converted, optimizer, tmp_path):
    reference, x, y = _model(converted, optimizer)
    reference.fit(x=x, y=y, epochs=4)                                 # FlexFlow's own loop, uninterrupted

    first, x, y = _model(converted, optimizer)
    flexflow_torch.fit(first, x, y, epochs=2, checkpoint=tmp_path / "ckpt.safetensors")
    resumed, x, y = _model(converted, optimizer)
    end = flexflow_torch.fit(resumed, x, y, epochs=4, checkpoint=tmp_path / "ckpt.safetensors", resume=True)
    assert end.epoch == 4
    _assert_same(resumed, reference)

    weights_only, x, y = _model(converted, optimizer)               # the weights alone are not enough
    for op in weights_only.get_layers().values():
        for j in range(op.get_number_parameters()):
            op.get_parameter_by_id(j).set_weights(weights_only, first.get_layers()[op.idx].get_parameter_by_id(j)
                                                  .get_weights(first))
    weights_only.fit(x=x, y=y, epochs=2)
    if optimizer != "sgd":
        assert any(not np.array_equal(a, b) for a, b in zip(_weights(weights_only), _weights(reference)))


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_resume_mid_epoch_after_a_crash(converted, optimizer, tmp_path):
    reference, x, y = _model(converted, optimizer)
    reference.fit(x=x, y=y, epochs=3)

    path = tmp_path / "ckpt.safetensors"
    crashed, x, y = _model(converted, optimizer)
    with pytest.raises(Interrupted):                                  # dies in step 6 (epoch 2, batch 3)
        flexflow_torch.fit(crashed, x, StopAt(y, 5), epochs=3, checkpoint=path, every=2)
    resumed, x, y = _model(converted, optimizer)
    flexflow_torch.fit(resumed, x, y, epochs=3, checkpoint=path, resume=True)   # from step 4: epoch 2, batch 2
    _assert_same(resumed, reference)


def test_checkpoint_refusals(converted, tmp_path):
    path = tmp_path / "ckpt.safetensors"
    model, x, y = _model(converted, "adam")
    save_checkpoint(model, path)
    with pytest.raises(CheckpointError, match="exists: resume from it, or overwrite"):
        flexflow_torch.fit(model, x, y, epochs=1, checkpoint=path)
    other, x, y = _model(converted, "sgd")
    with pytest.raises(CheckpointError, match="AdamOptimizer optimizer state but the model was compiled with SGD"):
        load_checkpoint(other, path)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(other, tmp_path / "missing.safetensors")
    flexflow_torch.fit(model, x, y, epochs=1, checkpoint=path, overwrite=True)
    small, xs, ys = _model(converted, "adam")
    ys.num_samples = 8
    with pytest.raises(CheckpointError, match="resume with the same data and batch size"):
        flexflow_torch.fit(small, xs, ys, epochs=2, checkpoint=path, resume=True)
