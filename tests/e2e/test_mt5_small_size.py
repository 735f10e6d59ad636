"""`mt5_ff.py --model DIR` at google/mt5-small's size: a local folder with its
configuration (vocabulary 250,112, tied LM head as Transformers 5 builds it, random
weights: the Hub is out of reach) and a sentencepiece tokenizer trained here converts,
trains, evaluates, decodes and saves end to end, in a few steps."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import transformers as tf

import common
import mt5_ff

ROOT = Path(__file__).resolve().parents[2]
MT5_SMALL = dict(vocab_size=250112, d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_decoder_layers=8,
                 num_heads=6, relative_attention_num_buckets=32, relative_attention_max_distance=128,
                 feed_forward_proj="gated-gelu", decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


@pytest.fixture(scope="module")
def mt5_small_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mt5-small")
    torch.manual_seed(0)
    tf.MT5ForConditionalGeneration(tf.MT5Config(**MT5_SMALL)).save_pretrained(folder)
    corpus = ROOT / "data" / "eng-sin"
    texts = [line for name in ("train.src", "train.trg")
             for line in (corpus / name).read_text(encoding="utf-8").splitlines()]
    (folder / "spiece.model").write_bytes(common.mt5_data.train_sentencepiece(texts, 2000))
    tf.T5Tokenizer.from_pretrained(folder, extra_ids=0).save_pretrained(folder)
    return folder


def test_mt5_small_folder_trains_and_translates(mt5_small_folder, tmp_path, run):
    argv = ["-b", "2", "-e", "1", "--max-train", "4", "--max-eval", "2", "--warmup", "0", "--lr", "0.0001",
            "--model", str(mt5_small_folder), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")]
    history, scores = run(mt5_ff, argv)
    assert len(history["train_loss"]) == 2 and np.isfinite(history["train_loss"]).all()
    config = json.loads((mt5_small_folder / "config.json").read_text())
    assert config["vocab_size"] == 250112 and config.get("tie_word_embeddings", True)
    out = tmp_path / "out" / "ff"
    frame = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert len(frame) == 2 and scores["rows"] == 2
    trained = tf.MT5ForConditionalGeneration.from_pretrained(out / "model")
    assert trained.config.vocab_size == 250112
    assert trained.lm_head.weight.data_ptr() == trained.shared.weight.data_ptr()   # still tied
    assert (out / "flexflow" / "flexflow_model.safetensors").is_file()
