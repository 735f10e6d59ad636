"""FLEXFLOW_TORCH_SEMANTICS: what the switch does, and a hand-written native FlexFlow
model whose internal softmax makes FlexFlow train differently from the mathematics.

x -> dense -> softmax -> dense -> softmax (final) with sparse cross-entropy: FlexFlow's
softmax backward copies the gradient (softmax.cu Internal::backward_kernel:254-258),
which is right for the final softmax under CE and wrong for the internal one."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from flexflow_torch.errors import ConfigError
from flexflow_torch.runtime import (DataType, FFConfig, FFModel, LossType, MetricsType,
                                    SGDOptimizer)
from .rt_helpers import BATCH, randn, set_params

STEPS, LR = 4, 0.5


class CopyGradSoftmax(torch.autograd.Function):
    """FlexFlow's softmax: softmax forward, the incoming gradient copied backward."""

    @staticmethod
    def forward(ctx, x):
        return torch.softmax(x, -1)

    @staticmethod
    def backward(ctx, g):
        return g


def _data(rng):
    return [(randn(rng, BATCH, 6), rng.integers(0, 3, (BATCH, 1)).astype(np.int32))
            for _ in range(STEPS)]


def _initial(rng):
    torch.manual_seed(11)
    l1, l2 = nn.Linear(6, 5), nn.Linear(5, 3)
    with torch.no_grad():
        l1.weight.mul_(3.0)          # sharper hidden softmax: the Jacobian matters more
    return l1, l2


def train_flexflow_model(argv, mode, monkeypatch, l1, l2, data):
    monkeypatch.setenv("FLEXFLOW_TORCH_SEMANTICS", mode)
    argv("-b", BATCH)
    ffmodel = FFModel(FFConfig())
    x = ffmodel.create_tensor((BATCH, 6), DataType.DT_FLOAT)
    h = ffmodel.softmax(ffmodel.dense(x, 5, name="fc1"))
    probs = ffmodel.softmax(ffmodel.dense(h, 3, name="fc2"))
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, LR),
                    loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                    metrics=[MetricsType.METRICS_ACCURACY])
    set_params(ffmodel, [("fc1", 0, l1.weight), ("fc1", 1, l1.bias),
                         ("fc2", 0, l2.weight), ("fc2", 1, l2.bias)])
    ffmodel.init_layers()
    first = None
    for x_np, y_np in data:
        x.set_tensor(ffmodel, x_np)
        ffmodel.label_tensor.set_tensor(ffmodel, y_np)
        ffmodel.forward()
        if first is None:
            first = probs.get_tensor(ffmodel)
        ffmodel.zero_gradients()
        ffmodel.backward()
        ffmodel.update()
    weights = [ffmodel.get_layer_by_name(n).get_parameter_by_id(i).get_weights(ffmodel)
               for n in ("fc1", "fc2") for i in (0, 1)]
    return [torch.from_numpy(w) for w in weights], torch.from_numpy(first)


def train_torch(l1, l2, data, hidden_softmax):
    l1, l2 = copy.deepcopy(l1), copy.deepcopy(l2)
    opt = torch.optim.SGD(list(l1.parameters()) + list(l2.parameters()), lr=LR)
    for x_np, y_np in data:
        opt.zero_grad()
        logits = l2(hidden_softmax(l1(torch.from_numpy(x_np))))
        nn.CrossEntropyLoss()(logits, torch.from_numpy(y_np[:, 0]).long()).backward()
        opt.step()
    return [p.detach() for p in (l1.weight, l1.bias, l2.weight, l2.bias)]


def test_internal_softmax_trains_differently(argv, rng, monkeypatch):
    data = _data(rng)
    l1, l2 = _initial(rng)
    ff_weights, ff_first = train_flexflow_model(argv, "flexflow", monkeypatch, l1, l2, data)
    ex_weights, ex_first = train_flexflow_model(argv, "exact", monkeypatch, l1, l2, data)
    # the same forward before any update
    torch.testing.assert_close(ff_first, ex_first)
    # exact mode is PyTorch; flexflow mode is PyTorch with a gradient-copying softmax
    for got, want in zip(ex_weights, train_torch(l1, l2, data, lambda t: torch.softmax(t, -1))):
        torch.testing.assert_close(got, want)
    for got, want in zip(ff_weights, train_torch(l1, l2, data, CopyGradSoftmax.apply)):
        torch.testing.assert_close(got, want)
    # and the two differ well beyond rounding
    assert (ff_weights[0] - ex_weights[0]).abs().max() > 1e-2
    assert (ff_weights[2] - ex_weights[2]).abs().max() > 1e-3


def test_mode_is_read_when_the_model_is_created(argv, monkeypatch):
    monkeypatch.setenv("FLEXFLOW_TORCH_SEMANTICS", "exact")
    exact = FFModel(FFConfig())
    monkeypatch.setenv("FLEXFLOW_TORCH_SEMANTICS", " FlexFlow ")
    flexflow = FFModel(FFConfig())
    monkeypatch.delenv("FLEXFLOW_TORCH_SEMANTICS")
    default = FFModel(FFConfig())
    assert (exact._exact, flexflow._exact, default._exact) == (True, False, False)


def test_unknown_mode_is_a_config_error(argv, monkeypatch):
    monkeypatch.setenv("FLEXFLOW_TORCH_SEMANTICS", "pytorch")
    with pytest.raises(ConfigError, match="flexflow, exact"):
        FFModel(FFConfig())
