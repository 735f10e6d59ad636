"""The mT5 example scripts, importable by the e2e tests, and the data they train on."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "mt5"))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The shipped English-Sinhala data prepared with a 400-piece tokenizer."""
    import common
    out = tmp_path_factory.mktemp("mt5data")
    common.mt5_data.prepare(data_dir=ROOT / "data" / "eng-sin", out=out, vocab_size=400,
                            log=lambda *a: None)
    return out


@pytest.fixture
def run(monkeypatch):
    """`run(script, argv)`: a script's main() as `python script argv` would run it
    (FFConfig reads sys.argv)."""
    def run_script(script, argv):
        monkeypatch.setattr(sys, "argv", [script.__file__, *argv])
        return script.main(argv)
    return run_script
