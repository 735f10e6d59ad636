"""A FlexFlow native-API MLP on handwritten digits (scikit-learn's bundled 8x8 set).

Written purely against FlexFlow's Python API, like FlexFlow's own
examples/python/native/mnist_mlp.py: only the import line and init_runtime() differ, so the same
script runs on real FlexFlow (`flexflow_python digits_mlp.py -ll:gpu 1 -b 64`)
when the import is `from flexflow.core import *`.

    python examples/native/digits_mlp.py -b 64 -e 10
"""

import numpy as np
from sklearn.datasets import load_digits

from flexflow_torch import init_runtime
from flexflow_torch.core import *  # noqa: F403  (was: from flexflow.core import *)


def load_data():
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32").reshape(-1, 1)
    order = np.random.default_rng(0).permutation(len(x))
    return x[order], y[order]


def top_level_task():
    ffconfig = FFConfig()
    print("Python API batchSize(%d) workersPerNodes(%d) numNodes(%d)"
          % (ffconfig.batch_size, ffconfig.workers_per_node, ffconfig.num_nodes))
    ffmodel = FFModel(ffconfig)

    x_train, y_train = load_data()
    input_tensor = ffmodel.create_tensor([ffconfig.batch_size, 64], DataType.DT_FLOAT)
    t = ffmodel.dense(input_tensor, 128, ActiMode.AC_MODE_RELU, name="fc1")
    t = ffmodel.dense(t, 128, ActiMode.AC_MODE_RELU, name="fc2")
    t = ffmodel.dense(t, 10, name="fc3")
    t = ffmodel.softmax(t)

    ffoptimizer = SGDOptimizer(ffmodel, 0.1)
    ffmodel.optimizer = ffoptimizer
    ffmodel.compile(loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                    metrics=[MetricsType.METRICS_ACCURACY,
                             MetricsType.METRICS_SPARSE_CATEGORICAL_CROSSENTROPY])
    label_tensor = ffmodel.label_tensor

    dataloader_input = ffmodel.create_data_loader(input_tensor, x_train)
    dataloader_label = ffmodel.create_data_loader(label_tensor, y_train)
    num_samples = dataloader_input.num_samples
    ffmodel.init_layers()

    epochs = ffconfig.epochs
    ts_start = ffconfig.get_current_time()
    ffmodel.fit(x=dataloader_input, y=dataloader_label, epochs=epochs)
    ts_end = ffconfig.get_current_time()
    run_time = 1e-6 * (ts_end - ts_start)
    print("epochs %d, ELAPSED TIME = %.4fs, THROUGHPUT = %.2f samples/s\n"
          % (epochs, run_time, num_samples * epochs / run_time))

    perf_metrics = ffmodel.get_perf_metrics()
    accuracy = perf_metrics.get_accuracy()
    print("training accuracy: %.2f%%" % accuracy)
    return accuracy


if __name__ == "__main__":
    print("digits mlp")
    init_runtime()            # init_flexflow_runtime with FlexFlow's keys from the command line
    top_level_task()
