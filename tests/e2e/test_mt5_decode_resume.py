"""mt5_ff.py's translations come from the converted model itself and equal HF generate's
on the same weights; --checkpoint-every / --resume continue a run bit for bit."""

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file

import common
import mt5_ff

SMALL = ["--d-model", "32", "--layers", "1", "--lr", "0.01", "--warmup", "2"]


@pytest.mark.parametrize("gpus", [1, 4])
def test_predictions_equal_hf_generate_on_the_same_weights(prepared, tmp_path, run, gpus):
    """The CSV of mt5_ff.py (FlexFlowModel: one FlexFlow forward per generated token, rows
    spread over the data-parallel shards) against mt5_torch.py's decoding (HF generate with
    its KV cache) of the copied-back weights, through the same write_predictions."""
    argv = ["-ll:gpu", str(gpus), "-b", "4", "-e", "2", "--max-train", "24", "--max-eval", "10",
            "--data", str(prepared), "--out", str(tmp_path), *SMALL]
    run(mt5_ff, argv)
    ff = pd.read_csv(tmp_path / "ff" / "predictions.csv", keep_default_na=False)
    from transformers import MT5ForConditionalGeneration
    model = MT5ForConditionalGeneration.from_pretrained(tmp_path / "ff" / "model")
    tokenizer = common.load_tokenizer(prepared)
    length = common.decode_length(common.ensure_data(prepared))
    _, hf = common.write_predictions(
        lambda ids, mask: common.hf_greedy_decode(model, tokenizer, ids, mask, length), prepared,
        tmp_path / "hf", 10)
    assert len(ff) == 10 and ff["prediction"].str.len().sum() > 0
    assert ff["prediction"].tolist() == hf["prediction"].tolist()


def test_saved_converted_model_translates_without_the_pytorch_class(prepared, tmp_path, run):
    """OUT/ff/flexflow: FlexFlowModel.from_pretrained and the seq2seq-generation pipeline
    give the CSV's translations; with pad and eos suppressed (so that every row runs the
    whole decoder length, where a model this small stops early) its tokens are HF
    generate's on the copied-back weights."""
    argv = ["-b", "4", "-e", "1", "--max-train", "8", "--max-eval", "4", "--data", str(prepared),
            "--out", str(tmp_path), *SMALL]
    run(mt5_ff, argv)
    from transformers import pipeline

    from flexflow_torch import FlexFlowModel
    face = FlexFlowModel.from_pretrained(tmp_path / "ff" / "flexflow")
    translate = pipeline("seq2seq-generation", model=face, tokenizer=face.tokenizer)
    frame = pd.read_csv(tmp_path / "ff" / "predictions.csv", keep_default_na=False)
    length = common.decode_length(common.ensure_data(prepared))
    texts = frame["source"].tolist()
    got = [r[0]["generated_text"] if isinstance(r, list) else r["generated_text"]
           for r in translate(texts, max_new_tokens=length, num_beams=1, do_sample=False)]
    arrays = common.mt5_data.load_arrays(prepared, "eval")
    for text, ids in zip(texts, arrays["source_ids"][:4]):      # the pipeline tokenizes as the data did
        assert face.tokenizer(text)["input_ids"] == [i for i in ids.tolist() if i != 0]
    assert got == frame["prediction"].tolist()
    from transformers import MT5ForConditionalGeneration
    model = MT5ForConditionalGeneration.from_pretrained(tmp_path / "ff" / "model")
    ids, mask = (torch.from_numpy(arrays[k][:4]) for k in ("source_ids", "source_mask"))
    options = dict(max_new_tokens=length, min_new_tokens=length, do_sample=False, num_beams=1,
                   suppress_tokens=[0, 1])
    want = model.generate(input_ids=ids, attention_mask=mask, **options)
    assert want.shape == (4, length + 1)
    torch.testing.assert_close(face.generate(input_ids=ids, attention_mask=mask, **options), want)


class Crash(Exception):
    pass


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_after_a_crash_equals_the_uninterrupted_run(prepared, tmp_path, run, monkeypatch, optimizer):
    """Checkpoints every 4 steps of 6 per epoch; the run dies right after the mid-epoch
    checkpoint of epoch 2 (position 1, 2); --resume finishes it. History and weights equal
    the run that was never interrupted, bit for bit (Adam's moments and step count, the
    learning-rate schedule and the data position all restored)."""
    argv = ["-b", "4", "-e", "2", "--max-train", "24", "--max-eval", "4", "--data", str(prepared),
            "--optimizer", optimizer, "--no-decode", *SMALL]
    whole, _ = run(mt5_ff, argv + ["--out", str(tmp_path / "whole")])
    crash = argv + ["--out", str(tmp_path / "crash"), "--checkpoint-every", "4"]
    save = mt5_ff.Checkpoints.save

    def save_then_die(self, epoch, step, history, seconds):
        save(self, epoch, step, history, seconds)
        if (epoch, step) == (1, 2):
            raise Crash
    monkeypatch.setattr(mt5_ff.Checkpoints, "save", save_then_die)
    with pytest.raises(Crash):
        run(mt5_ff, crash)
    monkeypatch.setattr(mt5_ff.Checkpoints, "save", save)
    with pytest.raises(common.ScriptArgumentError, match="--resume"):
        run(mt5_ff, crash)                                   # the checkpoint is not overwritten
    resumed, _ = run(mt5_ff, crash + ["--resume"])
    for key in ("train_loss", "train_lr", "eval_loss", "train_loss_epoch"):
        assert resumed[key] == whole[key], key
    a = load_file(tmp_path / "whole" / "ff" / "model" / "model.safetensors")
    b = load_file(tmp_path / "crash" / "ff" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_resume_refusals(prepared, tmp_path, run):
    base = ["-b", "4", "-e", "1", "--max-train", "8", "--max-eval", "4", "--data", str(prepared),
            "--out", str(tmp_path), "--no-decode", *SMALL]
    with pytest.raises(common.ScriptArgumentError, match="no checkpoint"):
        run(mt5_ff, base + ["--resume"])
    run(mt5_ff, base + ["--checkpoint-every", "1"])
    run(mt5_ff, base + ["--checkpoint-every", "1", "--force"])
    from flexflow_torch.errors import CheckpointError
    with pytest.raises(CheckpointError, match="same data"):
        run(mt5_ff, [a if a != "8" else "12" for a in base] + ["--resume"])
