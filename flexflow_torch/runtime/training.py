"""Losses, metrics and the fit/eval loops, with FlexFlow's conventions (fact sheet §7).

The loss is never a number in FlexFlow: only its gradient w.r.t. the final output is
produced. Metrics accumulate since the last `reset_metrics()` and each reported value
is the accumulated sum divided by the number of counted samples (positions, for
sparse labels).
"""

import os
import sys

import torch

from ..errors import DataLoaderError, ModelStateError, NonFiniteError
from ..progress import Progress
from ..semantics.model import check_labels
from .enums import CompMode, LossType, MetricsType

_ORDER = [MetricsType.METRICS_ACCURACY, MetricsType.METRICS_CATEGORICAL_CROSSENTROPY,
          MetricsType.METRICS_SPARSE_CATEGORICAL_CROSSENTROPY,
          MetricsType.METRICS_MEAN_SQUARED_ERROR, MetricsType.METRICS_ROOT_MEAN_SQUARED_ERROR,
          MetricsType.METRICS_MEAN_ABSOLUTE_ERROR]
_NAMES = {m: m.name[len("METRICS_"):].lower() for m in _ORDER}
_DISTANCES = frozenset((MetricsType.METRICS_MEAN_SQUARED_ERROR, MetricsType.METRICS_ROOT_MEAN_SQUARED_ERROR,
                        MetricsType.METRICS_MEAN_ABSOLUTE_ERROR))


class PerfMetrics:
    """Accumulated metrics; FlexFlow's Python API exposes only `get_accuracy()`.

    Sparse-label batches are kept as their predictions and picked probabilities
    (`defer`) and counted when a figure is read or 64 batches wait (`_settle`): a few
    kernels per batch instead of a dozen, each batch's sum computed as before."""

    __slots__ = ["handle", "_handle", "_correct", "_total", "_sums", "_pending"]

    def __init__(self, handle):
        self.handle = self._handle = handle
        self._correct, self._total, self._sums, self._pending = 0, 0, {}, []

    def _figure(name):
        def get(self):
            self._settle()
            return getattr(self, name)

        def put(self, value):
            self._settle()
            setattr(self, name, value)
        return property(get, put)

    correct, total, sums = _figure("_correct"), _figure("_total"), _figure("_sums")
    del _figure

    def defer(self, pred, labels, picked):
        """One sparse-label batch: argmax predictions, labels, and the label's
        probability (None when sparse cross-entropy is not measured)."""
        self._pending.append((pred, labels, picked))
        if len(self._pending) >= 64:
            self._settle()

    def _settle(self):
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        same = len({pred.numel() for pred, _, _ in pending}) == 1
        join = torch.stack if same else torch.cat
        preds, labels = join([p.reshape(-1) for p, _, _ in pending]), join([y.reshape(-1) for _, y, _ in pending])
        self._total += int(preds.numel())
        self._correct += int((preds == labels).sum())
        if pending[0][2] is not None:
            key = MetricsType.METRICS_SPARSE_CATEGORICAL_CROSSENTROPY
            if same:
                picked = torch.stack([q.reshape(-1) for _, _, q in pending])
                batch_sums = (-torch.log(picked.clamp_min(1e-8))).sum(1).tolist()
            else:
                batch_sums = [float((-torch.log(q.clamp_min(1e-8))).sum()) for _, _, q in pending]
            for v in batch_sums:                 # batch by batch, in order, as compute_metrics did
                self._sums[key] = self._sums.get(key, 0.0) + v

    def get_accuracy(self):
        """100 * correct / total over what was accumulated (0.0 before any batch)."""
        return 100.0 * self.correct / self.total if self.total else 0.0

    def values(self):
        """{metric name: value} as FlexFlow prints them (embedded-runtime extra)."""
        out = {}
        for m, s in self.sums.items():
            out[_NAMES[m]] = s / self.total if self.total else 0.0
        return out

    def line(self, metrics):
        parts = []
        for m in _ORDER:
            if m not in metrics:
                continue
            if m == MetricsType.METRICS_ACCURACY:
                parts.append(f"accuracy: {self.get_accuracy():.6f}% ({self.correct} / {self.total})")
            else:
                value = self.sums.get(m, 0.0) / self.total if self.total else 0.0
                parts.append(f"{_NAMES[m]}: {value:.6f}")
        return " ".join(parts)


def finite_guard(ffmodel, desc):
    """The guard of an embedded-runtime FFModel, else one that checks nothing (a loop
    written over FlexFlow's API, e.g. flexflow_torch.fit, runs on both backends)."""
    return FiniteGuard(ffmodel, desc) if isinstance(ffmodel, TrainingLoop) else _NoGuard()


class _NoGuard:
    def inputs(self, batch):
        pass

    def output(self, batch):
        pass


class FiniteGuard:
    """Stops fit/eval at the first batch whose float inputs or final output hold NaN or
    infinity (one NaN sample turns every weight into NaN within an epoch; FlexFlow would
    only print `nan` metrics). FLEXFLOW_TORCH_CHECK_FINITE=0 turns it off (it costs one
    pass over each float input and the output per batch)."""

    def __init__(self, model, desc):
        self.model, self.desc = model, desc
        self.on = os.environ.get("FLEXFLOW_TORCH_CHECK_FINITE", "1").strip() not in ("0", "false", "no", "off")

    def _where(self, batch):
        size = self.model._ffconfig.batch_size
        return f"{self.desc}, batch {batch + 1} (samples {batch * size}-{(batch + 1) * size - 1})"

    def _check(self, handle, what, batch):
        value = handle.value
        if value is None or not value.is_floating_point():
            return
        ok = torch.isfinite(value.detach())
        if not bool(ok.all()):
            row = int((~ok.reshape(ok.shape[0], -1).all(1)).nonzero()[0])
            raise NonFiniteError(f"{self._where(batch)}: {what} {handle.describe()} holds NaN or infinity (row "
                                 f"{row} of the batch); stopped before training on it "
                                 "(FLEXFLOW_TORCH_CHECK_FINITE=0 skips this check)")

    def inputs(self, batch):
        if self.on:
            for handle in self.model._input_handles + [self.model._label]:
                self._check(handle, "input", batch)

    def output(self, batch):
        if self.on:
            self._check(self.model._final_output_handle(), "the model's output", batch)


class TrainingLoop:
    """FFModel's loss, metrics, fit and eval (a mixin of FFModel)."""

    def _label_value(self):
        value = self._label.value
        if value is None:
            raise ModelStateError("the label tensor has no data: create a data loader for "
                                  "ffmodel.label_tensor and call next_batch, or set_tensor it")
        return value

    def _sparse(self):
        return self._loss_type == LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY

    def _targets(self, out):
        """The label batch as the loss and the metrics read it: for sparse labels, the
        flat class ids (`_class_ids`); else the label tensor itself."""
        labels = self._label_value()
        return self._class_ids(labels, out.dims[-1]) if self._sparse() else labels

    def _class_ids(self, labels, classes):
        """`labels` as flat int64 class ids, range-checked once per label batch: kept while
        the label tensor is the same unchanged tensor (next_batch and set_tensor replace
        or write it; a user's attached array is converted and checked every time). A
        batch from a label data loader is known to be in range (the loader checked all of
        its samples): next_batch records it with no ids yet."""
        cached = self._label_ids
        known = cached is not None and cached[0] is labels and cached[1] == labels._version and cached[2] == classes
        if known and cached[3] is not None:
            return cached[3]
        flat = labels.reshape(-1).long()
        if flat.data_ptr() == labels.data_ptr():     # int64 labels: not a view the next batch writes
            flat = flat.clone()
        if not known:
            check_labels(flat, classes)
        if not getattr(labels, "_ff_external", False):
            self._label_ids = (labels, labels._version, classes, flat)
        return flat

    def compute_metrics(self):
        """Accumulate this batch's metrics (FlexFlow's metrics kernels); accuracy is
        always counted when any metric is asked for, the others only when asked for. An
        empty list measures nothing, as in FlexFlow (every figure of
        metrics_functions.cu update_metrics_*_kernel is under a measure_* flag)."""
        out = self._final_output_handle()
        if out.value is None:
            raise ModelStateError("call forward() before compute_metrics()")
        if self._metrics:
            self._measure(out.value.detach(), self._targets(out))

    def _measure(self, output, labels):
        """compute_metrics on the detached final output and `_targets` (no graph is built)."""
        output = output.float()
        perf, metrics = self._perf, self._metrics
        sums = {}
        distances = not _DISTANCES.isdisjoint(metrics)
        if self._sparse():
            probs, flat = output.reshape(-1, output.shape[-1]), labels
            index = flat.unsqueeze(1)
            if not distances:
                measure_ce = MetricsType.METRICS_SPARSE_CATEGORICAL_CROSSENTROPY in metrics
                perf.defer(probs.argmax(-1), flat, probs.gather(1, index) if measure_ce else None)
                return
            sums[MetricsType.METRICS_SPARSE_CATEGORICAL_CROSSENTROPY] = \
                lambda: -torch.log(probs.gather(1, index).clamp_min(1e-8))
            if distances:
                diff = probs.clone().scatter_add_(1, index, probs.new_full(index.shape, -1.0))
            correct = (probs.argmax(-1) == flat)
        else:
            out2 = output.reshape(output.shape[0], -1)
            lab2 = labels.reshape(labels.shape[0], -1).float()
            diff = out2 - lab2
            sums[MetricsType.METRICS_CATEGORICAL_CROSSENTROPY] = \
                lambda: -(lab2 * torch.log(out2.clamp_min(1e-8))).sum(-1)
            hot = lab2 > 0.9
            target = torch.where(hot.any(-1), hot.float().argmax(-1), torch.full_like(
                hot[:, 0], -1, dtype=torch.long))
            correct = out2.argmax(-1) == target
        sums[MetricsType.METRICS_MEAN_SQUARED_ERROR] = lambda: (diff ** 2).sum(-1)
        sums[MetricsType.METRICS_ROOT_MEAN_SQUARED_ERROR] = lambda: (diff ** 2).sum(-1).sqrt()
        sums[MetricsType.METRICS_MEAN_ABSOLUTE_ERROR] = lambda: diff.abs().sum(-1)
        perf.total += int(correct.numel())
        perf.correct += int(correct.sum())
        for m in metrics:
            if m in sums:
                perf.sums[m] = perf.sums.get(m, 0.0) + float(sums[m]().sum())

    def reset_metrics(self):
        self._perf.correct = self._perf.total = 0
        self._perf.sums = {}

    # -- loops ---------------------------------------------------------------------------
    def _loaders(self, x, y):
        """The loaders of x plus y (FlexFlow appends y to the caller's list; we copy)."""
        loaders = list(x) if isinstance(x, (list, tuple)) else [x]
        if y is None or any(d is None for d in loaders):
            raise DataLoaderError("fit/eval need x (a loader or list of loaders) and y "
                                  "(the label loader)")
        loaders.append(y)
        batch = self._ffconfig.batch_size
        iterations = y.num_samples // batch
        if iterations == 0:
            raise DataLoaderError(f"the label loader holds {y.num_samples} samples, fewer than "
                                  f"one batch of {batch}: nothing to run")
        for d in loaders:       # fail before any compute, not mid-epoch
            if d.num_samples < iterations * batch:
                raise DataLoaderError(
                    f"a data loader holds {d.num_samples} samples but the label loader's "
                    f"{y.num_samples} need {iterations} batches of {batch}; give every "
                    "loader as many samples as the labels")
        return loaders, iterations

    def _run(self, loaders, iterations, desc, train):
        """The steps of one fit epoch or eval pass, with progress on stderr (FlexFlow's
        metrics stream): a bar on a terminal, else a line every tenth of the pass."""
        guard = FiniteGuard(self, desc)
        with Progress(iterations, desc, unit="samples", file=sys.stderr) as progress:
            for batch in range(iterations):
                for d in loaders:
                    d.next_batch(self)
                guard.inputs(batch)
                self.forward()
                guard.output(batch)
                if train:
                    self.zero_gradients()
                    self.backward()
                    self.update()
                else:
                    self.compute_metrics()
                progress.update(self._ffconfig.batch_size, lambda: self._perf.line(self._metrics))

    def fit(self, x=None, y=None, batch_size=None, epochs=1):
        """Train for `epochs` passes over the loaders, as FlexFlow's fit: no shuffling,
        leftover samples dropped, metrics reset each epoch; prints one line per epoch."""
        if self._comp_mode != CompMode.TRAINING:
            raise ModelStateError("fit() needs a model compiled with CompMode.TRAINING")
        loaders, iterations = self._loaders(x, y)
        self._tracing_id += 1
        for epoch in range(epochs):
            for d in loaders:
                d.reset()
            self.reset_metrics()
            self._run(loaders, iterations, f"epoch {epoch + 1}/{epochs}", train=True)
            print(f"[Metrics] epoch {epoch + 1}/{epochs}: {self._perf.line(self._metrics)}",
                  flush=True)

    def eval(self, x=None, y=None, batch_size=None):
        """One pass computing metrics only (dropout stays active, as in FlexFlow)."""
        loaders, iterations = self._loaders(x, y)
        for d in loaders:
            d.reset()
        self.reset_metrics()
        self._tracing_id += 1
        self._grad_enabled = False
        try:
            self._run(loaders, iterations, "eval", train=False)
        finally:
            self._grad_enabled = True
        print(f"[Metrics] eval: {self._perf.line(self._metrics)}", flush=True)
