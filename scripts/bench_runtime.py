"""Throughput of the embedded runtime against plain PyTorch, same models, same run.

Trains the MLP and CNN of examples/native (digits, batch 64, SGD) for a number of
epochs on the embedded FlexFlow runtime (FlexFlow's fit loop, metrics included) and
the same networks written in plain PyTorch (forward, cross-entropy, backward, SGD
step, accuracy), after one warm-up epoch each; prints samples/s and the ratio.

    python scripts/bench_runtime.py [--epochs 5] [--batch-size 64]
"""

import argparse
import sys
import time

import torch
from sklearn.datasets import load_digits
from torch import nn

from flexflow_torch.runtime import (ActiMode, DataType, FFConfig, FFModel, LossType,
                                    MetricsType, SGDOptimizer)
from flexflow_torch.runtime.config import ensure_runtime


def digits(images):
    d = load_digits()
    x = (d.images if images else d.data) / 16.0
    x = x.reshape(-1, 1, 8, 8) if images else x
    return x.astype("float32"), d.target.astype("int32").reshape(-1, 1)


def build_ff(ffmodel, batch, cnn):
    if cnn:
        x = ffmodel.create_tensor([batch, 1, 8, 8], DataType.DT_FLOAT)
        t = ffmodel.conv2d(x, 16, 3, 3, 1, 1, 1, 1, ActiMode.AC_MODE_RELU)
        t = ffmodel.conv2d(t, 32, 3, 3, 1, 1, 1, 1, ActiMode.AC_MODE_RELU)
        t = ffmodel.flat(ffmodel.pool2d(t, 2, 2, 2, 2, 0, 0))
        t = ffmodel.dense(t, 64, ActiMode.AC_MODE_RELU)
    else:
        x = ffmodel.create_tensor([batch, 64], DataType.DT_FLOAT)
        t = ffmodel.dense(x, 128, ActiMode.AC_MODE_RELU)
        t = ffmodel.dense(t, 128, ActiMode.AC_MODE_RELU)
    return x, ffmodel.softmax(ffmodel.dense(t, 10))


def build_torch(cnn):
    if cnn:
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 10))
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def run_ff(cnn, batch, epochs):
    sys.argv = [sys.argv[0], "-b", str(batch)]
    ffconfig = FFConfig()
    ffmodel = FFModel(ffconfig)
    x_t, _ = build_ff(ffmodel, batch, cnn)
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.05),
                    loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                    metrics=[MetricsType.METRICS_ACCURACY,
                             MetricsType.METRICS_SPARSE_CATEGORICAL_CROSSENTROPY])
    x, y = digits(cnn)
    dx, dy = ffmodel.create_data_loader(x_t, x), ffmodel.create_data_loader(ffmodel.label_tensor, y)
    ffmodel.init_layers()
    ffmodel.fit(x=dx, y=dy, epochs=1)                 # warm-up
    start = time.perf_counter()
    ffmodel.fit(x=dx, y=dy, epochs=epochs)
    seconds = time.perf_counter() - start
    return (len(x) // batch) * batch * epochs / seconds, ffmodel.get_perf_metrics().get_accuracy()


def run_torch(cnn, batch, epochs):
    torch.manual_seed(0)
    model = build_torch(cnn)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = digits(cnn)
    x, y = torch.from_numpy(x), torch.from_numpy(y).long().view(-1)
    steps = len(x) // batch

    def epoch():
        correct = 0
        for i in range(steps):
            xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits, yb, reduction="sum") / batch
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += int((logits.argmax(-1) == yb).sum())
        return 100.0 * correct / (steps * batch)
    epoch()                                           # warm-up
    start = time.perf_counter()
    for _ in range(epochs):
        acc = epoch()
    seconds = time.perf_counter() - start
    return steps * batch * epochs / seconds, acc


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    ensure_runtime()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch "
          f"{args.batch_size}, {args.epochs} epochs after 1 warm-up epoch")
    print(f"{'model':<6}{'embedded FF samples/s':>24}{'PyTorch samples/s':>20}{'ratio':>8}"
          f"{'FF acc %':>10}{'torch acc %':>12}")
    for name, cnn in (("MLP", False), ("CNN", True)):
        ff, ff_acc = run_ff(cnn, args.batch_size, args.epochs)
        pt, pt_acc = run_torch(cnn, args.batch_size, args.epochs)
        print(f"{name:<6}{ff:>24.0f}{pt:>20.0f}{ff / pt:>8.2f}{ff_acc:>10.1f}{pt_acc:>12.1f}")


if __name__ == "__main__":
    main()
