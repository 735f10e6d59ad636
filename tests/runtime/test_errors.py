"""Bad inputs raise typed errors from flexflow_torch.errors: at the operator method for
what FlexFlow rejects there (nothing is recorded), at the loader or setter for bad
arrays, at the first call that needs what is missing. Failures FlexFlow hits later
(compile, init_layers, forward, backward) are in test_stages.py."""

import numpy as np
import pytest

from flexflow_torch.runtime import (ActiMode, AggrMode, DataType, LossType, MetricsType,
                                    ParameterSyncType, SGDOptimizer)
from flexflow_torch.errors import (DataLoaderError, DTypeError, FlexFlowTorchError,
                                   LabelRangeError, ModelStateError, ShapeError,
                                   UnsupportedByFlexFlowError)
from .rt_helpers import BATCH, compile_mse, randn

F = DataType.DT_FLOAT


def _model_with_dense(ffmodel, features=3, out=2):
    x = ffmodel.create_tensor((BATCH, features), F)
    ffmodel.dense(x, out, name="fc")
    return x


def _sparse_model(ffmodel, classes=5, seq=None):
    shape = (BATCH, 3) if seq is None else (BATCH, seq, 3)
    x = ffmodel.create_tensor(shape, F)
    ffmodel.softmax(ffmodel.dense(x, classes))
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.1),
                    loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                    metrics=[MetricsType.METRICS_ACCURACY])
    return x


# -- data loaders ----------------------------------------------------------------------
@pytest.mark.parametrize("array,error", [
    (np.zeros((8, 3), np.float64), DTypeError),
    (np.zeros((8, 3), np.float16), DTypeError),
    (np.zeros((8, 3), np.int32), DTypeError),      # int32 array for a float tensor
    (np.zeros((8, 4), np.float32), ShapeError),    # 4 values per sample, tensor takes 3
    (np.zeros((8, 2, 2), np.float32), ShapeError),
    (np.zeros((BATCH - 1, 3), np.float32), DataLoaderError),
], ids=["float64", "float16", "int32_for_float", "per_sample", "per_sample_3d", "too_few"])
def test_bad_loader_arrays(ffmodel, rng, array, error):
    x = _model_with_dense(ffmodel)
    compile_mse(ffmodel)
    with pytest.raises(error):
        ffmodel.create_data_loader(x, array)
    with pytest.raises(ModelStateError):       # nothing was loaded
        x.get_tensor(ffmodel)


def test_int64_array_for_int32_tensor(ffmodel, rng):
    ids = ffmodel.create_tensor((BATCH, 3), DataType.DT_INT32)
    ffmodel.embedding(ids, 10, 4, AggrMode.AGGR_MODE_SUM)
    compile_mse(ffmodel)
    with pytest.raises(DTypeError, match="int32"):
        ffmodel.create_data_loader(ids, rng.integers(0, 10, (8, 3)).astype(np.int64))


def test_loader_needs_numpy_array(ffmodel):
    x = _model_with_dense(ffmodel)
    compile_mse(ffmodel)
    with pytest.raises(DTypeError):
        ffmodel.create_data_loader(x, [[0.0] * 3] * 8)


@pytest.mark.parametrize("bad", [5, 7, -1, -100], ids=["eq_vocab", "above", "neg1", "neg100"])
def test_labels_out_of_range(ffmodel, rng, bad):
    _sparse_model(ffmodel, classes=5)
    labels = rng.integers(0, 5, (8, 1)).astype(np.int32)
    labels[3, 0] = bad
    with pytest.raises(LabelRangeError, match=r"\[0, 5\)"):
        ffmodel.create_data_loader(ffmodel.label_tensor, labels)


def test_labels_out_of_range_3d(ffmodel, rng):
    _sparse_model(ffmodel, classes=5, seq=4)
    labels = rng.integers(0, 5, (8, 4)).astype(np.int32)
    labels[1, 2] = -100
    with pytest.raises(LabelRangeError):
        ffmodel.create_data_loader(ffmodel.label_tensor, labels)


def test_labels_out_of_range_via_set_tensor_caught_at_backward(ffmodel, rng):
    x = _sparse_model(ffmodel, classes=5)
    ffmodel.init_layers()
    x.set_tensor(ffmodel, randn(rng, BATCH, 3))
    ffmodel.label_tensor.set_tensor(ffmodel, np.full((BATCH, 1), 9, np.int32))
    ffmodel.forward()
    with pytest.raises(LabelRangeError):
        ffmodel.backward()


def test_labels_rechecked_when_the_batch_changes(ffmodel, rng):
    """Labels are range-checked once per label batch: a new batch (set_tensor) or one
    written in place after a passing step is still caught."""
    x = _sparse_model(ffmodel, classes=5)
    ffmodel.init_layers()
    x.set_tensor(ffmodel, randn(rng, BATCH, 3))
    ffmodel.label_tensor.set_tensor(ffmodel, np.full((BATCH, 1), 4, np.int32))
    ffmodel.forward()
    ffmodel.backward()
    ffmodel.label_tensor.set_tensor(ffmodel, np.full((BATCH, 1), 5, np.int32))
    ffmodel.forward()
    with pytest.raises(LabelRangeError):
        ffmodel.backward()
    ffmodel.label_tensor.set_tensor(ffmodel, np.full((BATCH, 1), 4, np.int32))
    ffmodel.forward()
    ffmodel.backward()
    ffmodel._label.value[0, 0] = -1             # written in place: its version changes
    ffmodel.forward()
    with pytest.raises(LabelRangeError):
        ffmodel.backward()


def test_loader_batches_are_not_rechecked_unless_written(ffmodel, rng):
    """A label loader checks all its samples once; its batches then go unchecked, unless
    one is written in place after next_batch (its version changes)."""
    x = _sparse_model(ffmodel, classes=5)
    xl = ffmodel.create_data_loader(x, randn(rng, 2 * BATCH, 3))
    yl = ffmodel.create_data_loader(ffmodel.label_tensor, rng.integers(0, 5, (2 * BATCH, 1)).astype(np.int32))
    ffmodel.init_layers()
    for loader in (xl, yl):
        loader.next_batch(ffmodel)
    ffmodel.forward()
    ffmodel.backward()
    assert ffmodel.get_perf_metrics().total == BATCH
    for loader in (xl, yl):
        loader.next_batch(ffmodel)
    ffmodel._label.value[1, 0] = 7
    ffmodel.forward()
    with pytest.raises(LabelRangeError):
        ffmodel.backward()


def test_empty_metric_list_measures_nothing_but_labels_are_checked(ffmodel, rng):
    """FlexFlow's metric kernels compute each figure under its measure_* flag
    (metrics_functions.cu update_metrics_sparse_label_kernel): with no metric asked for
    nothing is counted. Out-of-range labels are still refused before the loss reads them."""
    x = ffmodel.create_tensor((BATCH, 3), F)
    ffmodel.softmax(ffmodel.dense(x, 5))
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.1),
                    loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, metrics=[])
    ffmodel.init_layers()
    x.set_tensor(ffmodel, randn(rng, BATCH, 3))
    ffmodel.label_tensor.set_tensor(ffmodel, np.full((BATCH, 1), 4, np.int32))
    ffmodel.forward()
    ffmodel.backward()
    perf = ffmodel.get_perf_metrics()
    assert (perf.correct, perf.total, perf.sums) == (0, 0, {})
    ffmodel.label_tensor.set_tensor(ffmodel, np.full((BATCH, 1), 5, np.int32))
    ffmodel.forward()
    with pytest.raises(LabelRangeError):
        ffmodel.backward()


def test_int64_labels_rejected(ffmodel, rng):
    _sparse_model(ffmodel)
    with pytest.raises(DTypeError):
        ffmodel.create_data_loader(ffmodel.label_tensor,
                                   rng.integers(0, 5, (8, 1)).astype(np.int64))


# -- shape problems at graph construction ------------------------------------------
def _t(m, *shape, dtype=F):
    return m.create_tensor(shape, dtype)


SHAPE_ERRORS = {
    "add_unequal_rank": lambda m: m.add(_t(m, BATCH, 3, 4), _t(m, BATCH, 4)),
    "add_incompatible": lambda m: m.add(_t(m, BATCH, 3, 4), _t(m, BATCH, 2, 4)),
    "multiply_incompatible": lambda m: m.multiply(_t(m, BATCH, 3), _t(m, BATCH, 5)),
    "concat_mismatch": lambda m: m.concat([_t(m, BATCH, 3, 4), _t(m, BATCH, 2, 5)], 1),
    "concat_rank": lambda m: m.concat([_t(m, BATCH, 3, 4), _t(m, BATCH, 3)], 1),
    "concat_dtype": lambda m: m.concat([_t(m, BATCH, 3), _t(m, BATCH, 3, dtype=DataType.DT_INT32)], 1),
    "batch_matmul_broadcast": lambda m: m.batch_matmul(_t(m, BATCH, 2, 3, 4), _t(m, BATCH, 1, 4, 5)),
    "batch_matmul_rank": lambda m: m.batch_matmul(_t(m, BATCH, 3, 4), _t(m, 4, 5)),
    "batch_matmul_inner": lambda m: m.batch_matmul(_t(m, BATCH, 3, 4), _t(m, BATCH, 5, 2)),
    "reshape_volume": lambda m: m.reshape(_t(m, BATCH, 6), (BATCH, 4)),
    "reshape_minus_one": lambda m: m.reshape(_t(m, BATCH, 6), (BATCH, -1)),
    "split_int_not_dividing": lambda m: m.split(_t(m, BATCH, 5), 2, 1),
    "split_negative_axis": lambda m: m.split(_t(m, BATCH, 4), 2, -1),
    "transpose_perm": lambda m: m.transpose(_t(m, BATCH, 3, 5), (0, 1)),
    "conv2d_3d_input": lambda m: m.conv2d(_t(m, BATCH, 3, 5), 2, 3, 3, 1, 1, 0, 0),
    "conv2d_kernel_too_big": lambda m: m.conv2d(_t(m, BATCH, 1, 2, 2), 2, 3, 3, 1, 1, 0, 0),
    "conv2d_groups": lambda m: m.conv2d(_t(m, BATCH, 3, 5, 5), 4, 3, 3, 1, 1, 0, 0, groups=2),
    "pool2d_3d_input": lambda m: m.pool2d(_t(m, BATCH, 3, 5), 2, 2, 2, 2, 0, 0),
    "flat_3d_input": lambda m: m.flat(_t(m, BATCH, 3, 5)),
    "rms_norm_dim": lambda m: m.rms_norm(_t(m, BATCH, 3, 6), 1e-6, 3),
    "reduce_sum_axis": lambda m: m.reduce_sum(_t(m, BATCH, 3), [2]),
    "create_tensor_zero_axis": lambda m: m.create_tensor((BATCH, 0), F),
}


@pytest.mark.parametrize("name", sorted(SHAPE_ERRORS))
def test_shape_errors(ffmodel, name):
    with pytest.raises(ShapeError):
        SHAPE_ERRORS[name](ffmodel)
    assert ffmodel.get_layers() == {}          # no operator was recorded


def test_create_tensor_more_than_4d(ffmodel):
    with pytest.raises(UnsupportedByFlexFlowError):
        ffmodel.create_tensor((BATCH, 2, 2, 2, 2), F)


def test_op_output_more_than_4d(ffmodel):
    x = ffmodel.create_tensor((BATCH, 2, 3, 4), DataType.DT_INT32)
    with pytest.raises(UnsupportedByFlexFlowError):
        ffmodel.embedding(x, 10, 4, AggrMode.AGGR_MODE_NONE)


def test_create_tensor_needs_concrete_dtype(ffmodel):
    with pytest.raises(DTypeError):
        ffmodel.create_tensor((BATCH, 3), DataType.DT_NONE)


# -- things FlexFlow rejects when the operator is added -------------------------------
# (what it accepts there but aborts on later: test_stages.py)
REJECTED = {
    "pool2d_activation": lambda m: m.pool2d(_t(m, BATCH, 1, 4, 4), 2, 2, 2, 2, 0, 0,
                                            activation=ActiMode.AC_MODE_RELU),
    "mha_kdim_ne_vdim": lambda m: m.multihead_attention(
        _t(m, BATCH, 3, 4), _t(m, BATCH, 3, 4), _t(m, BATCH, 3, 4), 4, 2, 2, 3),
    "mha_kdim_zero": lambda m: m.multihead_attention(
        _t(m, BATCH, 3, 4), _t(m, BATCH, 3, 4), _t(m, BATCH, 3, 4), 4, 2),
    "add_bias_residual_layer_norm": lambda m: m.add_bias_residual_layer_norm(
        _t(m, BATCH, 4), _t(m, BATCH, 4), [0]),
    "get_output_tensor": lambda m: m.get_output_tensor(m, F),
    "layer_norm_axes_1": lambda m: m.layer_norm(_t(m, BATCH, 3, 4), [1]),
    "layer_norm_numpy_last_axis": lambda m: m.layer_norm(_t(m, BATCH, 3, 4), [2]),
    "mean": lambda m: m.mean(_t(m, BATCH, 3), [1]),
    "reverse": lambda m: m.reverse(_t(m, BATCH, 3), 1),
    "conv2d_sigmoid": lambda m: m.conv2d(_t(m, BATCH, 1, 4, 4), 2, 3, 3, 1, 1, 1, 1,
                                         ActiMode.AC_MODE_SIGMOID),
    "residual_rms_norm": lambda m: m.residual_rms_norm(_t(m, BATCH, 4), _t(m, BATCH, 4), 1e-6, 4),
    "residual_layer_norm": lambda m: m.residual_layer_norm(_t(m, BATCH, 4), _t(m, BATCH, 4),
                                                           None, False, [0]),
    "sigmoid_silu_multi": lambda m: m.sigmoid_silu_multi(_t(m, BATCH, 4), _t(m, BATCH, 4)),
    "inc_multihead_self_attention": lambda m: m.inc_multihead_self_attention(
        _t(m, BATCH, 3, 4), 4, 2),
    "argmax": lambda m: m.argmax(_t(m, BATCH, 4), False),
    "elu_with_name": lambda m: m.elu(_t(m, BATCH, 3), name="e"),
    "map_tensor": lambda m: m.map_tensor(_t(m, BATCH, 3)),
    "mha_add_bias_kv": lambda m: m.multihead_attention(
        _t(m, BATCH, 3, 4), _t(m, BATCH, 3, 4), _t(m, BATCH, 3, 4), 4, 2, 2, 2, add_bias_kv=True),
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_flexflow_rejected(ffmodel, name):
    with pytest.raises(UnsupportedByFlexFlowError):
        REJECTED[name](ffmodel)
    assert ffmodel.get_layers() == {}


@pytest.mark.parametrize("loss,metrics", [
    (LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY, [MetricsType.METRICS_ACCURACY]),
    (LossType.LOSS_CATEGORICAL_CROSSENTROPY, [MetricsType.METRICS_ACCURACY]),
    (LossType.LOSS_MEAN_SQUARED_ERROR_SUM_REDUCE, [MetricsType.METRICS_MEAN_SQUARED_ERROR]),
])
def test_compile_rejects_loss(ffmodel, loss, metrics):
    """CE losses need a final softmax; MSE_SUM_REDUCE aborts in FlexFlow."""
    _model_with_dense(ffmodel)
    with pytest.raises(UnsupportedByFlexFlowError):
        ffmodel.compile(optimizer=SGDOptimizer(ffmodel), loss_type=loss, metrics=metrics)
    with pytest.raises(ModelStateError):
        ffmodel.label_tensor


def test_compile_rejects_categorical_ce_metric_with_sparse_labels(ffmodel):
    x = ffmodel.create_tensor((BATCH, 3), F)
    ffmodel.softmax(ffmodel.dense(x, 4))
    with pytest.raises(UnsupportedByFlexFlowError):
        ffmodel.compile(optimizer=SGDOptimizer(ffmodel),
                        loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                        metrics=[MetricsType.METRICS_CATEGORICAL_CROSSENTROPY])


@pytest.mark.parametrize("kwargs,error", [
    ({"loss_type": None, "metrics": []}, TypeError),
    ({"loss_type": LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE, "metrics": None}, TypeError),
    ({"loss_type": LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE, "metrics": [1001]}, TypeError),
])
def test_compile_argument_types(ffmodel, kwargs, error):
    _model_with_dense(ffmodel)
    with pytest.raises(error):
        ffmodel.compile(**kwargs)


def test_unknown_optimizer(ffmodel):
    _model_with_dense(ffmodel)
    with pytest.raises(ModelStateError):
        ffmodel.optimizer = object()


# -- weights and call order ------------------------------------------------------------
def test_set_weights_before_compile(ffmodel):
    _model_with_dense(ffmodel)
    weight = ffmodel.get_layer_by_name("fc").get_weight_tensor()
    with pytest.raises(ModelStateError):
        weight.set_weights(ffmodel, np.zeros((2, 3), np.float32))
    with pytest.raises(ModelStateError):
        weight.get_weights(ffmodel)


@pytest.mark.parametrize("array,error", [
    (np.zeros((2, 3), np.float64), DTypeError),
    (np.zeros((3, 2), np.float32), ShapeError),
    (np.zeros((6,), np.float32), ShapeError),
    (np.zeros((3, 2), np.float32).T, ShapeError),            # not C-contiguous
], ids=["float64", "transposed_shape", "flat", "fortran"])
def test_set_weights_bad_array(ffmodel, array, error):
    _model_with_dense(ffmodel)
    compile_mse(ffmodel)
    weight = ffmodel.get_layer_by_name("fc").get_weight_tensor()
    before = weight.get_weights(ffmodel)
    with pytest.raises(error):
        weight.set_weights(ffmodel, array)
    np.testing.assert_array_equal(weight.get_weights(ffmodel), before)


@pytest.mark.parametrize("array,error", [
    (np.zeros((BATCH, 3), np.int64), DTypeError),
    (np.zeros((BATCH, 3), np.float64), DTypeError),
    (np.zeros((BATCH, 3), np.int32), DTypeError),
    (np.zeros((BATCH, 4), np.float32), ShapeError),
], ids=["int64", "float64", "int32_into_float", "shape"])
def test_set_tensor_bad_array(ffmodel, array, error):
    x = _model_with_dense(ffmodel)
    compile_mse(ffmodel)
    with pytest.raises(error):
        x.set_tensor(ffmodel, array)


def test_init_layers_before_compile(ffmodel):
    _model_with_dense(ffmodel)
    with pytest.raises(ModelStateError):
        ffmodel.init_layers()


def test_forward_before_init_layers(ffmodel, rng):
    x = _model_with_dense(ffmodel)
    compile_mse(ffmodel)
    x.set_tensor(ffmodel, randn(rng, BATCH, 3))
    with pytest.raises(ModelStateError):
        ffmodel.forward()


def test_input_value_before_init_layers(ffmodel):
    """Inputs have no value until init_layers() zero-fills them (or a loader feeds them)."""
    x = _model_with_dense(ffmodel)
    compile_mse(ffmodel)
    with pytest.raises(ModelStateError):
        x.get_tensor(ffmodel)
    with pytest.raises(ModelStateError):
        ffmodel.label_tensor.get_tensor(ffmodel)


def test_backward_without_forward(ffmodel, rng):
    x = _model_with_dense(ffmodel)
    compile_mse(ffmodel)
    ffmodel.init_layers()
    x.set_tensor(ffmodel, randn(rng, BATCH, 3))
    ffmodel.label_tensor.set_tensor(ffmodel, randn(rng, BATCH, 2))
    with pytest.raises(ModelStateError):
        ffmodel.backward()
    ffmodel.forward()
    ffmodel.backward()
    with pytest.raises(ModelStateError):        # once per forward
        ffmodel.backward()


def test_update_without_optimizer(ffmodel, rng):
    x = _model_with_dense(ffmodel)
    ffmodel.compile(loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR])
    ffmodel.init_layers()
    x.set_tensor(ffmodel, randn(rng, BATCH, 3))
    ffmodel.label_tensor.set_tensor(ffmodel, randn(rng, BATCH, 2))
    ffmodel.forward()
    ffmodel.backward()
    with pytest.raises(ModelStateError):
        ffmodel.update()


def test_layers_after_compile(ffmodel):
    x = _model_with_dense(ffmodel)
    compile_mse(ffmodel)
    with pytest.raises(ModelStateError):
        ffmodel.relu(x)
    with pytest.raises(ModelStateError):
        compile_mse(ffmodel)


def test_activation_value_before_forward(ffmodel):
    x = ffmodel.create_tensor((BATCH, 3), F)
    out = ffmodel.relu(x)
    compile_mse(ffmodel)
    with pytest.raises(ModelStateError):
        out.get_tensor(ffmodel)


def test_loader_exhausted_in_manual_loop(ffmodel, rng):
    x = _model_with_dense(ffmodel)
    compile_mse(ffmodel)
    xl = ffmodel.create_data_loader(x, randn(rng, 2 * BATCH + 1, 3))
    yl = ffmodel.create_data_loader(ffmodel.label_tensor, randn(rng, 2 * BATCH + 1, 2))
    ffmodel.init_layers()
    for _ in range(2):
        xl.next_batch(ffmodel)
        yl.next_batch(ffmodel)
        ffmodel.forward()
        ffmodel.zero_gradients()
        ffmodel.backward()
        ffmodel.update()
    with pytest.raises(DataLoaderError):
        xl.next_batch(ffmodel)
    xl.reset()
    xl.next_batch(ffmodel)                      # reset starts the next pass


def test_loader_tensor_batch_mismatch(ffmodel, rng):
    """A data-loader tensor's dim 0 must equal -b."""
    x = ffmodel.create_tensor((2 * BATCH, 3), F)
    ffmodel.dense(x, 2)
    compile_mse(ffmodel)
    loader = None
    with pytest.raises(ShapeError):
        loader = ffmodel.create_data_loader(x, randn(rng, 4 * BATCH, 3))
    assert loader is None


def test_fit_with_fewer_samples_than_batch(ffmodel, rng):
    x = _model_with_dense(ffmodel)
    compile_mse(ffmodel)
    xl = ffmodel.create_data_loader(x, randn(rng, BATCH, 3))
    yl = ffmodel.create_data_loader(ffmodel.label_tensor, randn(rng, BATCH, 2))
    yl.num_samples = BATCH
    with pytest.raises(DataLoaderError):
        yl.num_samples = BATCH + 1
    ffmodel.init_layers()
    with pytest.raises(DataLoaderError):
        ffmodel.fit(x=xl, y=None)


def test_layer_lookup_errors(ffmodel):
    _model_with_dense(ffmodel)
    with pytest.raises(KeyError):
        ffmodel.get_layer_by_name("nope")
    with pytest.raises(IndexError):
        ffmodel.get_layer_by_id(5)
    with pytest.raises(IndexError):
        ffmodel.get_layer_by_name("fc").get_parameter_by_id(2)


def test_deprecated_and_broken_api(ffmodel):
    _model_with_dense(ffmodel)
    op = ffmodel.get_layer_by_name("fc")
    with pytest.raises(ModelStateError):
        op.init(ffmodel)
    with pytest.raises(ModelStateError):
        op.forward(ffmodel)
    with pytest.raises(UnsupportedByFlexFlowError):
        ffmodel.get_tensor_by_id(0)


def test_every_error_is_a_flexflow_torch_error():
    for cls in (DataLoaderError, DTypeError, LabelRangeError, ModelStateError, ShapeError,
                UnsupportedByFlexFlowError):
        assert issubclass(cls, FlexFlowTorchError)
    assert issubclass(ShapeError, ValueError) and issubclass(DTypeError, TypeError)
    assert issubclass(UnsupportedByFlexFlowError, NotImplementedError)
    assert ParameterSyncType.PS.value == 81


def test_dense_l1_regularizer_rejected_before_recording(ffmodel):
    from flexflow_torch.runtime import RegularizerMode

    class L1:
        type, _lambda = RegularizerMode.REG_MODE_L1, 0.1
    x = ffmodel.create_tensor((BATCH, 3), F)
    with pytest.raises(UnsupportedByFlexFlowError):
        ffmodel.dense(x, 2, kernel_regularizer=L1())
    assert ffmodel.get_layers() == {}


@pytest.mark.parametrize("method", ["fit", "eval"])
def test_input_loader_shorter_than_labels(ffmodel, rng, method):
    """fit/eval run y.num_samples // batch iterations; a shorter input loader is refused
    before the first update rather than running dry mid-epoch."""
    x = _model_with_dense(ffmodel)
    compile_mse(ffmodel)
    xl = ffmodel.create_data_loader(x, randn(rng, 2 * BATCH, 3))
    yl = ffmodel.create_data_loader(ffmodel.label_tensor, randn(rng, 4 * BATCH, 2))
    ffmodel.init_layers()
    weight = ffmodel.get_layer_by_name("fc").get_weight_tensor()
    before = weight.get_weights(ffmodel)
    with pytest.raises(DataLoaderError):
        getattr(ffmodel, method)(x=xl, y=yl)
    np.testing.assert_array_equal(weight.get_weights(ffmodel), before)
    assert ffmodel.get_perf_metrics().get_accuracy() == 0.0


@pytest.mark.parametrize("build", [
    lambda m: m.gather(_t(m, BATCH, 3), _t(m, BATCH, 3), 1),
    lambda m: m.gather(_t(m, BATCH, 3), _t(m, BATCH, 3, dtype=DataType.DT_HALF), 1),
    lambda m: m.create_tensor((BATCH, 3), "DT_FLOAT"),
], ids=["gather_float_index", "gather_half_index", "create_tensor_dtype_name"])
def test_index_dtype_errors(ffmodel, build):
    with pytest.raises(DTypeError):
        build(ffmodel)
    assert ffmodel.get_layers() == {}


def test_embedding_ids_out_of_range_at_forward(ffmodel, rng):
    ids = ffmodel.create_tensor((BATCH, 3), DataType.DT_INT32)
    ffmodel.embedding(ids, 10, 4, AggrMode.AGGR_MODE_SUM)
    compile_mse(ffmodel)
    ffmodel.init_layers()
    ids.set_tensor(ffmodel, np.full((BATCH, 3), 10, np.int32))
    ffmodel.label_tensor.set_tensor(ffmodel, randn(rng, BATCH, 4))
    with pytest.raises(ShapeError):
        ffmodel.forward()


# -- argument ranges -------------------------------------------------------------------
@pytest.mark.parametrize("build", [
    lambda m, x: m.scalar_true_divide(x, 0.0, inplace=False),
    lambda m, x: m.dropout(x, 1.0, 0),
    lambda m, x: m.dropout(x, -0.1, 0),
], ids=["divide_by_zero", "dropout_rate_1", "dropout_rate_negative"])
def test_out_of_range_arguments_raise_argument_error(ffmodel, build):
    from flexflow_torch.errors import ArgumentError
    x = ffmodel.create_tensor((BATCH, 3), F)
    with pytest.raises(ArgumentError):
        build(ffmodel, x)
    assert ffmodel.get_layers() == {}
