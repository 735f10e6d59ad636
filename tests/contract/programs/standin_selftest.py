"""Known-bad calls through FlexFlow's own Python package, each of which real FlexFlow
rejects; test_standin_selftest.py checks that every one is caught, so that a contract
run cannot pass because the stand-in accepts anything. Prints one JSON line, then ends
with an uncaught abort (the harness must report the failed run).

    flexflow_python standin_selftest.py -ll:gpu 1 -b 4
"""

import json

import numpy as np

import ffstandin
from flexflow.core import *  # noqa: F403
from flexflow.core.flexflow_cffi import ffc, ffi


def outcome(call):
    try:
        value = call()
    except (Exception, ffstandin.StandinError) as exc:     # aborts are BaseExceptions
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"ok": value}


def model_with_dense():
    ffmodel = FFModel(FFConfig())
    x = ffmodel.create_tensor([4, 3], DataType.DT_FLOAT)
    ffmodel.dense(x, 2, name="fc")
    return ffmodel, x


def valid_training():
    ffmodel, x = model_with_dense()
    ffmodel.softmax(ffmodel.get_layer_by_name("fc").get_output_tensor())
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.1), loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                    metrics=[MetricsType.METRICS_ACCURACY])
    kernel = ffmodel.get_layer_by_name("fc").get_parameter_by_id(0)
    weights = np.arange(6, dtype=np.float32).reshape(2, 3)
    kernel.set_weights(ffmodel, weights)
    loaders = [ffmodel.create_data_loader(x, np.zeros((8, 3), np.float32)),
               ffmodel.create_data_loader(ffmodel.label_tensor, np.zeros((8, 1), np.int32))]
    ffmodel.init_layers()
    ffmodel.fit(x=loaders[0], y=loaders[1], epochs=1)
    return [list(ffmodel.label_tensor.dims), kernel.get_weights(ffmodel).tolist() == weights.tolist()]


def destroyed_handle():
    ffmodel, _ = model_with_dense()
    optimizer = SGDOptimizer(ffmodel, 0.1)
    ffi.release(optimizer._handle)              # FlexFlow's own destructor, run now
    optimizer.set_learning_rate(0.01)


def forged_handle(address):
    handle = ffi.new("flexflow_tensor_t *")
    handle.impl = ffi.cast("void *", address)
    return Tensor(handle[0]).dims


def dims_order():
    ffmodel = FFModel(FFConfig())
    t = ffmodel.create_tensor([4, 5, 6], DataType.DT_FLOAT)
    return [list(t.dims), list(ffc().flexflow_tensor_get_dims(t.handle)[0:3])]


def wrong_argument_type():
    ffmodel, x = model_with_dense()
    ffmodel.dense(x, "10")


def wrong_type_handle():
    ffmodel, _ = model_with_dense()
    return forged_handle(int(ffi.cast("uintptr_t", ffmodel.handle.impl)))


def unknown_enum_in_c():
    ffmodel = FFModel(FFConfig())
    ffc().flexflow_tensor_create(ffmodel.handle, 2, ffi.new("int[]", [4, 3]), 99, True)


def layer_norm_on_first_axis():
    ffmodel = FFModel(FFConfig())
    ffmodel.layer_norm(ffmodel.create_tensor([4, 5, 6], DataType.DT_FLOAT), axes=[2])


def weights_before_compile():
    ffmodel, _ = model_with_dense()
    ffmodel.get_layer_by_name("fc").get_parameter_by_id(0).set_weights(ffmodel, np.zeros((2, 3), np.float32))


def main():
    ffmodel, _ = model_with_dense()
    results = {
        "valid_training": outcome(valid_training),
        "dims_order": outcome(dims_order),
        "wrong_argument_type": outcome(wrong_argument_type),
        "wrong_argument_count": outcome(lambda: ffc().flexflow_config_get_batch_size()),
        "wrong_handle_struct": outcome(lambda: ffc().flexflow_config_get_batch_size(ffmodel.handle)),
        "missing_c_function": outcome(lambda: ffc().flexflow_model_add_layernorm),
        "missing_python_method": outcome(lambda: ffmodel.layernorm),
        "destroyed_handle": outcome(destroyed_handle),
        "unknown_handle": outcome(lambda: forged_handle(0xDEAD0)),
        "wrong_type_handle": outcome(wrong_type_handle),
        "unknown_enum_python": outcome(lambda: FFModel(FFConfig()).create_tensor([4, 3], 99)),
        "unknown_enum_c": outcome(unknown_enum_in_c),
        "assert_false_function": outcome(lambda: ffmodel.get_tensor_by_id(0)),
        "weights_before_compile": outcome(weights_before_compile),
        "builder_assert": outcome(layer_norm_on_first_axis),
    }
    print("SELFTEST " + json.dumps(results), flush=True)
    ffmodel.get_tensor_by_id(0)                    # uncaught: the process must fail


if __name__ == "__main__":
    init_flexflow_runtime()
    main()
