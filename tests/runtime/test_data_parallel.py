"""Data parallelism (-ll:gpu N): every input is repartitioned N ways on axis 0, and each
operator either keeps the partition per shard or aborts (notes/runtime.md §1-§2,
model.cc create_operator_from_layer OP_INPUT:3147-3152). With N > 1:

* ops needing rows of other shards abort -- at compile() (concat/split/gather/reduce on
  axis 0, rms_norm, layer_norm with gamma, rank-2 batch_matmul, axis 0 not divisible),
  at init_layers() (a reshape changing axis 0, a broadcast against a partitioned axis)
  or at the first forward() (layer_norm without gamma);
* get_tensor/get_gradients of a partitioned activation or the label map GPU 0's piece
  only (parallel_tensor.cc get_tensor:703-750): the rest is uninitialised;
* dropout seeds every GPU alike, so its mask repeats per shard (dropout_kernels.cu:60-65);
* the L2 regulariser is added on every GPU before the all-reduce: N * lambda."""

import numpy as np
import pytest
import torch

from flexflow_torch.errors import ShapeError, UnsupportedByFlexFlowError
from flexflow_torch.runtime import (ActiMode, DataType, FFConfig, FFModel, LossType,
                                    MetricsType, SGDOptimizer)
from .rt_helpers import compile_mse, grad, randn, set_params, value
from .test_losses import flexflow_sparse_ce_grad, l2_step
from .test_stages import run_stages

B, F = 8, DataType.DT_FLOAT


@pytest.fixture
def gpus(argv):
    """gpus(n): a fresh FFModel with batch 8 over n GPUs."""
    def make(n):
        argv("-b", B, "-ll:gpu", n)
        return FFModel(FFConfig())
    return make


def _t(m, *shape, dtype=F):
    return m.create_tensor(shape, dtype)


PARTITION = {
    "axis0_not_divisible": (lambda m: m.relu(_t(m, 6, 3)), "compile", ShapeError),
    "constant_axis0_of_1": (lambda m: m.add(_t(m, B, 3), m.create_constant((1, 3), 1.0, F)), "compile",
                            ShapeError),
    "reshape_changes_axis0": (lambda m: m.reshape(_t(m, B, 6), (4, 12)), "init_layers",
                              UnsupportedByFlexFlowError),
    "reshape_unsqueeze_axis0": (lambda m: m.reshape(_t(m, B, 6), (1, B, 6)), "init_layers",
                                UnsupportedByFlexFlowError),
    "concat_axis0": (lambda m: m.concat([_t(m, B, 3), _t(m, B, 3)], 0), "compile", UnsupportedByFlexFlowError),
    "split_axis0": (lambda m: m.concat(m.split(_t(m, B, 3), 2, 0), 1), "compile", UnsupportedByFlexFlowError),
    "gather_dim0": (lambda m: m.gather(_t(m, B, 3), _t(m, B, 3, dtype=DataType.DT_INT32), 0), "compile",
                    UnsupportedByFlexFlowError),
    "reduce_sum_axis0": (lambda m: m.reduce_sum(_t(m, B, 3), [0], True), "compile", UnsupportedByFlexFlowError),
    "layer_norm_affine": (lambda m: m.layer_norm(_t(m, B, 32), [0]), "compile", UnsupportedByFlexFlowError),
    "layer_norm_plain": (lambda m: m.layer_norm(_t(m, B, 32), [0], False), "forward",
                         UnsupportedByFlexFlowError),
    "rms_norm": (lambda m: m.rms_norm(_t(m, B, 32), 1e-6, 32), "compile", UnsupportedByFlexFlowError),
    "batch_matmul_rank2": (lambda m: m.batch_matmul(_t(m, B, B), _t(m, B, 5)), "compile",
                           UnsupportedByFlexFlowError),
    "broadcast_against_partition": (lambda m: m.add(m.transpose(_t(m, B, 1), (1, 0)), _t(m, B, 1)),
                                    "init_layers", UnsupportedByFlexFlowError),
    "partitions_on_different_axes": (lambda m: m.add(m.transpose(_t(m, B, B), (1, 0)), _t(m, B, B)),
                                     "compile", UnsupportedByFlexFlowError),
}
ALLOWED = {
    "reshape_keeps_axis0": lambda m: m.reshape(_t(m, B, 6), (B, 2, 3)),
    "concat_axis1": lambda m: m.concat([_t(m, B, 3), _t(m, B, 2)], 1),
    "split_axis1": lambda m: m.concat(m.split(_t(m, B, 4), 2, 1), 1),
    "gather_dim1": lambda m: m.gather(_t(m, B, 3), _t(m, B, 2, dtype=DataType.DT_INT32), 1),
    "reduce_sum_axis1": lambda m: m.reduce_sum(_t(m, B, 3), [1]),
    "batch_matmul_rank3": lambda m: m.batch_matmul(_t(m, B, 2, 3), _t(m, B, 3, 2)),
    "broadcast_other_axis": lambda m: m.multiply(_t(m, B, 3, 4), _t(m, B, 1, 4)),
    "transpose_then_dense": lambda m: m.dense(m.transpose(_t(m, B, 3, 4), (1, 0, 2)), 2),
}


@pytest.mark.parametrize("name", sorted(PARTITION))
def test_partition_failures(gpus, mode, name):
    build, stage, error = PARTITION[name]
    failed, exc = run_stages(gpus(4), build)
    assert failed == stage, f"raised at {failed}: {exc!r}"
    assert isinstance(exc, error), repr(exc)
    if name != "axis0_not_divisible":       # one GPU gets further (norms still fail in backward)
        failed_on_one, _ = run_stages(gpus(1), build)
        assert failed_on_one in (None, "backward") and failed_on_one != stage


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_partition_allowed(gpus, name):
    assert run_stages(gpus(4), ALLOWED[name]) == (None, None)


def test_nothing_is_partitioned_without_training(gpus, rng):
    """CompMode.INFERENCE: inputs get no Repartition, so no partition rule applies and
    readouts are whole."""
    from flexflow_torch.runtime import CompMode
    m = gpus(4)
    x = _t(m, 6, 3)
    out = m.reduce_sum(m.relu(x), [0], True)
    m.compile(loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
              metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR], comp_mode=CompMode.INFERENCE)
    m.init_layers()
    x_np = randn(rng, 6, 3)
    x.set_tensor(m, x_np)
    m.forward()
    torch.testing.assert_close(value(out, m), torch.relu(torch.from_numpy(x_np)).sum(0, keepdim=True))


# -- readouts and equality with one GPU -----------------------------------------------------
def _mlp_run(gpus, n, rng_seed=5, steps=3):
    rng = np.random.default_rng(rng_seed)
    m = gpus(n)
    x = _t(m, B, 6)
    h = m.dense(x, 5, ActiMode.AC_MODE_RELU, name="fc1")
    tr = m.transpose(m.reshape(h, (B, 5, 1)), (0, 2, 1))
    probs = m.softmax(m.dense(m.reshape(tr, (B, 5)), 3, name="fc2"))
    m.compile(optimizer=SGDOptimizer(m, 0.3), loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
              metrics=[MetricsType.METRICS_ACCURACY])
    set_params(m, [("fc1", 0, torch.from_numpy(randn(rng, 5, 6))),
                   ("fc2", 0, torch.from_numpy(randn(rng, 3, 5)))])
    m.init_layers()
    for _ in range(steps):
        x_np, y_np = randn(rng, B, 6), rng.integers(0, 3, (B, 1)).astype(np.int32)
        x.set_tensor(m, x_np)
        m.label_tensor.set_tensor(m, y_np)
        m.forward()
        m.zero_gradients()
        m.backward()
        m.update()
    m.forward()
    return m, x, h, probs, x_np, y_np


def test_same_program_on_1_and_4_gpus(gpus, mode):
    one = _mlp_run(gpus, 1)
    four = _mlp_run(gpus, 4)
    m1, m4 = one[0], four[0]
    for name in ("fc1", "fc2"):
        for i in (0, 1):
            p1 = m1.get_layer_by_name(name).get_parameter_by_id(i)
            p4 = m4.get_layer_by_name(name).get_parameter_by_id(i)
            torch.testing.assert_close(torch.from_numpy(p4.get_weights(m4)), torch.from_numpy(p1.get_weights(m1)))
            torch.testing.assert_close(grad(p4, m4), grad(p1, m1))
    for t1, t4 in ((one[2], four[2]), (one[3], four[3])):          # activations: rows 0-1 only
        a1, a4 = t1.get_tensor(m1), t4.get_tensor(m4)
        torch.testing.assert_close(torch.from_numpy(a4[:2]), torch.from_numpy(a1[:2]))
        assert np.isnan(a4[2:]).all() and not np.isnan(a1).any()
    assert np.isnan(four[3].get_model_output_tensor(m4)[2:]).all()
    g1, g4 = one[3].get_gradients(m1, None), four[3].get_gradients(m4, None)
    torch.testing.assert_close(torch.from_numpy(g4[:2]), torch.from_numpy(g1[:2]))
    assert np.isnan(g4[2:]).all()
    np.testing.assert_array_equal(four[1].get_tensor(m4), four[4])            # inputs: whole
    label4 = m4.label_tensor.get_tensor(m4)
    np.testing.assert_array_equal(label4[:2], four[5][:2])
    assert (label4[2:] == np.iinfo(np.int32).min).all()


def test_readout_of_a_transposed_activation(gpus, rng):
    """After a transpose moving axis 0, the partition is on axis 1: GPU 0 holds the
    first B/N columns."""
    m = gpus(4)
    x = _t(m, B, 3)
    t = m.transpose(m.identity(x), (1, 0))
    compile_mse(m)
    m.init_layers()
    x_np = randn(rng, B, 3)
    x.set_tensor(m, x_np)
    m.forward()
    got = t.get_tensor(m)
    np.testing.assert_array_equal(got[:, :2], x_np.T[:, :2])
    assert np.isnan(got[:, 2:]).all()


def _dropout_rows(gpus, n, mode, monkeypatch):
    """Dropout's mask per row, recovered from a weight gradient: x = 1, W = 0 and a label
    of -I make the loss gradient 2 I / 64, so dW[o] = dropout(x)[o] / 32."""
    monkeypatch.setenv("FLEXFLOW_TORCH_SEMANTICS", mode)
    m = gpus(n)
    x = _t(m, B, 16)
    m.dense(m.dropout(x, 0.5, 7), B, use_bias=False, name="fc")
    compile_mse(m, SGDOptimizer(m, 0.0))
    set_params(m, [("fc", 0, torch.zeros(B, 16))])
    m.init_layers()
    x.set_tensor(m, np.ones((B, 16), np.float32))
    m.label_tensor.set_tensor(m, -np.eye(B, dtype=np.float32))
    m.forward()
    m.zero_gradients()
    m.backward()
    m.update()
    dw = grad(m.get_layer_by_name("fc").get_weight_tensor(), m)
    kept = dw * 16
    assert set(kept.unique().tolist()) <= {0.0, 1.0}
    return kept


def test_dropout_mask_repeats_per_shard(gpus, monkeypatch):
    kept = _dropout_rows(gpus, 4, "flexflow", monkeypatch)
    for shard in range(1, 4):
        torch.testing.assert_close(kept[2 * shard:2 * shard + 2], kept[:2])
    assert not torch.equal(kept[0], kept[1])
    exact = _dropout_rows(gpus, 4, "exact", monkeypatch)
    assert not torch.equal(exact[:2], exact[2:4])


def test_l2_regularizer_scaled_by_gpu_count(gpus, mode, rng):
    m = gpus(4)
    layer, lin = l2_step(m, rng)
    scale = 4 if mode == "flexflow" else 1
    torch.testing.assert_close(grad(layer.get_weight_tensor(), m),
                               lin.weight.grad + scale * 0.3 * lin.weight.detach())


def test_sparse_ce_3d_per_shard(gpus, rng):
    """Each GPU runs the sparse-CE kernel on its own rows: label[i], i < B/N, of its own
    label piece (loss_functions.cc backward_task_with_dim:134-136)."""
    S, V = 3, 4
    m = gpus(4)
    x = _t(m, B, S, V)
    t = m.identity(x)
    m.softmax(m.dense(t, V, use_bias=False, name="fc"))
    m.compile(optimizer=SGDOptimizer(m, 0.0), loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
              metrics=[MetricsType.METRICS_ACCURACY])
    w = torch.from_numpy(randn(rng, V, V))
    set_params(m, [("fc", 0, w)])
    m.init_layers()
    x_np, y_np = randn(rng, B, S, V), rng.integers(0, V, (B, S, 1)).astype(np.int32)
    x.set_tensor(m, x_np)
    m.label_tensor.set_tensor(m, y_np)
    m.forward()
    m.zero_gradients()
    m.backward()
    m.update()
    xt = torch.from_numpy(x_np)
    p = torch.softmax(xt @ w.T, -1)
    labels = torch.from_numpy(y_np)
    g = torch.cat([flexflow_sparse_ce_grad(p[k:k + 2], labels[k:k + 2], B) for k in range(0, B, 2)])
    expected = torch.einsum("bso,bsi->oi", g, xt)
    torch.testing.assert_close(grad(m.get_layer_by_name("fc").get_weight_tensor(), m), expected)
    whole = torch.einsum("bso,bsi->oi", flexflow_sparse_ce_grad(p, labels, B), xt)
    assert not torch.allclose(expected, whole)
