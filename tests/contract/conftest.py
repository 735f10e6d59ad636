"""Fixtures of the contract tests: FlexFlow's own source (downloaded once per machine,
see flexflow_source.py) and the stand-in's package on sys.path for in-process checks.

Without the source the tests are skipped with the reason, unless
FLEXFLOW_TORCH_REQUIRE_FLEXFLOW_SOURCE=1 (set by scripts/test.sh), which fails them."""

import os
import sys
from pathlib import Path

import pytest

from flexflow_source import FlexFlowSourceError, ensure_flexflow_source

sys.path.insert(0, str(Path(__file__).resolve().parent / "standin"))      # ffstandin

REQUIRE_SOURCE = "FLEXFLOW_TORCH_REQUIRE_FLEXFLOW_SOURCE"


@pytest.fixture(scope="session")
def flexflow_source():
    try:
        return ensure_flexflow_source()
    except FlexFlowSourceError as exc:
        if os.environ.get(REQUIRE_SOURCE) == "1":
            pytest.fail(f"FlexFlow's source is required ({REQUIRE_SOURCE}=1) but unavailable: {exc}")
        pytest.skip(f"FlexFlow's source is unavailable: {exc}")


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory):
    """A folder shared by the pytest-xdist workers of this session (for run_once)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
