"""A FlexFlow native-API CNN on handwritten digits (scikit-learn's bundled 8x8 set).

Only the import line (`from flexflow.core import *` on real FlexFlow) and
`init_runtime()` (FlexFlow's init_flexflow_runtime with its required keys taken from
the command line) differ from a FlexFlow script; run it here with
`python examples/native/digits_cnn.py -b 64 -e 10`.
"""

import numpy as np
from sklearn.datasets import load_digits

from flexflow_torch import init_runtime
from flexflow_torch.core import *  # noqa: F403  (was: from flexflow.core import *)


def load_data():
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32").reshape(-1, 1, 8, 8)
    y = digits.target.astype("int32").reshape(-1, 1)
    order = np.random.default_rng(0).permutation(len(x))
    return x[order], y[order]


def top_level_task():
    ffconfig = FFConfig()
    print("Python API batchSize(%d) workersPerNodes(%d) numNodes(%d)"
          % (ffconfig.batch_size, ffconfig.workers_per_node, ffconfig.num_nodes))
    ffmodel = FFModel(ffconfig)

    x_train, y_train = load_data()
    input_tensor = ffmodel.create_tensor([ffconfig.batch_size, 1, 8, 8], DataType.DT_FLOAT)
    t = ffmodel.conv2d(input_tensor, 16, 3, 3, 1, 1, 1, 1, ActiMode.AC_MODE_RELU, name="conv1")
    t = ffmodel.conv2d(t, 32, 3, 3, 1, 1, 1, 1, ActiMode.AC_MODE_RELU, name="conv2")
    t = ffmodel.pool2d(t, 2, 2, 2, 2, 0, 0, name="pool")
    t = ffmodel.flat(t)
    t = ffmodel.dense(t, 64, ActiMode.AC_MODE_RELU, name="fc1")
    t = ffmodel.dense(t, 10, name="fc2")
    t = ffmodel.softmax(t)

    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.05, momentum=0.9),
                    loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                    metrics=[MetricsType.METRICS_ACCURACY,
                             MetricsType.METRICS_SPARSE_CATEGORICAL_CROSSENTROPY])
    dataloader_input = ffmodel.create_data_loader(input_tensor, x_train)
    dataloader_label = ffmodel.create_data_loader(ffmodel.label_tensor, y_train)
    num_samples = dataloader_input.num_samples
    ffmodel.init_layers()

    epochs = ffconfig.epochs
    ts_start = ffconfig.get_current_time()
    ffmodel.fit(x=dataloader_input, y=dataloader_label, epochs=epochs)
    ts_end = ffconfig.get_current_time()
    run_time = 1e-6 * (ts_end - ts_start)
    print("epochs %d, ELAPSED TIME = %.4fs, THROUGHPUT = %.2f samples/s\n"
          % (epochs, run_time, num_samples * epochs / run_time))
    accuracy = ffmodel.get_perf_metrics().get_accuracy()
    print("training accuracy: %.2f%%" % accuracy)
    return accuracy


if __name__ == "__main__":
    print("digits cnn")
    init_runtime()            # init_flexflow_runtime with FlexFlow's keys from the command line
    top_level_task()
