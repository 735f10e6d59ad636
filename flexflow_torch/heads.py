"""Training heads: the cross-entropy loss of a classifier or language model, in a form
FlexFlow trains exactly.

FlexFlow's sparse cross-entropy takes axis 0 of the final output as the samples and
every other axis as one class axis (src/loss_functions/loss_functions.cc
backward_task_with_dim:134-136), so a (batch, positions, classes) output would train
with only `batch` labels. Flattening positions into axis 0 is no way out: with data
parallelism a reshape that changes axis 0 aborts (src/ops/reshape.cc:127-146). So for
outputs of rank > 2 the head builds the loss from operators whose FlexFlow backward is
exact, with `LOSS_IDENTITY` (gradient 1/batch per element):

    out = sum_v 0.5 * p_v^2  -  gather(p, label)          per position

whose gradient w.r.t. p is (p - onehot(label)) / batch; FlexFlow's softmax copies it
through unchanged (src/ops/kernels/softmax.cu:254-258), so the logits get
(p - onehot) / batch: exactly FlexFlow's sparse CE gradient per position, i.e. the
gradient of CrossEntropyLoss(reduction="sum") / batch. That is the number of positions
times PyTorch's default mean loss: divide the learning rate by the positions per
sample to match `reduction="mean"` with SGD.

With FLEXFLOW_TORCH_SEMANTICS=exact (embedded runtime only) the softmax has its true
gradient, and the head uses the runtime's per-position sparse CE instead."""

from __future__ import annotations

import numpy as np

from .backend import enums_for
from .errors import ShapeError


class CrossEntropyHead:
    """Softmax + cross-entropy on `logits` (classes on the last axis).

        head = CrossEntropyHead(ffmodel, logits)
        ffmodel.compile(optimizer=..., loss_type=head.loss_type, metrics=head.metrics)
        label_loader = head.create_label_loader(ffmodel, labels)   # int labels, logits' shape minus classes
        ffmodel.fit(x=input_loaders, y=label_loader)

    `probs` is the softmax tensor, `logits` its input (read them for the loss value and
    accuracy: FlexFlow never returns the loss to Python)."""

    def __init__(self, ffmodel, logits, name="loss"):
        E = enums_for(ffmodel)
        self.logits = logits
        self.classes = int(logits.dims[-1])
        self.positions = tuple(int(d) for d in logits.dims[:-1])
        self.per_position = len(logits.dims) > 2 and not getattr(ffmodel, "_exact", False)
        self.probs = ffmodel.softmax(logits, name=f"{name}_probs")
        if self.per_position:
            rank = len(logits.dims)
            self.label = ffmodel.create_tensor(list(self.positions) + [1], E.DataType.DT_INT32)
            picked = ffmodel.gather(self.probs, self.label, rank - 1, name=f"{name}_picked")
            square = ffmodel.multiply(self.probs, self.probs, name=f"{name}_square")
            half = ffmodel.scalar_multiply(square, 0.5, inplace=False, name=f"{name}_half")
            total = ffmodel.reduce_sum(half, [rank - 1], keepdims=True, name=f"{name}_total")
            self.output = ffmodel.subtract(total, picked, name=name)
            self.loss_type = E.LossType.LOSS_IDENTITY
            self.metrics = []
        else:
            self.label = None
            self.output = self.probs
            self.loss_type = E.LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY
            self.metrics = [E.MetricsType.METRICS_ACCURACY, E.MetricsType.METRICS_SPARSE_CATEGORICAL_CROSSENTROPY]

    def label_array(self, labels) -> np.ndarray:
        """Integer class labels of shape (samples, *positions) as the loader wants them."""
        labels = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
        if labels.ndim == len(self.positions) + 1 and labels.shape[-1] == 1:
            labels = labels[..., 0]
        if tuple(labels.shape[1:]) != self.positions[1:]:
            raise ShapeError(f"labels of shape {labels.shape}: each sample needs {self.positions[1:]} "
                             "class indices")
        if not np.issubdtype(labels.dtype, np.integer) and not (
                np.issubdtype(labels.dtype, np.floating) and np.array_equal(labels, np.round(labels))):
            from .errors import DTypeError
            raise DTypeError(f"labels must be integer class indices, got a {labels.dtype} array")
        if labels.size and (labels.min() < 0 or labels.max() >= self.classes):
            from .errors import LabelRangeError
            raise LabelRangeError(f"labels must lie in [0, {self.classes}), got [{labels.min()}, "
                                  f"{labels.max()}]; FlexFlow has no ignore index")
        return np.ascontiguousarray(labels.astype(np.int32).reshape(labels.shape + (1,)))

    def create_label_loader(self, ffmodel, labels):
        """The `y` loader for fit/eval (after compile)."""
        target = self.label if self.per_position else ffmodel.label_tensor
        return ffmodel.create_data_loader(target, self.label_array(labels))

    def loss(self, logits, labels):
        """The loss FlexFlow's gradient belongs to, from read-back logits (rows of them):
        sum over positions of -log softmax(logits)[label], divided by the batch."""
        x = np.asarray(logits, dtype=np.float64).reshape(-1, self.classes)
        x = x - x.max(axis=1, keepdims=True)
        logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
        y = np.asarray(labels).reshape(-1).astype(np.int64)
        return float(-logp[np.arange(len(y)), y].sum() / self.positions[0])
