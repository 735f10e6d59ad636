"""Every Python block of the README, and of the docs/ pages it links, runs as written:
each is saved to a file and run with `python FILE` in an empty folder, as a reader
who copies it would."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pages():
    """README.md and the docs/ pages it links."""
    readme = ROOT / "README.md"
    linked = sorted({m for m in re.findall(r"\]\((docs/[^)#]+\.md)", readme.read_text(encoding="utf-8"))})
    return [readme, *(ROOT / p for p in linked)]


def blocks():
    out = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        for i, code in enumerate(re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)):
            out.append(pytest.param(code, id=f"{page.relative_to(ROOT)}#{i + 1}"))
    return out


def test_the_readme_has_python_blocks_and_links_its_docs():
    ids = [p.id for p in blocks()]
    assert sum(i.startswith("README.md#") for i in ids) >= 2
    assert any(i.startswith("docs/") for i in ids)


@pytest.mark.parametrize("code", blocks())
def test_block_runs_as_written(code, tmp_path):
    (tmp_path / "block.py").write_text(code, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FLEXFLOW_TORCH_BACKEND": "embedded",
           "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "block.py"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
