"""The mT5 workflow end to end: mt5_ff.py (converted model, FlexFlow API) against
mt5_torch.py (PyTorch) on the shipped English-Sinhala data, tiny model, few batches."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MT5 = ROOT / "examples" / "mt5"
sys.path.insert(0, str(MT5))

import common  # noqa: E402
import mt5_ff  # noqa: E402
import mt5_torch  # noqa: E402

TINY = ["--d-model", "32", "--layers", "1", "--no-decode"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("mt5data")
    common.mt5_data.prepare(data_dir=ROOT / "data" / "eng-sin", out=out, vocab_size=400,
                            log=lambda *a: None)
    return out


def run(script, monkeypatch, argv):
    """Run a script's main() as `python script argv` would (FFConfig reads sys.argv)."""
    monkeypatch.setattr(sys, "argv", [script.__file__, *argv])
    return script.main(argv)


def test_ff_script_end_to_end(prepared, tmp_path, monkeypatch):
    argv = ["-b", "4", "-e", "1", "--max-train", "16", "--max-eval", "8", "--data", str(prepared),
            "--out", str(tmp_path), "--d-model", "32", "--layers", "1"]
    history, scores = run(mt5_ff, monkeypatch, argv)
    out = tmp_path / "ff"
    assert len(history["train_loss"]) == 4 and np.isfinite(history["train_loss"]).all()
    for name in ("predictions.csv", "scores.json", "loss.png", "history.json"):
        assert (out / name).is_file(), name
    assert (out / "model" / "model.safetensors").is_file()
    import pandas as pd
    frame = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert list(frame.columns) == ["prefix", "source", "reference", "prediction"]
    assert len(frame) == 8
    saved = json.loads((out / "scores.json").read_text())
    assert saved == scores and {"bleu", "chrf"} <= set(scores["all"])


@pytest.mark.parametrize("optimizer,lr", [("sgd", "0.001"), ("adam", "0.001")])
def test_ff_and_torch_follow_the_same_loss_curve(prepared, tmp_path, monkeypatch, optimizer, lr):
    """Same initial weights, data, optimizer and loss definition on both sides.

    Tolerance: the two sides sum float32 products in different orders (PyTorch's HF
    kernels vs the converted graph's ops), and each step's difference feeds the next
    weights, so the curves are compared to rtol 1e-4 rather than assert_close's 1.3e-6."""
    argv = ["-b", "4", "-e", "1", "--max-train", "24", "--max-eval", "4", "--data",
            str(prepared), "--optimizer", optimizer, "--lr", lr, *TINY]
    torch_history, _ = run(mt5_torch, monkeypatch, argv + ["--out", str(tmp_path / "t")])
    ff_history, _ = run(mt5_ff, monkeypatch, argv + ["--out", str(tmp_path / "f")])
    assert len(ff_history["train_loss"]) == len(torch_history["train_loss"]) == 6
    np.testing.assert_allclose(ff_history["train_loss"], torch_history["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(ff_history["eval_loss"], torch_history["eval_loss"], rtol=1e-4)


def test_a_few_epochs_lower_the_loss(prepared, tmp_path, monkeypatch):
    argv = ["-b", "8", "-e", "3", "--max-train", "64", "--max-eval", "8", "--data",
            str(prepared), "--out", str(tmp_path), *TINY]
    history, _ = run(mt5_ff, monkeypatch, argv)
    per_epoch = np.array(history["train_loss"]).reshape(3, -1).mean(axis=1)
    assert per_epoch[2] < per_epoch[1] < per_epoch[0]
    assert history["eval_loss"][2] < history["eval_loss"][0]


def test_readme_cluster_command_under_flexflow_data_parallel_rules(prepared, tmp_path, monkeypatch):
    """README's real-FlexFlow command (`-ll:gpu 4 -ll:fsize 14000 -ll:zsize 4096`) on the
    embedded runtime: every FlexFlow data-parallel rule accepts the converted mT5 (FlexFlow
    would abort compile or init_layers otherwise), and it trains like one GPU."""
    base = ["-b", "8", "-e", "1", "--max-train", "16", "--max-eval", "8", "--data", str(prepared),
            "--lr", "0.001", *TINY]
    one, _ = run(mt5_ff, monkeypatch, base + ["--out", str(tmp_path / "one")])
    four, _ = run(mt5_ff, monkeypatch, ["-ll:gpu", "4", "-ll:fsize", "14000", "-ll:zsize", "4096"] + base
                  + ["--out", str(tmp_path / "four")])
    assert np.isfinite(four["train_loss"]).all()
    # Python reads back GPU 0's samples only (2 of 8): a smaller share of the same loss
    assert four["train_loss"][0] < one["train_loss"][0]
    from safetensors.numpy import load_file
    w1 = load_file(tmp_path / "one" / "ff" / "model" / "model.safetensors")
    w4 = load_file(tmp_path / "four" / "ff" / "model" / "model.safetensors")
    assert w1.keys() == w4.keys()
    for key in w1:       # the same training: float32 sums in other orders, 1e-5 over two steps
        np.testing.assert_allclose(w4[key], w1[key], rtol=1e-5, atol=1e-6, err_msg=key)
