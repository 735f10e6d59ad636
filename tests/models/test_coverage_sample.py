"""The coverage report's fixed CI sample: each class converts through the documented flow
and matches eager PyTorch (scripts/coverage_report.py; the full run is documented in
docs/coverage.md)."""

import importlib.util
import pathlib
import sys

import pytest

_SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "coverage_report.py"
_spec = importlib.util.spec_from_file_location("coverage_report", _SCRIPT)
coverage_report = sys.modules["coverage_report"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(coverage_report)


def test_the_yardstick_is_transformers_4_57_list():
    assert len(coverage_report.YARDSTICK) == 251 == len(set(coverage_report.YARDSTICK))


@pytest.mark.parametrize("name", coverage_report.CI_SAMPLE)
def test_sample_class_matches(name):
    row = coverage_report.run_class(name, timeout=120)
    assert row.status == "match", f"{row.status}: {row.reason}"
