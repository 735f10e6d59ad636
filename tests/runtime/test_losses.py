"""Loss gradients, metrics and the L2 regulariser, in both semantics modes.

FlexFlow's loss backward overwrites the final output's gradient
(loss_functions.cu:40,49,57): sparse CE copies p and subtracts 1 at label[i] for the
num_samples = axis-0 rows of the output, taking every other axis as one class axis
(loss_functions.cc backward_task_with_dim:134-136); CE writes p - y, MSE-avg
logit - label, identity 1, each scaled (2 / volume for MSE, else 1 / batch size)."""

import numpy as np
import pytest
import torch
from torch import nn

from flexflow_torch.runtime import (DataType, LossType, MetricsType, RegularizerMode,
                                    SGDOptimizer)
from .rt_helpers import BATCH, grad, randn, set_params, value

SPARSE = LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY
ACC, SCE = MetricsType.METRICS_ACCURACY, MetricsType.METRICS_SPARSE_CATEGORICAL_CROSSENTROPY


def metric(perf, name):
    """A reported metric as a float32 tensor (it is accumulated from float32 values)."""
    return torch.tensor(perf.values()[name], dtype=torch.float32)


def flexflow_sparse_ce_grad(p, labels, batch=BATCH):
    """loss_functions.cu sparse_categorical_crossentropy_loss_backward: rows = axis 0,
    num_classes = volume / rows, logit_grad[i * num_classes + label[i]] -= 1 for i < rows,
    label read flat; then scale_kernel multiplies by scale_factor = 1.0f / batchSize."""
    rows = p.reshape(p.shape[0], -1).clone()
    flat = labels.reshape(-1)[:p.shape[0]].long()
    rows[torch.arange(p.shape[0]), flat] -= 1.0
    return rows.reshape(p.shape) * torch.tensor(1.0 / batch, dtype=torch.float32)


def exact_sparse_ce_grad(p, labels):
    """d(sum of -log p[label] over every position) / B with respect to the logits."""
    onehot = torch.nn.functional.one_hot(labels.reshape(p.shape[:-1]).long(), p.shape[-1])
    return (p - onehot) / BATCH


def test_sparse_ce_3d_output(ffmodel, mode, rng):
    """Output (B, S, V), labels (B, S, 1). flexflow: only label[0..B-1] (read flat) are
    subtracted, one per row of S*V; exact: one per position. Metrics count every
    position in both."""
    S, F_, V = 3, 4, 5
    torch.manual_seed(9)
    lin = nn.Linear(F_, V)
    x = ffmodel.create_tensor((BATCH, S, F_), DataType.DT_FLOAT)
    logits = ffmodel.dense(x, V, name="fc")
    probs = ffmodel.softmax(logits)
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.1), loss_type=SPARSE, metrics=[ACC, SCE])
    assert ffmodel.label_tensor.dims == (BATCH, S, 1)
    assert ffmodel.label_tensor.data_type == DataType.DT_INT32
    set_params(ffmodel, [("fc", 0, lin.weight), ("fc", 1, lin.bias)])
    x_np = randn(rng, BATCH, S, F_)
    y_np = rng.integers(0, V, (BATCH, S)).astype(np.int32)     # (N, S) feeds (B, S, 1)
    xl = ffmodel.create_data_loader(x, x_np)
    yl = ffmodel.create_data_loader(ffmodel.label_tensor, y_np)
    ffmodel.init_layers()
    xl.next_batch(ffmodel)
    yl.next_batch(ffmodel)
    ffmodel.forward()
    ffmodel.zero_gradients()
    ffmodel.backward()

    t_logits = lin(torch.from_numpy(x_np))
    p = torch.softmax(t_logits, -1).detach()
    labels = torch.from_numpy(y_np)
    g = (flexflow_sparse_ce_grad if mode == "flexflow" else exact_sparse_ce_grad)(p, labels)
    t_logits.backward(g)
    torch.testing.assert_close(value(probs, ffmodel), p)
    torch.testing.assert_close(grad(probs, ffmodel), g)
    torch.testing.assert_close(grad(logits, ffmodel), g)        # final softmax + CE: p - y
    layer = ffmodel.get_layer_by_name("fc")
    torch.testing.assert_close(grad(layer.get_weight_tensor(), ffmodel), lin.weight.grad)
    torch.testing.assert_close(grad(layer.get_bias_tensor(), ffmodel), lin.bias.grad)
    if mode == "flexflow":      # the quirk is visible: positions 1.. of each row get no -1
        assert torch.all(g[:, 1:].reshape(-1) >= 0)
    mean_ce = nn.CrossEntropyLoss()(t_logits.reshape(-1, V), labels.reshape(-1).long())
    perf = ffmodel.get_perf_metrics()
    torch.testing.assert_close(metric(perf, "sparse_categorical_crossentropy"), mean_ce.detach())
    expected_acc = 100.0 * float((t_logits.argmax(-1) == labels).float().mean())
    assert perf.get_accuracy() == pytest.approx(expected_acc)


def test_sparse_ce_2d_output(ffmodel, mode, rng):
    """A 2-D (samples, classes) output: both modes write (p - onehot) / B."""
    x = ffmodel.create_tensor((BATCH, 5), DataType.DT_FLOAT)
    t = ffmodel.identity(x)
    out = ffmodel.softmax(t)
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel), loss_type=SPARSE, metrics=[ACC])
    ffmodel.init_layers()
    x_np, y_np = randn(rng, BATCH, 5), rng.integers(0, 5, (BATCH, 1)).astype(np.int32)
    x.set_tensor(ffmodel, x_np)
    ffmodel.label_tensor.set_tensor(ffmodel, y_np)
    ffmodel.forward()
    ffmodel.zero_gradients()
    ffmodel.backward()
    p = torch.softmax(torch.from_numpy(x_np), -1)
    expected = (p - torch.eye(5)[torch.from_numpy(y_np[:, 0]).long()]) / BATCH
    torch.testing.assert_close(grad(out, ffmodel), expected)
    torch.testing.assert_close(grad(t, ffmodel), expected)


def test_sparse_ce_gradient_is_flexflows_to_the_bit(argv, rng):
    """With 6 samples 1/6 is inexact: FlexFlow multiplies p - 1 by the float 1.0f / 6
    (cuda_helper.cu scale_kernel), which can differ in the last bit from dividing by 6.
    The seeded gradient equals the kernel's formula exactly."""
    from flexflow_torch.runtime import FFConfig, FFModel
    argv("-b", 6)
    ffmodel = FFModel(FFConfig())
    x = ffmodel.create_tensor((6, 7), DataType.DT_FLOAT)
    out = ffmodel.softmax(ffmodel.identity(x))
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel), loss_type=SPARSE, metrics=[ACC])
    ffmodel.init_layers()
    x_np, y_np = randn(rng, 6, 7), rng.integers(0, 7, (6, 1)).astype(np.int32)
    x.set_tensor(ffmodel, x_np)
    ffmodel.label_tensor.set_tensor(ffmodel, y_np)
    ffmodel.forward()
    ffmodel.zero_gradients()
    ffmodel.backward()
    p = torch.softmax(torch.from_numpy(x_np), -1)
    expected = flexflow_sparse_ce_grad(p, torch.from_numpy(y_np), batch=6)
    unscaled = flexflow_sparse_ce_grad(p, torch.from_numpy(y_np), batch=1)
    assert not torch.equal(unscaled / 6, expected)       # the data tells the two roundings apart
    torch.testing.assert_close(torch.from_numpy(out.get_model_output_gradients(ffmodel, None)), expected,
                               rtol=0, atol=0)


@pytest.mark.parametrize("loss_type", [LossType.LOSS_CATEGORICAL_CROSSENTROPY, LossType.LOSS_IDENTITY])
def test_dense_label_losses(ffmodel, mode, rng, loss_type):
    """CE writes (p - y) / B into the final output, LOSS_IDENTITY 1 / B. Below the final
    softmax: flexflow copies it; exact gives CE's logit gradient p - y and, for the
    identity loss, the softmax Jacobian times a constant vector, i.e. 0."""
    x = ffmodel.create_tensor((BATCH, 5), DataType.DT_FLOAT)
    t = ffmodel.identity(x)
    out = ffmodel.softmax(t)
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel), loss_type=loss_type,
                    metrics=[MetricsType.METRICS_ACCURACY])
    assert ffmodel.label_tensor.dims == (BATCH, 5)
    ffmodel.init_layers()
    x_np = randn(rng, BATCH, 5)
    onehot = np.eye(5, dtype=np.float32)[rng.integers(0, 5, BATCH)]
    x.set_tensor(ffmodel, x_np)
    ffmodel.label_tensor.set_tensor(ffmodel, onehot)
    ffmodel.forward()
    ffmodel.zero_gradients()
    ffmodel.backward()
    p = torch.softmax(torch.from_numpy(x_np), -1)
    if loss_type == LossType.LOSS_CATEGORICAL_CROSSENTROPY:
        seeded = below = (p - torch.from_numpy(onehot)) / BATCH
    else:
        seeded = torch.full_like(p, 1.0 / BATCH)
        below = seeded if mode == "flexflow" else torch.zeros_like(p)
    torch.testing.assert_close(torch.from_numpy(out.get_model_output_gradients(ffmodel, None)), seeded)
    torch.testing.assert_close(grad(t, ffmodel), below)
    acc = 100.0 * float((p.argmax(-1) == torch.from_numpy(onehot).argmax(-1)).float().mean())
    assert ffmodel.get_perf_metrics().get_accuracy() == pytest.approx(acc)


def test_mse_metrics_values(ffmodel, rng):
    """METRICS_MEAN_SQUARED_ERROR: per-sample sum of squared errors, averaged."""
    x = ffmodel.create_tensor((BATCH, 5), DataType.DT_FLOAT)
    ffmodel.identity(x)
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel),
                    loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR,
                             MetricsType.METRICS_ROOT_MEAN_SQUARED_ERROR,
                             MetricsType.METRICS_MEAN_ABSOLUTE_ERROR])
    ffmodel.init_layers()
    x_np, y_np = randn(rng, BATCH, 5), randn(rng, BATCH, 5)
    x.set_tensor(ffmodel, x_np)
    ffmodel.label_tensor.set_tensor(ffmodel, y_np)
    ffmodel.forward()
    ffmodel.compute_metrics()
    d = torch.from_numpy(x_np - y_np)
    perf = ffmodel.get_perf_metrics()
    torch.testing.assert_close(metric(perf, "mean_squared_error"), (d ** 2).sum(-1).mean())
    torch.testing.assert_close(metric(perf, "root_mean_squared_error"), (d ** 2).sum(-1).sqrt().mean())
    torch.testing.assert_close(metric(perf, "mean_absolute_error"), d.abs().sum(-1).mean())
    ffmodel.reset_metrics()
    assert ffmodel.get_perf_metrics().get_accuracy() == 0.0


class L2:
    """What FlexFlow's dense reads from a kernel_regularizer (keras.regularizers.L2)."""

    def __init__(self, lam, mode=RegularizerMode.REG_MODE_L2):
        self.type, self._lambda = mode, lam


def l2_step(ffmodel, rng, lam=0.3):
    """One MSE step of dense(5 -> 3, L2 lam); returns the layer and the torch reference
    gradients (without the regulariser)."""
    torch.manual_seed(10)
    lin = nn.Linear(5, 3)
    batch = ffmodel._ffconfig.batch_size
    x = ffmodel.create_tensor((batch, 5), DataType.DT_FLOAT)
    ffmodel.dense(x, 3, kernel_regularizer=L2(lam), name="fc")
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.0),
                    loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR])
    set_params(ffmodel, [("fc", 0, lin.weight), ("fc", 1, lin.bias)])
    ffmodel.init_layers()
    x_np, y_np = randn(rng, batch, 5), randn(rng, batch, 3)
    x.set_tensor(ffmodel, x_np)
    ffmodel.label_tensor.set_tensor(ffmodel, y_np)
    ffmodel.forward()
    ffmodel.zero_gradients()
    ffmodel.backward()
    ffmodel.update()            # lr 0: after the all-reduce, nothing moves
    nn.MSELoss()(lin(torch.from_numpy(x_np)), torch.from_numpy(y_np)).backward()
    return ffmodel.get_layer_by_name("fc"), lin


def test_dense_l2_kernel_regularizer(ffmodel, mode, rng):
    """L2 adds lambda * W to the kernel gradient (not to the bias)
    (linear_kernels.cu backward_kernel:691-709)."""
    layer, lin = l2_step(ffmodel, rng)
    torch.testing.assert_close(grad(layer.get_weight_tensor(), ffmodel),
                               lin.weight.grad + 0.3 * lin.weight.detach())
    torch.testing.assert_close(grad(layer.get_bias_tensor(), ffmodel), lin.bias.grad)


def test_sparse_metrics_over_many_batches_match_the_kernel_formula(ffmodel, rng):
    """Sparse-label metrics are counted in batches of waiting predictions (PerfMetrics.
    defer): over 70 batches (past one flush of 64, and a read in between) accuracy and
    sparse cross-entropy equal FlexFlow's kernel formula (metrics_functions.cu
    update_metrics_sparse_label_kernel: argmax == label; -log(max(p[label], 1e-8)))
    over every batch's output."""
    x = ffmodel.create_tensor((BATCH, 5), DataType.DT_FLOAT)
    ffmodel.softmax(ffmodel.dense(x, 4))
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.0), loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                    metrics=[MetricsType.METRICS_ACCURACY, MetricsType.METRICS_SPARSE_CATEGORICAL_CROSSENTROPY])
    ffmodel.init_layers()
    correct = total = 0
    ce = 0.0
    for step in range(70):
        x.set_tensor(ffmodel, randn(rng, BATCH, 5))
        y = rng.integers(0, 4, (BATCH, 1)).astype(np.int32)
        ffmodel.label_tensor.set_tensor(ffmodel, y)
        ffmodel.forward()
        ffmodel.backward()
        p = torch.from_numpy(ffmodel.get_layers()[1].get_output_tensor().get_tensor(ffmodel))
        labels = torch.from_numpy(y).long().reshape(-1)
        correct += int((p.argmax(-1) == labels).sum())
        total += BATCH
        ce += float(-torch.log(p.gather(1, labels.unsqueeze(1)).clamp_min(1e-8)).sum())
        if step == 10:
            assert ffmodel.get_perf_metrics().get_accuracy() == pytest.approx(100.0 * correct / total)
    perf = ffmodel.get_perf_metrics()
    assert (perf.correct, perf.total) == (correct, total)
    assert metric(perf, "sparse_categorical_crossentropy") == pytest.approx(ce / total, rel=1e-6)
