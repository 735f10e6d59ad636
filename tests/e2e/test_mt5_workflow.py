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




def test_ff_script_end_to_end(prepared, tmp_path, run):
    argv = ["-b", "4", "-e", "1", "--max-train", "16", "--max-eval", "8", "--data", str(prepared),
            "--out", str(tmp_path), "--d-model", "32", "--layers", "1"]
    history, scores = run(mt5_ff, argv)
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
def test_ff_and_torch_follow_the_same_loss_curve(prepared, tmp_path, run, optimizer, lr):
    """Same initial weights, data, optimizer and loss definition on both sides.

    Tolerance: the two sides sum float32 products in different orders (PyTorch's HF
    kernels vs the converted graph's ops), and each step's difference feeds the next
    weights, so the curves are compared to rtol 1e-4 rather than assert_close's 1.3e-6."""
    argv = ["-b", "4", "-e", "1", "--max-train", "24", "--max-eval", "4", "--data",
            str(prepared), "--optimizer", optimizer, "--lr", lr, *TINY]
    torch_history, _ = run(mt5_torch, argv + ["--out", str(tmp_path / "t")])
    ff_history, _ = run(mt5_ff, argv + ["--out", str(tmp_path / "f")])
    assert len(ff_history["train_loss"]) == len(torch_history["train_loss"]) == 6
    np.testing.assert_allclose(ff_history["train_loss"], torch_history["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(ff_history["eval_loss"], torch_history["eval_loss"], rtol=1e-4)


def test_a_few_epochs_lower_the_loss(prepared, tmp_path, run):
    argv = ["-b", "8", "-e", "3", "--max-train", "64", "--max-eval", "8", "--data",
            str(prepared), "--out", str(tmp_path), *TINY]
    history, _ = run(mt5_ff, argv)
    per_epoch = np.array(history["train_loss"]).reshape(3, -1).mean(axis=1)
    assert per_epoch[2] < per_epoch[1] < per_epoch[0]
    assert history["eval_loss"][2] < history["eval_loss"][0]


def test_readme_cluster_command_under_flexflow_data_parallel_rules(prepared, tmp_path, run):
    """README's real-FlexFlow command (`-ll:gpu 4 -ll:fsize 14000 -ll:zsize 4096`) on the
    embedded runtime: every FlexFlow data-parallel rule accepts the converted mT5 (FlexFlow
    would abort compile or init_layers otherwise), and it trains like one GPU."""
    base = ["-b", "8", "-e", "1", "--max-train", "16", "--max-eval", "8", "--data", str(prepared),
            "--lr", "0.001", *TINY]
    one, _ = run(mt5_ff, base + ["--out", str(tmp_path / "one")])
    four, _ = run(mt5_ff, ["-ll:gpu", "4", "-ll:fsize", "14000", "-ll:zsize", "4096"] + base
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


def test_schedule_is_the_same_on_both_sides(prepared, tmp_path, run):
    """Warm-up then linear decay, set through FlexFlow's optimizer.set_learning_rate in
    mt5_ff.py and the param groups in mt5_torch.py: same rates, same losses."""
    argv = ["-b", "4", "-e", "2", "--max-train", "12", "--max-eval", "4", "--data", str(prepared),
            "--lr", "0.01", "--warmup", "2", *TINY]
    torch_history, _ = run(mt5_torch, argv + ["--out", str(tmp_path / "t")])
    ff_history, _ = run(mt5_ff, argv + ["--out", str(tmp_path / "f")])
    args = common.parse_args(mt5_ff.__doc__, argv)
    expected = [common.learning_rate(args, step, 6) for step in range(6)]
    assert ff_history["train_lr"] == torch_history["train_lr"] == expected
    assert expected[0] < expected[1] == expected[2] == 0.01 and expected[-1] < expected[3] < 0.01
    np.testing.assert_allclose(ff_history["train_loss"], torch_history["train_loss"], rtol=1e-4)


@pytest.mark.parametrize("script", [mt5_ff, mt5_torch])
def test_unknown_flags_are_refused_flexflow_flags_taken(script, capsys):
    with pytest.raises(SystemExit) as exit_:
        common.parse_args(script.__doc__, ["--epoch", "3"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized argument" in err and "did you mean --epochs?" in err
    args = common.parse_args(script.__doc__, ["-e", "3", "-b", "4", "-ll:gpu", "1", "-ll:fsize", "1000",
                                              "-lg:prof", "1", "--profiling", "--lr", "0.1"])
    assert (args.epochs, args.batch_size, args.lr) == (3, 4, 0.1)
    with pytest.raises(SystemExit):
        common.parse_args(script.__doc__, ["-b", "four"])
    assert "-b needs a int value" in capsys.readouterr().err


@pytest.mark.parametrize("script", [mt5_ff, mt5_torch])
def test_help_says_what_the_script_does(script, capsys):
    with pytest.raises(SystemExit):
        common.parse_args(script.__doc__, ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert common.description(script.__doc__) in text and common.description(script.__doc__).endswith(".")
    assert "(default: linear)" in text and "FlexFlow's flags" in text
    if script is mt5_torch:
        assert "Adam" in script.__doc__ and "SGD)" in script.__doc__


def test_out_of_vocab_ids_stop_before_training(prepared, tmp_path, monkeypatch, capsys):
    import shutil
    data = tmp_path / "data"
    shutil.copytree(prepared, data)
    ids = np.load(data / "numpy" / "train_source_ids.npy")
    ids[3, 0] = 10_000
    np.save(data / "numpy" / "train_source_ids.npy", ids)
    argv = ["-b", "4", "-e", "1", "--max-train", "8", "--data", str(data), "--out",
            str(tmp_path / "o"), *TINY]
    monkeypatch.setattr(sys, "argv", [mt5_ff.__file__, *argv])
    with pytest.raises(SystemExit) as exit_:
        common.run_script(lambda: mt5_ff.main(argv), "mt5_ff.py")
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train_source_ids.npy" in err[0] and "vocabulary" in err[0]
    assert not (tmp_path / "o" / "ff" / "history.json").exists()
