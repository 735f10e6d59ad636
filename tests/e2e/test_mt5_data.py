"""End-to-end tests of the mT5 English<->Sinhala data half: corpus, TSV, tokenizer, arrays, notebook."""
from __future__ import annotations

import gzip
import importlib.util
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "data" / "eng-sin"
sys.path.insert(0, str(REPO))

from examples.mt5 import data as mt5data  # noqa: E402


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    return mt5data.prepare(data_dir=SHIPPED, out=out, log=lambda *_: None)


@pytest.fixture(scope="module")
def tokenizer(prepared):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(prepared.out / "tokenizer")


# ---------------------------------------------------------------------------- corpus
def test_builder_is_deterministic_and_matches_shipped_files(tmp_path):
    builder = _load_script("make_eng_sin_data")
    shipped = json.loads((SHIPPED / "provenance.json").read_text(encoding="utf-8"))
    import babel
    builder.write_corpus(tmp_path / "a")
    builder.write_corpus(tmp_path / "b")
    same_babel = babel.__version__ == shipped["babel_version"]   # setup.py pins it
    # provenance.json records the babel version and LICENSE.unicode is babel's copy: they
    # match only under the same babel; the phrases must match under any babel that
    # carries the same CLDR data.
    names = [*builder.FILES, *(("provenance.json", "LICENSE.unicode") if same_babel else ())]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
        assert (tmp_path / "a" / name).read_bytes() == (SHIPPED / name).read_bytes(), (
            f"{name} differs from the shipped file under babel {babel.__version__} (shipped: "
            f"{shipped['babel_version']}, pinned in setup.py)")

    train_en, test_en = _lines(SHIPPED / "train.src"), _lines(SHIPPED / "test.src")
    train_si, test_si = _lines(SHIPPED / "train.trg"), _lines(SHIPPED / "test.trg")
    n = len(train_en) + len(test_en)
    assert n >= 2000 and n == shipped["pairs"]
    assert len(test_en) == round(0.1 * n)
    assert (len(train_si), len(test_si)) == (len(train_en), len(test_en))
    assert _lines(SHIPPED / "train.id") == ["eng\tsin"] * len(train_en)
    assert _lines(SHIPPED / "test.id") == ["eng\tsin"] * len(test_en)
    for en, si in zip(train_en + test_en, train_si + test_si):
        assert en and si and en != si and en == en.strip() and "\t" not in en + si
        assert any("\u0d80" <= ch <= "\u0dff" for ch in si)
    assert not {e.lower() for e in train_en} & {e.lower() for e in test_en}


def _write_gz_folder(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name in ("train.src", "train.trg", "train.id"):
        with gzip.open(folder / f"{name}.gz", "wb") as f:
            f.write((SHIPPED / name).read_bytes())
    for name in ("test.src", "test.trg", "test.id"):  # Tatoeba ships test files plain
        shutil.copy(SHIPPED / name, folder / name)


def test_loader_reads_plain_gz_and_tar_layouts(tmp_path):
    plain = mt5data.load_corpus(data_dir=SHIPPED)
    assert plain.train_en == _lines(SHIPPED / "train.src")
    assert plain.test_si == _lines(SHIPPED / "test.trg")

    _write_gz_folder(tmp_path / "gz" / "data" / "release" / "v2023-09-26" / "eng-sin")
    from_gz = mt5data.load_corpus(data_dir=tmp_path / "gz")  # found below the given root
    tar_path = tmp_path / "eng-sin.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(tmp_path / "gz" / "data", arcname="data")
    from_tar = mt5data.load_corpus(tar=tar_path)
    kept = mt5data.load_corpus(tar=tar_path, workdir=tmp_path / "x")
    assert (tmp_path / "x" / "data" / "release" / "v2023-09-26" / "eng-sin" / "train.src.gz").is_file()
    for other in (from_gz, from_tar, kept):
        assert other.fingerprint() == plain.fingerprint()
        assert (other.train_en, other.train_si, other.test_en, other.test_si) == \
               (plain.train_en, plain.train_si, plain.test_en, plain.test_si)


def test_loader_errors_are_typed(tmp_path):
    with pytest.raises(mt5data.CorpusNotFoundError) as err:
        mt5data.load_corpus(data_dir=tmp_path / "missing")
    assert isinstance(err.value, FileNotFoundError) and "--data-dir" in str(err.value)
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("train.src", "test.src", "test.trg"):
        shutil.copy(SHIPPED / name, bad / name)
    (bad / "train.trg").write_text("only one line\n", encoding="utf-8")
    with pytest.raises(mt5data.CorpusFormatError, match="line-aligned"):
        mt5data.load_corpus(data_dir=bad)

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(mt5data.UnsafeArchiveError):
        mt5data.load_corpus(tar=evil, workdir=tmp_path / "dest")
    assert not (tmp_path / "escaped.txt").exists()


# ---------------------------------------------------------------------------- TSV
def test_tsv_has_two_rows_per_pair_like_flexflow(tmp_path):
    corpus = mt5data.load_corpus(data_dir=SHIPPED)
    train_tsv, eval_tsv = mt5data.write_tsv(corpus, tmp_path)
    assert train_tsv.read_text(encoding="utf-8").splitlines()[0] == "\tprefix\tinput_text\ttarget_text"
    for path, en, si in ((train_tsv, corpus.train_en, corpus.train_si), (eval_tsv, corpus.test_en, corpus.test_si)):
        expected = pd.DataFrame(
            [row for e, s in zip(en, si) for row in
             (["translate sinhala to english", s, e], ["translate english to sinhala", e, s])],
            columns=["prefix", "input_text", "target_text"])
        got = pd.read_csv(path, sep="\t", index_col=0, keep_default_na=False)
        pd.testing.assert_frame_equal(got, expected)
        assert len(got) == 2 * len(en)
    train_df, eval_df = mt5data.read_tsv(tmp_path, blank_prefix=True)
    assert (train_df["prefix"] == "").all() and len(eval_df) == 2 * len(corpus.test_en)


# ---------------------------------------------------------------------------- tokenizer
def test_tokenizer_trains_matches_sentencepiece_and_round_trips(tmp_path):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    corpus = mt5data.load_corpus(data_dir=SHIPPED)
    texts = corpus.train_en + corpus.train_si
    proto = mt5data.train_sentencepiece(texts, 2000)
    assert proto == mt5data.train_sentencepiece(texts, 2000)  # deterministic
    sp = spm.SentencePieceProcessor(model_proto=proto)

    tok = mt5data.load_or_train_tokenizer(None, texts, tmp_path / "tok", vocab_size=2000)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert len(tok) == sp.get_piece_size() == 2000
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tok")  # tokenizer.json: no protobuf needed
    again = mt5data.load_or_train_tokenizer(model_dir=tmp_path / "tok")
    sample = corpus.test_en + corpus.test_si
    ids = tok(sample)["input_ids"]
    assert reloaded(sample)["input_ids"] == ids == again(sample)["input_ids"]
    exact = 0
    for text, row in zip(sample, ids):
        assert row == sp.encode(text) + [1]
        decoded = tok.decode(row, skip_special_tokens=True)
        assert decoded == sp.decode(sp.encode(text))  # same normalisation as SentencePiece
        exact += decoded == text
    assert exact >= 0.97 * len(sample)  # the rest differ only by NFKC (e.g. km² -> km2)

    with pytest.raises(mt5data.ModelDirNotFoundError):
        mt5data.load_or_train_tokenizer(model_dir=tmp_path / "nope", train_texts=texts)


# ---------------------------------------------------------------------------- arrays
def test_prepared_arrays_shapes_dtypes_and_labels(prepared, tokenizer):
    meta, vocab, L = prepared.meta, len(tokenizer), mt5data.DEFAULT_MAX_LENGTH
    assert meta["vocab_size"] == vocab and meta["max_length"] == L and meta["tokenizer"] == "tokenizer"
    train_df, eval_df = mt5data.read_tsv(prepared.out)
    for split, df in (("train", train_df), ("eval", eval_df)):
        a = mt5data.load_arrays(prepared.out, split)
        n = len(df)
        assert meta["counts"][split]["rows"] == n
        for name in ("source_ids", "source_mask", "target_ids"):
            assert a[name].shape == (n, L) and a[name].dtype == np.int64
        assert a["y_ids"].shape == (n, L - 1) and a["y_ids"].dtype == np.int64
        assert a["lm_labels"].shape == (n, L - 1, 1) and a["lm_labels"].dtype == np.int32
        labels = a["lm_labels"][..., 0]
        assert labels.min() >= 0 and labels.max() < vocab
        assert (a["y_ids"][:, 0] == 0).all() and (a["y_ids"][:, 1:] == labels[:, :-1]).all()

        order = mt5data.train_permutation(n, 42) if split == "train" else np.arange(n)
        kw = dict(padding="max_length", truncation=True, return_tensors="np")
        src = tokenizer(list(df["input_text"].iloc[order]), max_length=L, **kw)
        tgt = list(df["target_text"].iloc[order])
        np.testing.assert_array_equal(a["source_ids"], src["input_ids"])
        np.testing.assert_array_equal(a["source_mask"], src["attention_mask"])
        np.testing.assert_array_equal(a["target_ids"], tokenizer(tgt, max_length=L, **kw)["input_ids"])
        np.testing.assert_array_equal(labels, tokenizer(tgt, max_length=L - 1, **kw)["input_ids"])


def test_decoder_arrays_match_hf_truncation_and_shift(tokenizer):
    import torch
    from transformers import MT5Config, MT5ForConditionalGeneration

    texts = ["Tamil (Sri Lanka), English (Nigeria) and Sinhala (Sri Lanka)", "Sri Lanka", "3 days ago"]
    kw = dict(padding="max_length", truncation=True, return_tensors="np")
    y = tokenizer(texts, max_length=8, **kw)["input_ids"]
    assert y[0, -1] == 1  # the long text is cut and still ends with eos
    y_ids, labels = mt5data.decoder_arrays(y)
    np.testing.assert_array_equal(labels[..., 0], tokenizer(texts, max_length=7, **kw)["input_ids"])

    config = MT5Config(vocab_size=len(tokenizer), d_model=16, d_kv=4, d_ff=32, num_layers=1,
                       num_heads=2, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    model = MT5ForConditionalGeneration(config).eval()
    lab = torch.from_numpy(labels[..., 0].astype(np.int64))
    torch.testing.assert_close(model._shift_right(lab), torch.from_numpy(y_ids))
    src = tokenizer(texts, max_length=8, **kw)
    ids, mask = torch.from_numpy(src["input_ids"]), torch.from_numpy(src["attention_mask"])
    with torch.no_grad():
        with_labels = model(input_ids=ids, attention_mask=mask, labels=lab).logits
        with_inputs = model(input_ids=ids, attention_mask=mask, decoder_input_ids=torch.from_numpy(y_ids)).logits
    torch.testing.assert_close(with_labels, with_inputs)


# ---------------------------------------------------------------------------- idempotence
def test_rerun_is_idempotent(prepared, capsys):
    before = _snapshot(prepared.out)
    again = mt5data.prepare(data_dir=SHIPPED, out=prepared.out, log=print)
    assert again.skipped and again.meta == prepared.meta
    cli = _load_script("prepare_mt5_data")
    assert cli.main(["--data-dir", str(SHIPPED), "--out", str(prepared.out)]) == 0
    assert capsys.readouterr().out.count("up to date") == 2
    assert _snapshot(prepared.out) == before


def test_different_args_are_refused_without_force(prepared, tmp_path, capsys):
    before = _snapshot(prepared.out)
    with pytest.raises(mt5data.PreparedDataExistsError, match="--force") as err:
        mt5data.prepare(data_dir=SHIPPED, out=prepared.out, max_length=32)
    assert isinstance(err.value, ValueError) and "max_length" in str(err.value)
    cli = _load_script("prepare_mt5_data")
    assert cli.main(["--out", str(prepared.out), "--vocab-size", "1500"]) == 2
    assert "--force" in capsys.readouterr().err
    assert _snapshot(prepared.out) == before

    foreign = tmp_path / "foreign"  # someone's data, no meta.json
    foreign.mkdir()
    (foreign / "train.tsv").write_text("mine\n", encoding="utf-8")
    with pytest.raises(mt5data.PreparedDataExistsError):
        mt5data.prepare(data_dir=SHIPPED, out=foreign)
    assert (foreign / "train.tsv").read_text(encoding="utf-8") == "mine\n"

    copy = tmp_path / "copy"
    shutil.copytree(prepared.out, copy)
    with (copy / "train.tsv").open("a", encoding="utf-8") as f:  # a user edited the output
        f.write("x\ty\tz\tw\n")
    with pytest.raises(mt5data.PreparedDataExistsError, match="modified"):
        mt5data.prepare(data_dir=SHIPPED, out=copy)
    forced = mt5data.prepare(data_dir=SHIPPED, out=copy, max_length=32, force=True, log=lambda *_: None)
    assert not forced.skipped and forced.meta["inputs"]["max_length"] == 32
    assert mt5data.load_arrays(copy, "eval")["lm_labels"].shape == (prepared.meta["counts"]["eval"]["rows"], 31, 1)


# ---------------------------------------------------------------------------- notebook
def test_notebook_executes_headless():
    import nbformat
    from nbclient import NotebookClient

    path = REPO / "examples" / "mt5" / "prepare_data.ipynb"
    nb = nbformat.read(path, as_version=4)
    generated = _load_script("make_notebook").build()
    assert [c.source for c in nb.cells] == [c.source for c in generated.cells]  # in sync with generator
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)


# ---------------------------------------------------------------------------- bad input
def _pair_folder(folder: Path, **override: bytes) -> Path:
    """The shipped pair folder, with some files replaced by raw bytes."""
    folder.mkdir(parents=True)
    for name in ("train.src", "train.trg", "test.src", "test.trg"):
        (folder / name).write_bytes(override.get(name.replace(".", "_"), (SHIPPED / name).read_bytes()))
    return folder


@pytest.mark.parametrize("name,content,expected", [
    ("train.src", (SHIPPED / "train.src").read_bytes()[:40] + b"\xff\xfe bad\n", "not valid UTF-8"),
    ("train.src", b"", "is empty"),
    ("train.trg", b"\n" * 2926, "blank line"),
    ("test.src", b"a\n\nc\n", "blank line"),
])
def test_bad_corpus_files_are_named_and_nothing_is_written(tmp_path, name, content, expected, capsys):
    folder = _pair_folder(tmp_path / "corpus", **{name.replace(".", "_"): content})
    out = tmp_path / "out"
    with pytest.raises(mt5data.CorpusFormatError, match=expected) as err:
        mt5data.prepare(data_dir=folder, out=out, log=lambda *_: None)
    assert str(folder / name) in str(err.value)
    assert not out.exists()
    cli = _load_script("prepare_mt5_data")
    assert cli.main(["--data-dir", str(folder), "--out", str(out)]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and str(folder / name) in err_lines[0]


def test_corrupt_gzip_and_tar_are_named(tmp_path):
    folder = _pair_folder(tmp_path / "gz")
    (folder / "train.src").unlink()
    good = gzip.compress((SHIPPED / "train.src").read_bytes())
    (folder / "train.src.gz").write_bytes(good[:len(good) // 2])          # truncated download
    with pytest.raises(mt5data.CorpusFormatError, match="not a readable gzip file") as err:
        mt5data.load_corpus(data_dir=folder)
    assert str(folder / "train.src.gz") in str(err.value)
    bad_tar = tmp_path / "eng-sin.tar"
    bad_tar.write_bytes(b"not a tar archive at all" * 40)
    with pytest.raises(mt5data.CorpusFormatError, match="not a readable tar archive") as err:
        mt5data.load_corpus(tar=bad_tar)
    assert str(bad_tar) in str(err.value)


def test_broken_meta_json_is_named(prepared, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(prepared.out, copy)
    (copy / "numpy" / "meta.json").write_text("{ not json", encoding="utf-8")
    for call in (lambda: mt5data.prepare(data_dir=SHIPPED, out=copy),
                 lambda: mt5data.load_arrays(copy, "train")):
        with pytest.raises(mt5data.PreparedDataError, match="not valid JSON") as err:
            call()
        assert str(copy / "numpy" / "meta.json") in str(err.value) and "--force" in str(err.value)
    np.save(copy / "numpy" / "eval_y_ids.npy", np.zeros((3, 2), np.int64))
    (copy / "numpy" / "meta.json").write_bytes((prepared.out / "numpy" / "meta.json").read_bytes())
    with pytest.raises(mt5data.PreparedDataError, match="shape") as err:
        mt5data.load_arrays(copy, "eval")
    assert "eval_y_ids.npy" in str(err.value)


def test_force_replaces_only_what_the_tool_wrote(prepared, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(prepared.out, copy)
    mine = {copy / "tokenizer" / "my_notes.txt": "keep\n", copy / "README.txt": "mine\n",
            copy / "numpy" / "extra.npy": "x"}
    for path, text in mine.items():
        path.write_text(text, encoding="utf-8")
    forced = mt5data.prepare(data_dir=SHIPPED, out=copy, max_length=32, force=True,
                             log=lambda *_: None)
    assert not forced.skipped
    for path, text in mine.items():
        assert path.read_text(encoding="utf-8") == text, path
    assert not [p for p in copy.iterdir() if p.name.startswith(".prepare-")]   # staging removed
    assert mt5data.prepare(data_dir=SHIPPED, out=copy, max_length=32, log=lambda *_: None).skipped


def test_a_failure_midway_leaves_the_output_as_it_was(prepared, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(prepared.out, copy)
    before = _snapshot(copy)

    def fail(*args, **kwargs):
        raise mt5data.CorpusFormatError("tokenizer training failed")
    monkeypatch.setattr(mt5data, "load_or_train_tokenizer", fail)
    with pytest.raises(mt5data.CorpusFormatError):
        mt5data.prepare(data_dir=SHIPPED, out=copy, max_length=24, force=True, log=lambda *_: None)
    assert _snapshot(copy) == before
