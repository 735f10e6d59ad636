"""Training input guards (findings 6 and 13 of issue 11): data loaders check ids and
labels against the model's ranges when they are created, before any batch trains, and
fit stops at the first batch whose inputs or output are not finite, naming it."""

import numpy as np
import pytest
import torch

from flexflow_torch import CrossEntropyHead, PyTorchModel
from flexflow_torch.errors import DataLoaderError, LabelRangeError, NonFiniteError
from flexflow_torch.runtime import ActiMode, AggrMode, DataType, LossType, MetricsType, SGDOptimizer
from flexflow_torch.verify import embedded_model


def _mlp(batch=4):
    ffmodel = embedded_model(batch_size=batch)
    x = ffmodel.create_tensor([batch, 6], DataType.DT_FLOAT)
    out = ffmodel.softmax(ffmodel.dense(ffmodel.dense(x, 8, ActiMode.AC_MODE_RELU), 3))
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.1), loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                    metrics=[MetricsType.METRICS_ACCURACY])
    return ffmodel, x


def _weights(ffmodel):
    return [w.value.detach().clone() for layer in ffmodel._graph for w in layer.weights]


def test_fit_stops_at_the_first_non_finite_batch():
    ffmodel, x = _mlp()
    data = np.random.default_rng(0).standard_normal((12, 6)).astype(np.float32)
    data[6, 2] = np.nan                                 # sample 6: the second batch of 4
    loaders = [ffmodel.create_data_loader(x, data),
               ffmodel.create_data_loader(ffmodel.label_tensor, np.zeros((12, 1), np.int32))]
    ffmodel.init_layers()
    with pytest.raises(NonFiniteError, match=r"epoch 1/1, batch 2 \(samples 4-7\): input .*row 2 of the batch"):
        ffmodel.fit(x=loaders[0], y=loaders[1], epochs=1)
    assert all(torch.isfinite(w).all() for w in _weights(ffmodel))


def test_fit_stops_when_the_output_overflows():
    ffmodel = embedded_model(batch_size=4)
    x = ffmodel.create_tensor([4, 6], DataType.DT_FLOAT)
    ffmodel.dense(x, 3)
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.1), loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR])
    data = np.full((8, 6), 3e38, np.float32)           # finite inputs, an infinite output
    loaders = [ffmodel.create_data_loader(x, data),
               ffmodel.create_data_loader(ffmodel.label_tensor, np.zeros((8, 3), np.float32))]
    ffmodel.init_layers()
    with pytest.raises(NonFiniteError, match="batch 1 .*the model's output"):
        ffmodel.fit(x=loaders[0], y=loaders[1], epochs=1)


def test_the_guard_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("FLEXFLOW_TORCH_CHECK_FINITE", "0")
    ffmodel, x = _mlp()
    data = np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32)
    data[0, 0] = np.inf
    loaders = [ffmodel.create_data_loader(x, data),
               ffmodel.create_data_loader(ffmodel.label_tensor, np.zeros((8, 1), np.int32))]
    ffmodel.init_layers()
    ffmodel.fit(x=loaders[0], y=loaders[1], epochs=1)
    assert not all(torch.isfinite(w).all() for w in _weights(ffmodel))   # what the guard prevents


def test_loaders_check_ids_when_created_on_hand_written_models():
    ffmodel = embedded_model(batch_size=2)
    ids = ffmodel.create_tensor([2, 5], DataType.DT_INT32)
    emb = ffmodel.embedding(ffmodel.reshape(ids, [2, 5]), 11, 4, AggrMode.AGGR_MODE_NONE, name="tokens")
    ffmodel.softmax(ffmodel.dense(ffmodel.reshape(emb, [2, 20]), 3))
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.1), loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                    metrics=[MetricsType.METRICS_ACCURACY])
    good = np.random.default_rng(0).integers(0, 11, (6, 5)).astype(np.int32)
    ffmodel.create_data_loader(ids, good)
    bad = good.copy()
    bad[4, 1] = 11
    with pytest.raises(DataLoaderError, match=r"\[0, 11\) \(embedding 'tokens'\).*sample 4"):
        ffmodel.create_data_loader(ids, bad)
    with pytest.raises(LabelRangeError):
        ffmodel.create_data_loader(ffmodel.label_tensor, np.full((6, 1), 3, np.int32))


class TinyLM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.out = torch.nn.Embedding(11, 8), torch.nn.Linear(8, 11)

    def forward(self, ids):
        return self.out(torch.tanh(self.emb(ids)))


def test_converted_model_loaders_check_ids_and_labels_when_created():
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))
    ptm = PyTorchModel(TinyLM().eval(), example_inputs=(ids,))
    ffmodel = embedded_model(batch_size=2)
    head = CrossEntropyHead(ffmodel, ptm.torch_to_ff(ffmodel)[0])
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.1), loss_type=head.loss_type, metrics=head.metrics)
    data = np.random.default_rng(1).integers(0, 11, (8, 5))
    data[7, 0] = -1                                     # the last batch: nothing may train first
    with pytest.raises(DataLoaderError, match=r"input 'ids': indices must lie in \[0, 11\).*sample 7"):
        ptm.create_data_loaders(ffmodel, [data])
    with pytest.raises(LabelRangeError):
        head.create_label_loader(ffmodel, np.full((8, 5), 11))


def test_the_checkpointing_fit_loop_is_guarded_too():
    import flexflow_torch
    ffmodel, x = _mlp()
    data = np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32)
    data[5, 0] = np.nan
    loaders = [ffmodel.create_data_loader(x, data),
               ffmodel.create_data_loader(ffmodel.label_tensor, np.zeros((8, 1), np.int32))]
    ffmodel.init_layers()
    with pytest.raises(NonFiniteError, match=r"batch 2 \(samples 4-7\)"):
        flexflow_torch.fit(ffmodel, loaders[0], loaders[1], epochs=1)
