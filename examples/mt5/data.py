"""Data preparation for the mT5 English<->Sinhala example (FlexFlow's workflow, fixed).

Pipeline, as in FlexFlow's ``examples/python/pytorch/mt5``:

1. :func:`load_corpus` reads a Tatoeba Challenge pair folder
   (``{train,test}.{src,trg,id}``, plain or ``.gz``) or the ``eng-sin.tar`` archive;
2. :func:`write_tsv` writes ``train.tsv`` / ``eval.tsv`` as ``DataPreparer.data_to_tsv``
   does (two rows per pair, one per direction); :func:`read_tsv` reads them back;
3. :func:`load_or_train_tokenizer` loads a local mT5 tokenizer or trains a
   SentencePiece unigram one with mT5's special ids;
4. :func:`prepare` tokenises both splits and saves the ``.npy`` arrays that
   FlexFlow's data loaders take, plus ``meta.json``; see :func:`decoder_arrays`
   for the label convention and why it differs from upstream.

Importable as ``examples.mt5.data`` (repo root on ``sys.path``) or as ``data``.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

PREFIX_SI_EN = "translate sinhala to english"
PREFIX_EN_SI = "translate english to sinhala"
SPLITS = {"train": "train", "eval": "test"}  # our split name -> Tatoeba file stem
ARRAYS = ("source_ids", "source_mask", "target_ids", "y_ids", "lm_labels")
FORMAT_VERSION = 1
#: tokens per source and target row: the shipped pairs hold at most 27 tokens, 99% at most
#: 14, so 24 cuts one training row and halves the work of FlexFlow's 48 (use
#: --max-length 48 for longer sentences, e.g. the Tatoeba archive)
DEFAULT_MAX_LENGTH = 24
_TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")


# --------------------------------------------------------------------------- errors
class PrepareError(Exception):
    """Base of every error of data preparation; each names the file and the problem."""


class CorpusNotFoundError(PrepareError, FileNotFoundError):
    """No Tatoeba-style pair folder (or archive) where the user pointed."""


class CorpusFormatError(PrepareError, ValueError):
    """The corpus files exist but cannot be used (not UTF-8, corrupt .gz, empty or blank
    lines, line counts differ)."""


class UnsafeArchiveError(PrepareError, ValueError):
    """A tar member would be written outside the extraction folder."""


class ModelDirNotFoundError(PrepareError, FileNotFoundError):
    """``--model`` names a folder that does not exist."""


class PreparedDataExistsError(PrepareError, ValueError):
    """The output folder holds prepared data made from different inputs or settings."""


class PreparedDataError(PrepareError, ValueError):
    """Prepared data that cannot be read back (missing array, broken meta.json)."""


class PrepareSettingsError(PrepareError, ValueError):
    """A setting outside its range (``max_length`` < 3, ``vocab_size`` < 1)."""


# --------------------------------------------------------------------------- corpus
@dataclass
class Corpus:
    """English/Sinhala sentence lists per split (``train``/``test`` as in Tatoeba)."""

    train_en: list[str]
    train_si: list[str]
    test_en: list[str]
    test_si: list[str]
    source: str

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for lines in (self.train_en, self.train_si, self.test_en, self.test_si):
            h.update("\n".join(lines).encode("utf-8") + b"\0")
        return h.hexdigest()


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise CorpusFormatError(f"{path} is not a readable gzip file ({exc}); download it again "
                                "or pass the uncompressed file.") from None


def _decode(path: Path, raw: bytes) -> list[str]:
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for number, line in enumerate(lines, 1):
        try:
            out.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            raise CorpusFormatError(f"{path}: line {number} is not valid UTF-8 (byte {exc.start}: "
                                    f"{line[exc.start:exc.start + 4]!r}); the corpus must be "
                                    "UTF-8 text.") from None
    return out


def _read_lines(folder: Path, name: str) -> list[str]:
    """The lines of ``name`` (or ``name.gz``); an empty file or a blank line is an error:
    a blank translation is either a broken file or a misaligned pair."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            lines = _decode(path, _read_bytes(path))
            if not lines:
                raise CorpusFormatError(f"{path} is empty; every split needs at least one pair.")
            blank = [i for i, line in enumerate(lines, 1) if not line.strip()]
            if blank:
                shown = ", ".join(map(str, blank[:5])) + (", ..." if len(blank) > 5 else "")
                raise CorpusFormatError(f"{path}: {len(blank)} blank line(s) (line {shown}); each "
                                        "line must hold one sentence, aligned with the other "
                                        "language's file.")
            return lines
    raise CorpusNotFoundError(f"{folder} has neither {name} nor {name}.gz; expected the Tatoeba "
                              "Challenge layout {train,test}.{src,trg,id} (plain or .gz).")


def _is_pair_folder(folder: Path) -> bool:
    return all(any((folder / f"{s}.src{z}").is_file() for z in ("", ".gz")) for s in ("train", "test"))


def find_pair_folder(root: Path) -> Path:
    """``root`` itself or the first folder under it (sorted) holding train/test files."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusNotFoundError(f"Data folder {root} does not exist; pass --data-dir data/eng-sin "
                                  "(shipped) or --tar path/to/eng-sin.tar.")
    if _is_pair_folder(root):
        return root
    for folder in sorted(p for p in root.rglob("*") if p.is_dir()):
        if _is_pair_folder(folder):
            return folder
    raise CorpusNotFoundError(f"No folder with train.src and test.src (plain or .gz) under {root}.")


def read_pair_folder(folder: Path) -> Corpus:
    """Read ``{train,test}.{src,trg}`` (English source, Sinhala target)."""
    folder = find_pair_folder(folder)
    parts = {}
    for split in ("train", "test"):
        en, si = _read_lines(folder, f"{split}.src"), _read_lines(folder, f"{split}.trg")
        if len(en) != len(si):
            raise CorpusFormatError(f"{folder}/{split}.src has {len(en)} lines but {split}.trg has "
                                    f"{len(si)}; the files must be line-aligned translations.")
        parts[f"{split}_en"], parts[f"{split}_si"] = en, si
    return Corpus(**parts, source=str(folder))


def extract_tar(tar_path: Path, dest: Path) -> Path:
    """Extract ``tar_path`` into ``dest`` refusing links, devices and paths leaving ``dest``."""
    tar_path, dest = Path(tar_path), Path(dest)
    if not tar_path.is_file():
        raise CorpusNotFoundError(f"Archive {tar_path} does not exist (download eng-sin.tar from the "
                                  "Tatoeba Challenge, or use --data-dir data/eng-sin).")
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        with tarfile.open(tar_path) as tar:
            members = tar.getmembers()
            for m in members:
                target = (root / m.name).resolve()
                if not (m.isfile() or m.isdir()) or root not in (target, *target.parents):
                    raise UnsafeArchiveError(f"Refusing tar member {m.name!r} of {tar_path}: only "
                                             "plain files and folders inside the archive root are "
                                             "extracted.")
            tar.extractall(root, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise CorpusFormatError(f"{tar_path} is not a readable tar archive ({exc}); download "
                                "it again.") from None
    return dest


def load_corpus(data_dir: Path | None = None, tar: Path | None = None,
                workdir: Path | None = None) -> Corpus:
    """Read a pair folder, or extract ``tar`` (into ``workdir`` or a temp dir) and read it."""
    if (data_dir is None) == (tar is None):
        raise ValueError("Give exactly one of data_dir (a Tatoeba pair folder) or tar (eng-sin.tar).")
    if data_dir is not None:
        return read_pair_folder(Path(data_dir))
    if workdir is not None:
        corpus = read_pair_folder(extract_tar(tar, workdir))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            corpus = read_pair_folder(extract_tar(tar, Path(tmp)))
    corpus.source = str(Path(tar))
    return corpus


# --------------------------------------------------------------------------- TSV
def corpus_frames(corpus: Corpus) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train_df, eval_df) with two rows per pair, as ``DataPreparer.prepare_data`` builds."""
    frames = []
    for en_lines, si_lines in ((corpus.train_en, corpus.train_si), (corpus.test_en, corpus.test_si)):
        rows = []
        for si, en in zip(si_lines, en_lines):
            rows.append([PREFIX_SI_EN, si, en])
            rows.append([PREFIX_EN_SI, en, si])
        frames.append(pd.DataFrame(rows, columns=["prefix", "input_text", "target_text"]))
    return frames[0], frames[1]


def write_tsv(corpus: Corpus, out_dir: Path) -> tuple[Path, Path]:
    """Write ``train.tsv`` and ``eval.tsv`` (tab-separated, pandas index column kept, like FF)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / "train.tsv", out_dir / "eval.tsv"
    for df, path in zip(corpus_frames(corpus), paths):
        df.to_csv(path, sep="\t")
    return paths


def read_tsv(out_dir: Path, blank_prefix: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read ``train.tsv``/``eval.tsv`` back as string frames.

    Unlike upstream's ``get_dataframes`` (``read_csv(...).astype(str)``), strings such
    as "NA" or "null" stay text instead of turning into NaN -> "nan". Upstream blanks
    the ``prefix`` column (it never prepends it); ``blank_prefix=True`` does the same.
    """
    frames = []
    for name in ("train.tsv", "eval.tsv"):
        path = Path(out_dir) / name
        if not path.is_file():
            raise CorpusNotFoundError(f"{path} does not exist; run scripts/prepare_mt5_data.py first.")
        df = pd.read_csv(path, sep="\t", index_col=0, dtype=str, keep_default_na=False)
        if blank_prefix:
            df["prefix"] = ""
        frames.append(df)
    return frames[0], frames[1]


# --------------------------------------------------------------------------- tokenizer
def has_tokenizer(model_dir: Path | None) -> bool:
    return model_dir is not None and any((Path(model_dir) / n).is_file() for n in _TOKENIZER_FILES)


def _check_model_dir(model_dir: Path | None) -> None:
    if model_dir is not None and not Path(model_dir).is_dir():
        raise ModelDirNotFoundError(f"Model folder {model_dir} does not exist; pass a local "
                                    "google/mt5-small-like folder or leave --model out to train one.")


def _safe_vocab_size(texts: list[str], vocab_size: int) -> int:
    """SentencePiece needs room for every character (coverage 1.0) plus pad/eos/unk."""
    n_chars = len(set("".join(texts)) | {"\u2581"})
    return max(vocab_size, n_chars + 3)


def train_sentencepiece(texts: list[str], vocab_size: int = 2000) -> bytes:
    """Serialized SentencePiece unigram model with mT5's ids: pad 0, eos 1, unk 2, no bos."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, model_type="unigram",
        vocab_size=_safe_vocab_size(texts, vocab_size), hard_vocab_limit=False,
        character_coverage=1.0, normalization_rule_name="nmt_nfkc",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        num_threads=1, shuffle_input_sentence=False, minloglevel=2)
    return model.getvalue()


def load_or_train_tokenizer(model_dir: Path | None = None, train_texts: list[str] | None = None,
                            out_dir: Path | None = None, vocab_size: int = 2000):
    """mT5-style tokenizer: from ``model_dir`` if it has one, else trained on ``train_texts``.

    A trained tokenizer is a ``T5Tokenizer`` (no sentinel ``<extra_id_*>`` tokens) built
    from a fresh unigram model. With ``out_dir`` the tokenizer is saved there with
    ``save_pretrained`` (``tokenizer.json``), so loading it back needs no protobuf.
    """
    from transformers import AutoTokenizer, T5Tokenizer

    _check_model_dir(model_dir)
    if has_tokenizer(model_dir):
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    else:
        if not train_texts:
            raise ValueError("No tokenizer in model_dir and no train_texts to train one on.")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "spiece.model").write_bytes(train_sentencepiece(list(train_texts), vocab_size))
            tokenizer = T5Tokenizer.from_pretrained(tmp, extra_ids=0)
    if out_dir is not None:
        tokenizer.save_pretrained(out_dir)
    return tokenizer


# --------------------------------------------------------------------------- arrays
def _normalise(texts) -> list[str]:
    return [" ".join(str(t).split()) for t in texts]  # as upstream's SinhaleseDataset


def tokenize_frame(df: pd.DataFrame, tokenizer, max_length: int = 48,
                   batch_size: int = 1024, desc: str = "tokenize") -> dict[str, np.ndarray]:
    """``source_ids``/``source_mask``/``target_ids`` (int64, (N, max_length)) for one frame."""
    out = {k: [] for k in ("source_ids", "source_mask", "target_ids")}
    src, tgt = _normalise(df["input_text"]), _normalise(df["target_text"])
    kw = dict(max_length=max_length, padding="max_length", truncation=True, return_tensors="np")
    for i in tqdm(range(0, len(src), batch_size), desc=desc, unit="batch", leave=False,
                  disable=None):  # bar on terminals only
        s, t = tokenizer(src[i:i + batch_size], **kw), tokenizer(tgt[i:i + batch_size], **kw)
        out["source_ids"].append(s["input_ids"])
        out["source_mask"].append(s["attention_mask"])
        out["target_ids"].append(t["input_ids"])
    return {k: np.concatenate(v).astype(np.int64) if v else np.zeros((0, max_length), np.int64)
            for k, v in out.items()}


def decoder_arrays(target_ids: np.ndarray, pad_id: int = 0, eos_id: int = 1,
                   decoder_start_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(y_ids int64 (N, L-1), lm_labels int32 (N, L-1, 1)) from target ids (N, L).

    Upstream FlexFlow uses ``y_ids = y[:, :-1]``, ``lm_labels = y[:, 1:]``, then
    decrements every id and writes -100 at pads. That is wrong for FlexFlow: it has
    no ignore index, so -100 is used as a raw index by the loss and metric kernels
    (out-of-row memory access), the -1 shift makes labels disagree with the model's
    vocabulary, and for T5 (no BOS) dropping ``y[:, 0]`` loses the first target word.

    Here the labels are the first L-1 target tokens, truncated the way the HF
    tokenizer would truncate to L-1 (a cut sequence still ends with eos); pad (0)
    stays a valid class. ``y_ids`` is T5's ``shift_tokens_right(labels)``: the
    decoder start token (pad, 0) followed by ``labels[:, :-1]``. So HF's
    ``model(input_ids, attention_mask, labels=lm_labels[..., 0])`` builds exactly
    these decoder inputs, and every label lies in ``[0, vocab)``.
    """
    y = np.asarray(target_ids, dtype=np.int64)
    labels = y[:, :-1].copy()
    labels[y[:, -1] != pad_id, -1] = eos_id  # row filled all L positions: keep eos last
    y_ids = np.full_like(labels, decoder_start_id)
    y_ids[:, 1:] = labels[:, :-1]
    return y_ids, labels.astype(np.int32)[..., None]


def train_permutation(n: int, seed: int = 42) -> np.ndarray:
    """Row order of the training arrays (FlexFlow's loaders never shuffle, so we do it once)."""
    return np.random.default_rng(seed).permutation(n)


# --------------------------------------------------------------------------- prepare
@dataclass
class Prepared:
    """Result of :func:`prepare`: the output folder, its meta.json content, and whether work was skipped."""

    out: Path
    meta: dict
    skipped: bool

    @property
    def numpy_dir(self) -> Path:
        return self.out / "numpy"


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _array_files(numpy_dir: Path) -> list[Path]:
    return [numpy_dir / f"{split}_{name}.npy" for split in SPLITS for name in ARRAYS]


def _tokenizer_fingerprint(model_dir: Path | None) -> str | None:
    if not has_tokenizer(model_dir):
        return None
    files = sorted(p for p in Path(model_dir).iterdir()
                   if p.is_file() and (p.name in _TOKENIZER_FILES or p.name.endswith("_config.json")
                                       or p.name == "special_tokens_map.json"))
    return hashlib.sha256(b"".join(p.name.encode() + _sha256(p).encode() for p in files)).hexdigest()


def read_meta(out: Path) -> dict:
    """``<out>/numpy/meta.json``, or :class:`PreparedDataError` naming what is wrong."""
    path = Path(out) / "numpy" / "meta.json"
    if not path.is_file():
        raise PreparedDataError(f"No prepared data in {path.parent} (no meta.json); run "
                                "scripts/prepare_mt5_data.py.")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PreparedDataError(f"{path} is not valid JSON ({exc}); prepare the data again "
                                "(scripts/prepare_mt5_data.py --force).") from None
    missing = [k for k in ("inputs", "sha256", "vocab_size", "max_length") if k not in meta] \
        if isinstance(meta, dict) else ["a JSON object"]
    if missing:
        raise PreparedDataError(f"{path} lacks {', '.join(missing)}; prepare the data again "
                                "(scripts/prepare_mt5_data.py --force).")
    return meta


def _our_names(out: Path, meta: dict | None) -> list[Path]:
    """Files a previous run wrote: those its meta.json lists, else the fixed names."""
    listed = [out / n for n in meta.get("sha256", {})] if meta else []
    return sorted({*listed, out / "train.tsv", out / "eval.tsv", *_array_files(out / "numpy"),
                   out / "numpy" / "meta.json"})


def _check_existing(out: Path, inputs: dict) -> bool:
    """True if ``out`` already holds intact data made from ``inputs``; raise if it holds other data."""
    numpy_dir, meta_path = out / "numpy", out / "numpy" / "meta.json"
    ours = [*_array_files(numpy_dir), out / "train.tsv", out / "eval.tsv", out / "tokenizer"]
    if not meta_path.is_file():
        present = [str(p) for p in ours if p.exists()]
        if present:
            raise PreparedDataExistsError(
                f"{out} already holds data without a meta.json ({', '.join(present[:3])}...); it may be "
                "someone's data or a crashed run. Pass --force (force=True) to overwrite it.")
        return False
    meta = read_meta(out)
    old = meta.get("inputs", {})
    if old != inputs:
        diff = {k: (old.get(k), inputs.get(k)) for k in sorted(set(old) | set(inputs)) if old.get(k) != inputs.get(k)}
        raise PreparedDataExistsError(
            f"{out} holds data prepared with other inputs/settings (was -> now: {diff}). Pass --force "
            "(force=True) to overwrite it, or choose another --out.")
    bad = [n for n, h in meta.get("sha256", {}).items() if not (out / n).is_file() or _sha256(out / n) != h]
    if bad:
        raise PreparedDataExistsError(
            f"{out} was prepared with these settings but files are missing or modified "
            f"({', '.join(bad)}). Pass --force (force=True) to rebuild them.")
    return True


def _build(corpus: Corpus, stage: Path, model_dir, max_length: int, vocab_size: int,
           shuffle_seed: int, inputs: dict) -> dict:
    """Write every output under ``stage`` (same layout as the output folder); the meta."""
    numpy_dir = stage / "numpy"
    numpy_dir.mkdir(parents=True)
    write_tsv(corpus, stage)
    train_df, eval_df = read_tsv(stage, blank_prefix=True)
    trained = not has_tokenizer(model_dir)
    tokenizer = load_or_train_tokenizer(model_dir, corpus.train_en + corpus.train_si,
                                        stage / "tokenizer", vocab_size)
    vocab = len(tokenizer)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    counts = {}
    for split, df in (("train", train_df), ("eval", eval_df)):
        arrays = tokenize_frame(df, tokenizer, max_length, desc=f"tokenize {split}")
        arrays["y_ids"], arrays["lm_labels"] = decoder_arrays(arrays["target_ids"], pad, eos, pad)
        if split == "train":
            order = train_permutation(len(df), shuffle_seed)
            arrays = {k: v[order] for k, v in arrays.items()}
        labels = arrays["lm_labels"]
        if labels.size and (labels.min() < 0 or labels.max() >= vocab):
            raise CorpusFormatError(f"{split} labels outside [0, {vocab}); the tokenizer of "
                                    f"{model_dir} is inconsistent.")
        for name in ARRAYS:
            np.save(numpy_dir / f"{split}_{name}.npy", np.ascontiguousarray(arrays[name]))
        counts[split] = {"pairs": len(df) // 2, "rows": len(df),
                         "source_truncated": int((arrays["source_ids"][:, -1] != pad).sum()),
                         "target_truncated": int((arrays["target_ids"][:, -1] != pad).sum())}
    written = [stage / "train.tsv", stage / "eval.tsv", *sorted((stage / "tokenizer").iterdir()),
               *_array_files(numpy_dir)]
    config = Path(model_dir) / "config.json" if model_dir is not None else None
    return {
        "inputs": inputs, "source": corpus.source, "tokenizer": "tokenizer",
        "tokenizer_trained": trained, "vocab_size": vocab,
        "model_vocab_size": json.loads(config.read_text())["vocab_size"] if config and config.is_file() else None,
        "max_length": max_length, "pad_id": pad, "eos_id": eos, "unk_id": tokenizer.unk_token_id,
        "decoder_start_id": pad, "counts": counts,
        "shapes": {f"{s}_{n}": list(np.load(numpy_dir / f"{s}_{n}.npy", mmap_mode="r").shape)
                   for s in SPLITS for n in ARRAYS},
        "labels": "lm_labels = first L-1 target ids (pad 0 is a class, no -100); "
                  "y_ids = shift_tokens_right(lm_labels) with decoder start 0",
        "train_order": f"numpy.random.default_rng({shuffle_seed}).permutation(rows)",
        "sha256": {p.relative_to(stage).as_posix(): _sha256(p) for p in written if p.is_file()},
    }


def prepare(data_dir: Path | None = None, tar: Path | None = None, out: Path = Path("examples/mt5/data"),
            model_dir: Path | None = None, max_length: int = DEFAULT_MAX_LENGTH, vocab_size: int = 2000,
            force: bool = False, shuffle_seed: int = 42, log=print) -> Prepared:
    """Corpus -> TSVs, tokenizer and ``.npy`` arrays under ``out`` (idempotent, see module doc).

    Re-running with identical inputs and settings does nothing; if ``out`` holds data
    made differently, :class:`PreparedDataExistsError` is raised before anything is
    written unless ``force`` is true. Everything is built in a staging folder inside
    ``out`` and moved into place at the end (meta.json last), so a failure leaves ``out``
    as it was. ``force`` replaces only files this tool writes: a file of yours in ``out``
    or ``out/tokenizer`` stays.
    """
    if max_length < 3:
        raise PrepareSettingsError(f"max_length must be at least 3 (got {max_length}).")
    if vocab_size < 1:
        raise PrepareSettingsError(f"vocab_size must be at least 1 (got {vocab_size}).")
    _check_model_dir(model_dir)  # before anything is written
    out = Path(out)
    corpus = load_corpus(data_dir, tar)
    inputs = {
        "format_version": FORMAT_VERSION, "corpus_sha256": corpus.fingerprint(),
        "max_length": max_length, "shuffle_seed": shuffle_seed,
        "model_dir": str(Path(model_dir).resolve()) if model_dir is not None else None,
        "model_tokenizer_sha256": _tokenizer_fingerprint(model_dir),
        "vocab_size_requested": vocab_size if not has_tokenizer(model_dir) else None,
    }
    if not force and _check_existing(out, inputs):
        log(f"{out}: up to date (same corpus and settings), nothing to do.")
        return Prepared(out, read_meta(out), skipped=True)

    try:
        old_meta = read_meta(out)
    except PreparedDataError:
        old_meta = None
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out))
    try:
        meta = _build(corpus, stage, model_dir, max_length, vocab_size, shuffle_seed, inputs)
        for path in _our_names(out, old_meta):       # the previous run's files, nothing else
            path.unlink(missing_ok=True)
        for name in meta["sha256"]:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / name, out / name)
        (out / "numpy" / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    counts = meta["counts"]
    log(f"{out}: wrote {counts['train']['rows']} train / {counts['eval']['rows']} eval rows, "
        f"vocab {meta['vocab_size']}, max_length {max_length}.")
    return Prepared(out, meta, skipped=False)


def load_arrays(out: Path, split: str = "train") -> dict[str, np.ndarray]:
    """The prepared arrays of one split (``train`` or ``eval``) as a dict."""
    meta = read_meta(out)
    arrays = {}
    for name in ARRAYS:
        path = Path(out) / "numpy" / f"{split}_{name}.npy"
        try:
            arrays[name] = np.load(path)
        except (OSError, ValueError, EOFError) as exc:
            raise PreparedDataError(f"{path} cannot be read ({exc}); prepare the data again "
                                    "(scripts/prepare_mt5_data.py --force).") from None
        want = meta.get("shapes", {}).get(f"{split}_{name}")
        if want is not None and list(arrays[name].shape) != want:
            raise PreparedDataError(f"{path} has shape {list(arrays[name].shape)}, meta.json says "
                                    f"{want}; prepare the data again (--force).")
    return arrays
