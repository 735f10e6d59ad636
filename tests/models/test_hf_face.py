"""HuggingFace's API over a converted model: `generate`, `pipeline(...)` and
save/from_pretrained run FlexFlow's forward and give what HF gives on the PyTorch
model with the same weights and the same tokenizer (a SentencePiece model trained
here on the shipped English-Sinhala corpus)."""

import sys
import tempfile
from pathlib import Path

import pytest
import torch
import transformers as tf
from transformers import pipeline

from flexflow_torch import PyTorchModel
from flexflow_torch.hf import FlexFlowModel
from flexflow_torch.verify import compile_for_inference, embedded_model

from tiny_models import _perturb

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from examples.mt5.data import train_sentencepiece  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    corpus = REPO / "data" / "eng-sin"
    texts = [line for name in ("train.src", "train.trg")
             for line in (corpus / name).read_text(encoding="utf-8").splitlines()[:2000]]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "spiece.model").write_bytes(train_sentencepiece(texts, 300))
        tok = tf.T5Tokenizer.from_pretrained(tmp, extra_ids=0)
    tok.add_special_tokens({"mask_token": "<mask>"})
    return tok


def _face(model, tokenizer, batch, **kwargs):
    ptm = PyTorchModel(model, is_hf_model=True, batch_size=batch, **kwargs)
    ffmodel = embedded_model(batch)
    ptm.torch_to_ff(ffmodel)
    compile_for_inference(ffmodel)
    ffmodel.init_layers()
    return FlexFlowModel.from_converted(ptm, ffmodel, tokenizer)


def _mt5(vocab):
    c = tf.MT5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0,
                     decoder_start_token_id=0, relative_attention_num_buckets=8)
    torch.manual_seed(0)
    return _perturb(tf.MT5ForConditionalGeneration(c), 21, scale=0.3)


SENTENCES = ["The cat sat on the mat.", "Good morning", "Where is the station?"]


def test_mt5_generate_and_seq2seq_pipeline(tokenizer):
    model = _mt5(len(tokenizer))
    face = _face(model, tokenizer, 2, input_names=["input_ids", "attention_mask", "decoder_input_ids"],
                 seq_length=(32, 8))
    batch = tokenizer(SENTENCES, return_tensors="pt", padding=True)       # 3 rows: two forwards of 2
    with torch.no_grad():
        want = model.generate(**batch, do_sample=False, max_new_tokens=7)
    torch.testing.assert_close(face.generate(**batch, do_sample=False, max_new_tokens=7), want)
    got = pipeline("seq2seq-generation", model=face, tokenizer=tokenizer)(SENTENCES, max_new_tokens=7)
    ref = pipeline("seq2seq-generation", model=model, tokenizer=tokenizer)(SENTENCES, max_new_tokens=7)
    assert got == ref and any(r[0]["generated_text"] for r in ref)


def test_mt5_save_pretrained_and_from_pretrained(tokenizer, tmp_path):
    model = _mt5(len(tokenizer))
    face = _face(model, tokenizer, 1, input_names=["input_ids", "attention_mask", "decoder_input_ids"],
                 seq_length=(32, 8))
    face.save_pretrained(tmp_path / "ff")
    assert {"config.json", "generation_config.json", "flexflow_model.safetensors",
            "tokenizer_config.json"} <= {p.name for p in (tmp_path / "ff").iterdir()}
    reloaded = FlexFlowModel.from_pretrained(tmp_path / "ff")              # no MT5 class involved
    assert type(reloaded).__name__ == "MT5ForConditionalGeneration"
    ref = pipeline("seq2seq-generation", model=model, tokenizer=tokenizer)(SENTENCES[0], max_new_tokens=7)
    got = pipeline("seq2seq-generation", model=reloaded, tokenizer=reloaded.tokenizer)(SENTENCES[0], max_new_tokens=7)
    assert got == ref


def test_gpt2_text_generation_pipeline(tokenizer):
    c = tf.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0.0,
                      embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=1, pad_token_id=0)
    torch.manual_seed(0)
    model = _perturb(tf.GPT2LMHeadModel(c), 22, scale=0.3)
    face = _face(model, tokenizer, 1, input_names=["input_ids", "attention_mask"], seq_length=24)
    kwargs = dict(do_sample=False, max_new_tokens=6, return_tensors=True)
    got = pipeline("text-generation", model=face, tokenizer=tokenizer)("Good morning", **kwargs)
    ref = pipeline("text-generation", model=model, tokenizer=tokenizer)("Good morning", **kwargs)
    assert got == ref and len(ref[0]["generated_token_ids"]) > len(tokenizer("Good morning")["input_ids"])


def test_bert_fill_mask_pipeline(tokenizer):
    c = tf.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = _perturb(tf.BertForMaskedLM(c), 23, scale=0.3)
    face = _face(model, tokenizer, 1, input_names=["input_ids", "attention_mask"], seq_length=16)
    got = pipeline("fill-mask", model=face, tokenizer=tokenizer)("Where is the <mask>?", top_k=5)
    ref = pipeline("fill-mask", model=model, tokenizer=tokenizer)("Where is the <mask>?", top_k=5)
    assert [r["token"] for r in got] == [r["token"] for r in ref]
    torch.testing.assert_close(torch.tensor([r["score"] for r in got]), torch.tensor([r["score"] for r in ref]))
