"""What FlexFlow accepts when the operator is added but aborts later raises a typed error
at the call where FlexFlow fails -- compile(), init_layers(), the first forward(), or
the first zero_gradients()/backward() -- and every earlier call succeeds.

Inputs are left as init_layers() zero-fills them: nothing here needs data."""

import pytest

from flexflow_torch.errors import DTypeError, ModelStateError, ShapeError, UnsupportedByFlexFlowError
from flexflow_torch.runtime import (ActiMode, AggrMode, DataType, LossType, MetricsType,
                                    SGDOptimizer)
from .rt_helpers import BATCH, compile_mse

F, I32, I64 = DataType.DT_FLOAT, DataType.DT_INT32, DataType.DT_INT64
CALLS = ["compile", "init_layers", "forward", "backward"]


def _t(m, *shape, dtype=F):
    return m.create_tensor(shape, dtype)


def _ids_tail(m, t):
    """Integer results end in an embedding, so the model output is float."""
    return m.embedding(t, 10, 2, AggrMode.AGGR_MODE_NONE)


def run_stages(ffmodel, build, loss=None):
    """Build, then compile, init_layers, forward, zero_gradients + backward; returns the
    name of the call that raised (and the exception), or (None, None)."""
    build(ffmodel)
    calls = {
        "compile": lambda: compile_mse(ffmodel) if loss is None else ffmodel.compile(
            optimizer=SGDOptimizer(ffmodel), loss_type=loss, metrics=[MetricsType.METRICS_ACCURACY]),
        "init_layers": ffmodel.init_layers,
        "forward": ffmodel.forward,
        "backward": lambda: (ffmodel.zero_gradients(), ffmodel.backward()),
    }
    for name in CALLS:
        try:
            calls[name]()
        except Exception as exc:           # noqa: BLE001 - the test inspects it
            return name, exc
    return None, None


CASES = {
    # compile(): operator creation and parallel tensors
    "batch_norm": (lambda m: m.batch_norm(_t(m, BATCH, 3, 4, 4)), "compile", UnsupportedByFlexFlowError),
    "softmax_axis0": (lambda m: m.softmax(_t(m, BATCH, 3), 0), "compile", UnsupportedByFlexFlowError),
    "softmax_positive_last_axis": (lambda m: m.softmax(_t(m, BATCH, 3), 1), "compile",
                                   UnsupportedByFlexFlowError),
    "softmax_axis1_of_3d": (lambda m: m.softmax(_t(m, BATCH, 3, 4), 1), "compile",
                            UnsupportedByFlexFlowError),
    "softmax_rank1_axis0": (lambda m: m.softmax(_t(m, BATCH), 0), "compile", UnsupportedByFlexFlowError),
    "split_sizes_sum": (lambda m: m.concat(m.split(_t(m, BATCH, 5), [2, 2], 1), 1), "compile", ShapeError),
    "gather_index_shape": (lambda m: m.gather(_t(m, BATCH, 3, 5), _t(m, BATCH, 2, 4, dtype=I32), 1),
                           "compile", ShapeError),
    "gather_index_rank": (lambda m: m.gather(_t(m, BATCH, 3, 5), _t(m, BATCH, 3, dtype=I32), 1),
                          "compile", ShapeError),
    "boolean_tensor": (lambda m: m.multiply(_t(m, BATCH, 3), _t(m, BATCH, 3, dtype=DataType.DT_BOOLEAN)),
                       "compile", DTypeError),
    "two_unused_outputs": (lambda m: (m.relu(_t(m, BATCH, 3)), m.exp(_t(m, BATCH, 3))), "compile",
                           UnsupportedByFlexFlowError),
    "split_as_final_op": (lambda m: m.split(_t(m, BATCH, 4), 2, 1), "compile", ModelStateError),
    # init_layers(): kernel set-up
    "divide": (lambda m: m.divide(_t(m, BATCH, 3), _t(m, BATCH, 3)), "init_layers",
               UnsupportedByFlexFlowError),
    "dense_tanh": (lambda m: m.dense(_t(m, BATCH, 3), 2, ActiMode.AC_MODE_TANH), "init_layers",
                   UnsupportedByFlexFlowError),
    "dense_gelu": (lambda m: m.dense(_t(m, BATCH, 3), 2, ActiMode.AC_MODE_GELU), "init_layers",
                   UnsupportedByFlexFlowError),
    "dense_int32_input": (lambda m: _ids_tail(m, m.dense(_t(m, BATCH, 3, dtype=I32), 2)), "init_layers",
                          DTypeError),
    "add_int64": (lambda m: _ids_tail(m, m.add(_t(m, BATCH, 3, dtype=I64), _t(m, BATCH, 3, dtype=I64))),
                  "init_layers", DTypeError),
    "relu_int64": (lambda m: _ids_tail(m, m.relu(_t(m, BATCH, 3, dtype=I64))), "init_layers", DTypeError),
    "softmax_int64": (lambda m: _ids_tail(m, m.softmax(_t(m, BATCH, 3, dtype=I64))), "init_layers",
                      DTypeError),
    "conv2d_negative_recomputed_padding": (lambda m: m.conv2d(_t(m, BATCH, 1, 10, 10), 2, 2, 2, 5, 5, 0, 0),
                                           "init_layers", UnsupportedByFlexFlowError),
    # the first forward()
    "max_broadcast": (lambda m: m.max(_t(m, BATCH, 3), _t(m, BATCH, 1)), "forward",
                      UnsupportedByFlexFlowError),
    "min_broadcast": (lambda m: m.min(_t(m, BATCH, 1, 3), _t(m, BATCH, 2, 3)), "forward",
                      UnsupportedByFlexFlowError),
    "add_int32": (lambda m: _ids_tail(m, m.add(_t(m, BATCH, 3, dtype=I32), _t(m, BATCH, 3, dtype=I32))),
                  "forward", DTypeError),
    "softmax_int32": (lambda m: _ids_tail(m, m.softmax(_t(m, BATCH, 3, dtype=I32))), "forward", DTypeError),
    "dropout_int32": (lambda m: _ids_tail(m, m.dropout(_t(m, BATCH, 3, dtype=I32), 0.5, 1)), "forward",
                      DTypeError),
    "transpose_int64": (lambda m: _ids_tail(m, m.transpose(_t(m, BATCH, 3, dtype=I64), (1, 0))), "forward",
                        DTypeError),
    "concat_int64": (lambda m: _ids_tail(m, m.concat([_t(m, BATCH, 3, dtype=I64)] * 2, 1)), "forward",
                     DTypeError),
    "gather_int_input": (lambda m: _ids_tail(m, m.gather(_t(m, BATCH, 3, dtype=I32), _t(m, BATCH, 3, dtype=I32),
                                                         1)), "forward", DTypeError),
    "embedding_float_ids": (lambda m: m.embedding(_t(m, BATCH, 3), 10, 4, AggrMode.AGGR_MODE_SUM), "forward",
                            DTypeError),
    "half_input": (lambda m: m.dense(_t(m, BATCH, 3, dtype=DataType.DT_HALF), 2, datatype=F), "forward",
                   DTypeError),
    "layer_norm_no_affine_partitioned": None,     # data parallel: see test_data_parallel.py
    # the first zero_gradients()/backward()
    "layer_norm_no_affine": (lambda m: m.layer_norm(_t(m, BATCH, 3, 32), [0], False), "backward",
                             UnsupportedByFlexFlowError),
    "layer_norm_no_bias": (lambda m: m.layer_norm(_t(m, BATCH, 3, 32), [0], True, 1e-5, False), "backward",
                           UnsupportedByFlexFlowError),
    "rms_norm": (lambda m: m.rms_norm(_t(m, BATCH, 3, 32), 1e-6, 32), "backward", UnsupportedByFlexFlowError),
    "mha_distinct_qkv": (lambda m: m.multihead_attention(_t(m, BATCH, 3, 4), _t(m, BATCH, 3, 4),
                                                         _t(m, BATCH, 3, 4), 4, 2, 2, 2), "backward",
                         UnsupportedByFlexFlowError),
    "mha_cross_k_is_v": (lambda m: (lambda q, kv: m.multihead_attention(q, kv, kv, 4, 2, 2, 2))(
        _t(m, BATCH, 3, 4), _t(m, BATCH, 5, 4)), "backward", UnsupportedByFlexFlowError),
    "multiply_inplace_a": (lambda m: m.multiply(m.identity(_t(m, BATCH, 3)), _t(m, BATCH, 3), inplace_a=True),
                           "backward", UnsupportedByFlexFlowError),
    "batch_matmul_seq_length": (lambda m: m.batch_matmul(_t(m, BATCH, 2, 3), _t(m, BATCH, 3, 2), 1, 1),
                                "backward", UnsupportedByFlexFlowError),
}
CASES = {k: v for k, v in CASES.items() if v is not None}


@pytest.mark.parametrize("name", sorted(CASES))
def test_failure_stage(ffmodel, mode, name):
    build, stage, error = CASES[name]
    failed, exc = run_stages(ffmodel, build)
    assert failed == stage, f"raised at {failed}: {exc!r}"
    assert isinstance(exc, error), repr(exc)


def test_cross_entropy_needs_final_softmax(ffmodel):
    failed, exc = run_stages(ffmodel, lambda m: m.dense(_t(m, BATCH, 3), 4),
                             loss=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY)
    assert failed == "compile" and isinstance(exc, UnsupportedByFlexFlowError)


@pytest.mark.parametrize("name", ["max_broadcast", "add_int32", "embedding_float_ids"])
def test_forward_failures_in_inference_eval(ffmodel, name):
    """Forward-stage failures happen whether or not the model trains."""
    from flexflow_torch.runtime import CompMode
    build, _, error = CASES[name]
    build(ffmodel)
    ffmodel.compile(loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR], comp_mode=CompMode.INFERENCE)
    ffmodel.init_layers()
    with pytest.raises(error):
        ffmodel.forward()


def test_half_input_trains_nowhere_but_infers(ffmodel):
    """A DT_HALF input aborts in its Repartition, which exists only in training."""
    from flexflow_torch.runtime import CompMode
    CASES["half_input"][0](ffmodel)
    ffmodel.compile(loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR], comp_mode=CompMode.INFERENCE)
    ffmodel.init_layers()
    ffmodel.forward()
    assert ffmodel.get_last_layer().get_output_tensor().get_tensor(ffmodel).shape == (BATCH, 2)
