"""Training through FlexFlow's API only: end-to-end learning, optimizers against
hand computations of FlexFlow's formulas, fit vs. a manual loop, eval, metrics
(losses: test_losses.py; flexflow vs exact training: test_modes.py)."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from flexflow_torch.runtime import (ActiMode, AdamOptimizer, DataType, FFConfig, FFModel,
                                 LossType, MetricsType, ParameterSyncType, PoolType,
                                 SGDOptimizer)
from .rt_helpers import BATCH, randn

REPO = Path(__file__).resolve().parents[2]
SPARSE = LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY
ACC, SCE = MetricsType.METRICS_ACCURACY, MetricsType.METRICS_SPARSE_CATEGORICAL_CROSSENTROPY
_EPOCH_LINE = re.compile(r"\[Metrics\] epoch (\d+)/\d+: accuracy: ([\d.]+)% \((\d+) / (\d+)\) "
                         r"sparse_categorical_crossentropy: ([\d.]+)")


def _new_model(argv, batch):
    argv("-b", batch)
    ffconfig = FFConfig()
    return ffconfig, FFModel(ffconfig)


def _epoch_metrics(text):
    return [(float(acc), float(sce)) for _, acc, _, _, sce in _EPOCH_LINE.findall(text)]


# -- end-to-end learning ---------------------------------------------------------------
def _blobs(rng, n, classes=3, dim=8):
    centers = rng.standard_normal((classes, dim)).astype(np.float32) * 2.0
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.standard_normal((n, dim)).astype(np.float32) * 0.7
    return x.astype(np.float32), y.reshape(-1, 1).astype(np.int32)


def test_mlp_learns_gaussian_blobs(argv, rng, capsys):
    ffconfig, ffmodel = _new_model(argv, 16)
    x_np, y_np = _blobs(rng, 256)
    x = ffmodel.create_tensor([ffconfig.batch_size, 8], DataType.DT_FLOAT)
    t = ffmodel.dense(x, 16, ActiMode.AC_MODE_RELU)
    t = ffmodel.dense(t, 3)
    ffmodel.softmax(t)
    ffmodel.optimizer = SGDOptimizer(ffmodel, 0.05)
    ffmodel.compile(loss_type=SPARSE, metrics=[ACC, SCE])
    x_loader = ffmodel.create_data_loader(x, x_np)
    y_loader = ffmodel.create_data_loader(ffmodel.label_tensor, y_np)
    ffmodel.init_layers()
    capsys.readouterr()
    ffmodel.fit(x=x_loader, y=y_loader, epochs=6)
    epochs = _epoch_metrics(capsys.readouterr().out)
    assert len(epochs) == 6
    losses = [sce for _, sce in epochs]
    assert losses[-1] < 0.5 * losses[0]
    assert all(b <= a * 1.05 for a, b in zip(losses, losses[1:])), losses
    accuracy = ffmodel.get_perf_metrics().get_accuracy()
    assert accuracy == pytest.approx(epochs[-1][0], abs=1e-4)      # printed with 6 decimals
    assert accuracy > 90.0                        # chance is 33 %
    values = ffmodel.get_perf_metrics().values()
    assert values["sparse_categorical_crossentropy"] == pytest.approx(losses[-1], abs=1e-5)  # 6 decimals


def _quadrant_images(rng, n):
    """8x8 noise images; the class is the quadrant that is bright."""
    y = rng.integers(0, 4, n)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32) * 0.3
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 0, 4 * r:4 * r + 4, 4 * q:4 * q + 4] += 1.0
    return x.astype(np.float32), y.reshape(-1, 1).astype(np.int32)


def test_cnn_learns_bright_quadrant(argv, rng, capsys):
    ffconfig, ffmodel = _new_model(argv, 16)
    x_np, y_np = _quadrant_images(rng, 192)
    x = ffmodel.create_tensor([ffconfig.batch_size, 1, 8, 8], DataType.DT_FLOAT)
    t = ffmodel.conv2d(x, 4, 3, 3, 1, 1, 1, 1, ActiMode.AC_MODE_RELU)
    t = ffmodel.pool2d(t, 2, 2, 2, 2, 0, 0, PoolType.POOL_MAX)
    t = ffmodel.flat(t)
    t = ffmodel.dense(t, 4)
    ffmodel.softmax(t)
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.1, momentum=0.9), loss_type=SPARSE,
                    metrics=[ACC, SCE])
    x_loader = ffmodel.create_data_loader(x, x_np)
    y_loader = ffmodel.create_data_loader(ffmodel.label_tensor, y_np)
    ffmodel.init_layers()
    capsys.readouterr()
    ffmodel.fit(x=x_loader, y=y_loader, epochs=5)
    epochs = _epoch_metrics(capsys.readouterr().out)
    assert len(epochs) == 5
    assert epochs[-1][1] < 0.5 * epochs[0][1]
    assert ffmodel.get_perf_metrics().get_accuracy() > 90.0     # chance is 25 %


@pytest.mark.parametrize("script", ["digits_mlp.py", "digits_cnn.py"])
def test_native_example_scripts(script):
    proc = subprocess.run([sys.executable, str(REPO / "examples/native" / script),
                           "-b", "64", "-e", "3"], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    match = re.search(r"training accuracy: ([\d.]+)%", proc.stdout)
    assert match, proc.stdout[-2000:]
    assert 30.0 < float(match.group(1)) <= 100.0          # 10 classes: chance is 10 %


# -- optimizers --------------------------------------------------------------------------
def _dense_mse_model(argv, optimizer_factory, lin):
    _, ffmodel = _new_model(argv, BATCH)
    x = ffmodel.create_tensor((BATCH, 5), DataType.DT_FLOAT)
    ffmodel.dense(x, 3, name="fc")
    ffmodel.compile(optimizer=optimizer_factory(ffmodel),
                    loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR])
    layer = ffmodel.get_layer_by_name("fc")
    layer.get_weight_tensor().set_weights(ffmodel, lin.weight.detach().numpy().copy())
    layer.get_bias_tensor().set_weights(ffmodel, lin.bias.detach().numpy().copy())
    ffmodel.init_layers()
    return ffmodel, x, layer


def _ff_step(ffmodel, x, x_np, y_np):
    x.set_tensor(ffmodel, x_np)
    ffmodel.label_tensor.set_tensor(ffmodel, y_np)
    ffmodel.forward()
    ffmodel.zero_gradients()
    ffmodel.backward()
    ffmodel.update()


@pytest.mark.parametrize("momentum,nesterov,weight_decay", [
    (0.0, False, 0.0), (0.0, False, 0.01), (0.9, False, 0.0), (0.9, True, 0.0),
    (0.8, True, 0.05)])
def test_sgd_matches_torch(argv, rng, momentum, nesterov, weight_decay):
    """FlexFlow's SGD is PyTorch's formula (dampening 0)."""
    torch.manual_seed(6)
    lin = nn.Linear(5, 3)
    ffmodel, x, layer = _dense_mse_model(
        argv, lambda m: SGDOptimizer(m, 0.1, momentum, nesterov, weight_decay), lin)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=momentum, nesterov=nesterov,
                          weight_decay=weight_decay)
    for _ in range(4):
        x_np, y_np = randn(rng, BATCH, 5), randn(rng, BATCH, 3)
        _ff_step(ffmodel, x, x_np, y_np)
        opt.zero_grad()
        nn.MSELoss()(lin(torch.from_numpy(x_np)), torch.from_numpy(y_np)).backward()
        opt.step()
    torch.testing.assert_close(torch.from_numpy(layer.get_weight_tensor().get_weights(ffmodel)),
                               lin.weight.detach())
    torch.testing.assert_close(torch.from_numpy(layer.get_bias_tensor().get_weights(ffmodel)),
                               lin.bias.detach())


def test_sgd_set_learning_rate(argv, rng):
    torch.manual_seed(7)
    lin = nn.Linear(5, 3)
    optimizers = []

    def make_sgd(m):
        optimizers.append(SGDOptimizer(m, 0.1))
        return optimizers[-1]
    ffmodel, x, layer = _dense_mse_model(argv, make_sgd, lin)
    x_np, y_np = randn(rng, BATCH, 5), randn(rng, BATCH, 3)
    optimizers[0].set_learning_rate(0.0)
    before = layer.get_weight_tensor().get_weights(ffmodel)
    _ff_step(ffmodel, x, x_np, y_np)
    np.testing.assert_array_equal(layer.get_weight_tensor().get_weights(ffmodel), before)
    optimizers[0].set_learning_rate(0.5)
    _ff_step(ffmodel, x, x_np, y_np)
    grad = layer.get_weight_tensor().get_gradients(ffmodel, ParameterSyncType.PS)
    np.testing.assert_allclose(layer.get_weight_tensor().get_weights(ffmodel),
                               before - 0.5 * grad, rtol=1.3e-6, atol=1e-5)


@pytest.mark.parametrize("chunk", [None, 4])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_matches_flexflow_formula(argv, rng, weight_decay, chunk, monkeypatch):
    """FlexFlow's Adam (fact sheet §8): alpha_t = alpha*sqrt(1-b2^t)/(1-b1^t),
    g += wd*w, m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2, w -= alpha_t m/(sqrt(v)+eps).
    `chunk`: the update of large parameters in slices (here 4 elements of the 15)."""
    if chunk is not None:
        from flexflow_torch.runtime import optimizers
        monkeypatch.setattr(optimizers, "CHUNK", chunk)
    alpha, b1, b2, eps = 0.01, 0.9, 0.99, 1e-8
    torch.manual_seed(8)
    lin = nn.Linear(5, 3)
    ffmodel, x, layer = _dense_mse_model(
        argv, lambda m: AdamOptimizer(m, alpha, b1, b2, weight_decay, eps), lin)
    params = [lin.weight, lin.bias]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    b1t = b2t = 1.0
    for _ in range(4):
        x_np, y_np = randn(rng, BATCH, 5), randn(rng, BATCH, 3)
        _ff_step(ffmodel, x, x_np, y_np)
        for p in params:
            p.grad = None
        nn.MSELoss()(lin(torch.from_numpy(x_np)), torch.from_numpy(y_np)).backward()
        b1t, b2t = b1t * b1, b2t * b2
        alpha_t = alpha * math.sqrt(1 - b2t) / (1 - b1t)
        with torch.no_grad():
            for i, p in enumerate(params):
                g = p.grad + weight_decay * p
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g * g
                p -= alpha_t * m[i] / (v[i].sqrt() + eps)
    torch.testing.assert_close(torch.from_numpy(layer.get_weight_tensor().get_weights(ffmodel)),
                               lin.weight.detach())
    torch.testing.assert_close(torch.from_numpy(layer.get_bias_tensor().get_weights(ffmodel)),
                               lin.bias.detach())


# -- loops -------------------------------------------------------------------------------
def _classifier(argv, weights=None):
    _, ffmodel = _new_model(argv, BATCH)
    x = ffmodel.create_tensor((BATCH, 6), DataType.DT_FLOAT)
    ffmodel.softmax(ffmodel.dense(x, 3, name="fc"))
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.2, momentum=0.5), loss_type=SPARSE,
                    metrics=[ACC, SCE])
    layer = ffmodel.get_layer_by_name("fc")
    if weights is not None:
        layer.get_weight_tensor().set_weights(ffmodel, weights[0])
        layer.get_bias_tensor().set_weights(ffmodel, weights[1])
    return ffmodel, x, layer


def test_manual_loop_equals_fit(argv, rng):
    x_np = randn(rng, 3 * BATCH + 2, 6)               # 2 leftover samples are dropped
    y_np = rng.integers(0, 3, (3 * BATCH + 2, 1)).astype(np.int32)
    w = (randn(rng, 3, 6), randn(rng, 3))

    fit_model, fx, flayer = _classifier(argv, w)
    fxl = fit_model.create_data_loader(fx, x_np)
    fyl = fit_model.create_data_loader(fit_model.label_tensor, y_np)
    fit_model.init_layers()
    fit_model.fit(x=fxl, y=fyl, epochs=2)

    man_model, mx, mlayer = _classifier(argv, w)
    mxl = man_model.create_data_loader(mx, x_np)
    myl = man_model.create_data_loader(man_model.label_tensor, y_np)
    man_model.init_layers()
    for _ in range(2):
        mxl.reset()
        myl.reset()
        man_model.reset_metrics()
        for _ in range(myl.num_samples // BATCH):
            mxl.next_batch(man_model)
            myl.next_batch(man_model)
            man_model.forward()
            man_model.zero_gradients()
            man_model.backward()
            man_model.update()
    for getter in ("get_weight_tensor", "get_bias_tensor"):
        torch.testing.assert_close(
            torch.from_numpy(getattr(mlayer, getter)().get_weights(man_model)),
            torch.from_numpy(getattr(flayer, getter)().get_weights(fit_model)))
    assert man_model.get_perf_metrics().values() == pytest.approx(
        fit_model.get_perf_metrics().values())
    assert man_model.get_perf_metrics().get_accuracy() == fit_model.get_perf_metrics().get_accuracy()
    # and both are PyTorch: Linear, mean cross-entropy (FlexFlow scales by 1 / batch), SGD
    lin = nn.Linear(6, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w[0]))
        lin.bias.copy_(torch.from_numpy(w[1]))
    opt = torch.optim.SGD(lin.parameters(), lr=0.2, momentum=0.5)
    for _ in range(2):
        for k in range(0, 3 * BATCH, BATCH):
            opt.zero_grad()
            nn.CrossEntropyLoss()(lin(torch.from_numpy(x_np[k:k + BATCH])),
                                  torch.from_numpy(y_np[k:k + BATCH, 0]).long()).backward()
            opt.step()
    torch.testing.assert_close(torch.from_numpy(flayer.get_weight_tensor().get_weights(fit_model)),
                               lin.weight.detach())
    torch.testing.assert_close(torch.from_numpy(flayer.get_bias_tensor().get_weights(fit_model)),
                               lin.bias.detach())


def test_fit_accepts_list_of_loaders(argv, rng):
    ffmodel, x, _ = _classifier(argv)
    xl = ffmodel.create_data_loader(x, randn(rng, 2 * BATCH, 6))
    yl = ffmodel.create_data_loader(ffmodel.label_tensor,
                                    rng.integers(0, 3, (2 * BATCH, 1)).astype(np.int32))
    ffmodel.init_layers()
    loaders = [xl]
    ffmodel.fit(x=loaders, y=yl, epochs=1)
    assert ffmodel.get_perf_metrics().get_accuracy() >= 0.0


def test_eval_does_not_change_weights_and_measures(argv, rng):
    x_np = randn(rng, 3 * BATCH, 6)
    y_np = rng.integers(0, 3, (3 * BATCH, 1)).astype(np.int32)
    ffmodel, x, layer = _classifier(argv)
    xl = ffmodel.create_data_loader(x, x_np)
    yl = ffmodel.create_data_loader(ffmodel.label_tensor, y_np)
    ffmodel.init_layers()
    ffmodel.fit(x=xl, y=yl, epochs=1)
    w = layer.get_weight_tensor().get_weights(ffmodel)
    b = layer.get_bias_tensor().get_weights(ffmodel)
    ffmodel.eval(x=xl, y=yl)
    np.testing.assert_array_equal(layer.get_weight_tensor().get_weights(ffmodel), w)
    np.testing.assert_array_equal(layer.get_bias_tensor().get_weights(ffmodel), b)
    probs = torch.softmax(torch.from_numpy(x_np) @ torch.from_numpy(w).T + torch.from_numpy(b), -1)
    labels = torch.from_numpy(y_np[:, 0]).long()
    expected_acc = 100.0 * float((probs.argmax(-1) == labels).float().mean())
    assert ffmodel.get_perf_metrics().get_accuracy() == pytest.approx(expected_acc)
    expected_sce = float(nn.NLLLoss()(torch.log(probs), labels))
    assert ffmodel.get_perf_metrics().values()["sparse_categorical_crossentropy"] == \
        pytest.approx(expected_sce, rel=1e-5)       # a float32 reference of a float64 sum


# -- metrics -------------------------------------------------------------------------------
def test_perf_metrics_are_snapshots(argv, rng):
    """get_perf_metrics() returns a copy (FlexFlow's C API news a PerfMetrics), so the
    per-epoch values can be collected across fit calls."""
    ffconfig, ffmodel = _new_model(argv, 16)
    x_np, y_np = _blobs(rng, 128)
    x = ffmodel.create_tensor([ffconfig.batch_size, 8], DataType.DT_FLOAT)
    ffmodel.softmax(ffmodel.dense(x, 3))
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.05), loss_type=SPARSE, metrics=[ACC, SCE])
    x_loader = ffmodel.create_data_loader(x, x_np)
    y_loader = ffmodel.create_data_loader(ffmodel.label_tensor, y_np)
    ffmodel.init_layers()
    history = []
    for _ in range(4):
        ffmodel.fit(x=x_loader, y=y_loader, epochs=1)
        history.append(ffmodel.get_perf_metrics())
    losses = [p.values()["sparse_categorical_crossentropy"] for p in history]
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0]
    assert history[0].get_accuracy() < history[-1].get_accuracy()


def test_inference_mode(argv, rng):
    """CompMode.INFERENCE: forward and eval work, backward and fit are refused."""
    from flexflow_torch.runtime import CompMode
    from flexflow_torch.errors import ModelStateError
    ffconfig, ffmodel = _new_model(argv, BATCH)
    x = ffmodel.create_tensor((BATCH, 6), DataType.DT_FLOAT)
    probs = ffmodel.softmax(ffmodel.dense(x, 3, name="fc"))
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel), loss_type=SPARSE, metrics=[ACC, SCE],
                    comp_mode=CompMode.INFERENCE)
    x_np = randn(rng, 2 * BATCH, 6)
    y_np = rng.integers(0, 3, (2 * BATCH, 1)).astype(np.int32)
    xl = ffmodel.create_data_loader(x, x_np)
    yl = ffmodel.create_data_loader(ffmodel.label_tensor, y_np)
    ffmodel.init_layers()
    layer = ffmodel.get_layer_by_name("fc")
    w = layer.get_weight_tensor().get_weights(ffmodel)
    b = layer.get_bias_tensor().get_weights(ffmodel)
    ffmodel.eval(x=xl, y=yl)
    expected = torch.softmax(torch.from_numpy(x_np[BATCH:] @ w.T + b), -1)
    torch.testing.assert_close(torch.from_numpy(probs.get_tensor(ffmodel)), expected)
    with pytest.raises(ModelStateError):
        ffmodel.backward()
    with pytest.raises(ModelStateError):
        ffmodel.fit(x=xl, y=yl)


def _sgd_reference(w, lr, momentum, wd, steps):
    v = None
    for _ in range(steps):
        g = wd * w                                    # zero gradient + weight decay
        v = g if v is None else momentum * v + g
        w = w - lr * (v if momentum else g)
    return w


def _adam_reference(w, alpha, b1, b2, wd, eps, steps):
    m = v = np.zeros_like(w)
    b1t = b2t = 1.0
    for _ in range(steps):
        b1t, b2t = b1t * b1, b2t * b2
        alpha_t = alpha * math.sqrt(1 - b2t) / (1 - b1t)
        g = wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - alpha_t * m / (np.sqrt(v) + eps)
    return w


@pytest.mark.parametrize("make_opt,reference", [
    (lambda m: SGDOptimizer(m, 0.1, weight_decay=0.5),
     lambda w: _sgd_reference(w, 0.1, 0.0, 0.5, 2)),
    (lambda m: SGDOptimizer(m, 0.1, momentum=0.9, weight_decay=0.5),
     lambda w: _sgd_reference(w, 0.1, 0.9, 0.5, 2)),
    (lambda m: AdamOptimizer(m, 0.01, weight_decay=0.5),
     lambda w: _adam_reference(w, 0.01, 0.9, 0.999, 0.5, 1e-8, 2)),
], ids=["sgd_wd", "sgd_momentum_wd", "adam_wd"])
def test_update_covers_parameters_without_gradient_flow(argv, rng, make_opt, reference):
    """FlexFlow's update() steps every parameter, with a zero gradient where nothing
    flowed (weight decay and momentum still act): a hand computation with g = 0. The
    dense "dangling" feeds a multiply by a constant, which holds zeros."""
    _, ffmodel = _new_model(argv, BATCH)
    x = ffmodel.create_tensor((BATCH, 3), DataType.DT_FLOAT)
    zero = ffmodel.create_constant((BATCH, 2), 1.0, DataType.DT_FLOAT)
    dangling = ffmodel.multiply(ffmodel.dense(x, 2, use_bias=False, name="dangling"), zero)
    ffmodel.add(ffmodel.dense(x, 2, name="fc"), dangling)
    ffmodel.compile(optimizer=make_opt(ffmodel),
                    loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR])
    weight = ffmodel.get_layer_by_name("dangling").get_weight_tensor()
    w0 = randn(rng, 2, 3)
    weight.set_weights(ffmodel, w0)
    ffmodel.init_layers()
    x.set_tensor(ffmodel, randn(rng, BATCH, 3))
    ffmodel.label_tensor.set_tensor(ffmodel, randn(rng, BATCH, 2))
    for _ in range(2):
        ffmodel.forward()
        ffmodel.zero_gradients()
        ffmodel.backward()
        ffmodel.update()
    np.testing.assert_array_equal(weight.get_gradients(ffmodel, ParameterSyncType.PS),
                                  np.zeros((2, 3), np.float32))
    torch.testing.assert_close(torch.from_numpy(weight.get_weights(ffmodel)),
                               torch.from_numpy(reference(w0.astype(np.float64)).astype(np.float32)))
