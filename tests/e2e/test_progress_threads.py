"""Progress that shows in a log, and a thread count that leaves busy cores alone."""

import io
import os

import numpy as np
import pytest

from flexflow_torch import threads
from flexflow_torch.errors import ConfigError
from flexflow_torch.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_a_line_every_n_steps_with_rate_and_eta():
    log = io.StringIO()
    with Progress(20, "epoch 1/2", unit="tokens", file=log, every=5) as p:
        for _ in range(20):
            p.update(100, loss="1.234")
    lines = log.getvalue().splitlines()
    assert len(lines) == 3                   # steps 5, 10, 15; the caller's line ends the loop
    assert lines[0].startswith("epoch 1/2: 5/20 steps (25%), loss 1.234, ")
    assert all(" tokens/s, " in line and " elapsed, ETA " in line for line in lines)


def test_default_every_is_a_tenth_or_the_environment(monkeypatch):
    log = io.StringIO()
    with Progress(100, "x", file=log) as p:
        for _ in range(100):
            p.update(1)
    assert len(log.getvalue().splitlines()) == 9
    monkeypatch.setenv("FLEXFLOW_TORCH_LOG_EVERY", "50")
    assert Progress(100, "x", file=io.StringIO()).every == 50


def test_on_a_terminal_a_bar():
    term = _Terminal()
    with Progress(3, "eval", file=term) as p:
        for _ in range(3):
            p.update(4, "accuracy: 50%")
    assert "\r" in term.getvalue() and "eval" in term.getvalue()


def test_fit_prints_progress_lines_to_a_log(capsys, monkeypatch):
    """FFModel.fit with stderr going to a file (not a terminal): lines during the epoch."""
    from flexflow_torch.runtime import FFConfig, FFModel, SGDOptimizer
    from flexflow_torch.runtime.config import ensure_runtime
    from flexflow_torch.runtime.enums import DataType, LossType, MetricsType
    ensure_runtime()
    monkeypatch.setenv("FLEXFLOW_TORCH_LOG_EVERY", "2")
    config = FFConfig._from_flags(["-b", "4"])
    model = FFModel(config)
    x = model.create_tensor([4, 3], DataType.DT_FLOAT)
    model.softmax(model.dense(x, 2))
    model.compile(optimizer=SGDOptimizer(model, 0.1), loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                  metrics=[MetricsType.METRICS_ACCURACY])
    rng = np.random.default_rng(0)
    lx = model.create_data_loader(x, rng.normal(size=(16, 3)).astype(np.float32))
    ly = model.create_data_loader(model.label_tensor, rng.integers(0, 2, (16, 1)).astype(np.int32))
    model.init_layers()
    model.fit(x=lx, y=ly, epochs=1)
    err = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in err] == ["epoch 1/1: 2/4 steps (50%)"]
    assert "accuracy: " in err[0] and "samples/s" in err[0]


def test_threads_from_the_environment(monkeypatch):
    monkeypatch.setenv("FLEXFLOW_TORCH_THREADS", "3")
    assert threads.choose_threads() == (3, "FLEXFLOW_TORCH_THREADS=3")
    monkeypatch.delenv("FLEXFLOW_TORCH_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.choose_threads()[0] == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
        threads.choose_threads()


@pytest.mark.parametrize("busy_jiffies,expected", [(0, 2), (100, 1), (200, 1), (30, 2), (60, 1)])
def test_threads_leave_busy_cores_alone(monkeypatch, busy_jiffies, expected):
    """2 CPUs over a window of 100 jiffies per core: `busy_jiffies` of them spent by
    other processes."""
    for name in threads.ENV:
        monkeypatch.delenv(name, raising=False)
    samples = iter([(0, 0), (busy_jiffies, 200)])
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    n, why = threads.choose_threads()
    assert n == expected and f"{busy_jiffies / 100:.1f} busy" in why


def test_auto_adapts_and_the_governor_follows_the_launch_choice(monkeypatch):
    """FLEXFLOW_TORCH_THREADS=auto is the default policy (idle cores); a bad count is a
    ConfigError; configure_threads leaves the runtime's governor free to use every
    usable core again once the load goes."""
    import torch
    for name in threads.ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLEXFLOW_TORCH_THREADS", "auto")
    assert threads.fixed_threads() is None
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 1.0)
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    before = torch.get_num_threads()
    try:
        assert threads.configure_threads(log=None) == 1
        assert (threads.GOVERNOR.cap, threads.GOVERNOR.chosen) == (2, 1)
    finally:
        torch.set_num_threads(before)
        threads.GOVERNOR.cap = threads.GOVERNOR.chosen = None
    monkeypatch.setenv("FLEXFLOW_TORCH_THREADS", "0")
    with pytest.raises(ConfigError, match="FLEXFLOW_TORCH_THREADS"):
        threads.choose_threads()
