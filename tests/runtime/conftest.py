"""Shared fixtures for the embedded-runtime tests (helpers live in rt_helpers.py).

The tests import `flexflow_torch.runtime` directly, so they test the embedded runtime
even where real FlexFlow is installed; `flexflow_torch.core` (the backend switch) is
covered by test_config.py and test_conformance.py.

Every test runs with FLEXFLOW_TORCH_SEMANTICS=flexflow (FlexFlow's kernels) unless it
asks for the `mode` fixture, which runs it once per mode ("flexflow", "exact")."""

import sys

import numpy as np
import pytest
import torch

from flexflow_torch.runtime import FFConfig, FFModel
from flexflow_torch.runtime import config as ff_config
from .rt_helpers import BATCH, MODES


@pytest.fixture(autouse=True, scope="session")
def _runtime():
    """FlexFlow needs init_flexflow_runtime() once before any object is created; the
    tests mark the runtime initialised without replacing pytest's sys.argv (test_config.py
    tests init_flexflow_runtime itself).

    The tensors here are tiny: one thread per pytest-xdist worker avoids
    oversubscribing the cores."""
    torch.set_num_threads(1)
    ff_config.ensure_runtime()
    yield


@pytest.fixture(autouse=True)
def _flexflow_semantics(monkeypatch):
    """FlexFlow's kernels by default, whatever the calling environment says."""
    monkeypatch.setenv("FLEXFLOW_TORCH_SEMANTICS", "flexflow")


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    """Run the test once per semantics mode; FFModels created afterwards use it."""
    monkeypatch.setenv("FLEXFLOW_TORCH_SEMANTICS", request.param)
    return request.param


@pytest.fixture
def runtime_state(monkeypatch):
    """The runtime's global init state, restored after the test."""
    monkeypatch.setitem(ff_config._state, "initialized", ff_config._state["initialized"])
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    return ff_config._state


@pytest.fixture
def argv(monkeypatch):
    """Set the command line FFConfig() reads: argv("-b", "8")."""
    def set_argv(*flags):
        monkeypatch.setattr(sys, "argv", ["test"] + [str(f) for f in flags])
    set_argv("-b", BATCH)
    return set_argv


@pytest.fixture
def ffmodel(request, argv):
    """A fresh FFModel with batch size BATCH (in the test's `mode`, if it has one)."""
    if "mode" in request.fixturenames:
        request.getfixturevalue("mode")
    return FFModel(FFConfig())


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
