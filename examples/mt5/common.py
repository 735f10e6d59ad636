"""What mt5_torch.py and mt5_ff.py share: arguments, recipe, model, data, loss, scores.

Both scripts read FlexFlow's flags the way FlexFlow does (`-b`, `-e`, `--lr`,
`-ll:gpu N`, ...) plus their own options, and refuse anything else. They train the
same MT5ForConditionalGeneration on the same prepared arrays with the same loss,
optimizer and learning-rate schedule, so they take identical steps. FlexFlow's
sparse cross-entropy gradient is (p - onehot) / batch_size summed over every target
position (no ignore index), so the loss both sides report is
`CrossEntropyLoss(reduction="sum") / batch_size`.
"""

import argparse
import difflib
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import data as mt5_data  # noqa: E402  (examples/mt5/data.py)

from flexflow_torch.errors import FlexFlowTorchError  # noqa: E402

DEFAULT_DATA = HERE / "data"
DEFAULT_OUT = HERE / "output"
INPUT_NAMES = ["input_ids", "attention_mask", "decoder_input_ids"]
#: what a user can get wrong: one line and exit status 2, never a traceback
USER_ERRORS = (FlexFlowTorchError, mt5_data.PrepareError)


class ScriptArgumentError(FlexFlowTorchError, ValueError):
    """A command-line option the script does not know, or a bad value."""


# --------------------------------------------------------------------------- arguments
def description(doc):
    """The first paragraph of a script's docstring, as one line."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _flexflow_flags():
    from flexflow_torch.runtime.config import _BOOL_FLAGS, _VALUE_FLAGS
    return set(_VALUE_FLAGS), set(_BOOL_FLAGS) | {"--disable-control-replication"}


def unknown_flags(extras):
    """The arguments FlexFlow would not take either (FlexFlow's flags, with their values,
    and Legion/Realm options such as `-ll:gpu 4` are taken)."""
    from flexflow_torch.runtime.config import _LEGION_PREFIXES, _LEGION_VALUE_FLAGS
    value_flags, bool_flags = _flexflow_flags()
    unknown, i = [], 0
    while i < len(extras):
        arg = extras[i]
        if arg in value_flags or arg.startswith(_LEGION_PREFIXES) or arg in _LEGION_VALUE_FLAGS:
            i += 2
            continue
        if arg not in bool_flags:
            unknown.append(arg)
        i += 1
    return unknown


def build_parser(doc, prog=None, checkpoints=False):
    parser = argparse.ArgumentParser(
        prog=prog, description=description(doc), allow_abbrev=False,
        epilog="FlexFlow's flags are read as FlexFlow reads them: -b BATCH (default 64), "
               "-e EPOCHS (default 1), --lr LR (default: the optimizer's, Adam 0.001, SGD 0.01), "
               "-ll:gpu N, -ll:fsize MB, -ll:zsize MB, ... Threads: FLEXFLOW_TORCH_THREADS or "
               "OMP_NUM_THREADS (default: the cores other processes leave idle).")
    parser.add_argument("--model", type=Path, help="local pretrained MT5 folder "
                        "(save_pretrained layout); default: a small random MT5 (see --d-model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="prepared data folder (scripts/prepare_mt5_data.py --out), prepared from "
                             "data/eng-sin if missing (default: examples/mt5/data)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="results go to OUT/ff or OUT/torch (default: examples/mt5/output)")
    parser.add_argument("--seed", type=int, default=42, help="initial weights of the random model (default: 42)")
    parser.add_argument("--max-train", type=int, default=None,
                        help="use only the first N training rows (default: all)")
    parser.add_argument("--max-eval", type=int, default=None,
                        help="evaluate and decode only the first N eval rows (default: all)")
    parser.add_argument("--d-model", type=int, default=128,
                        help="width of the random model: d_kv = d/4, 4 heads, d_ff = 2d (default: 128)")
    parser.add_argument("--layers", type=int, default=2, help="encoder and decoder layers of the random model (default: 2)")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                        help="FlexFlow's Adam or SGD update rule (default: adam)")
    parser.add_argument("--schedule", choices=("constant", "linear", "cosine"), default="linear",
                        help="learning rate after warm-up: constant, or decayed to 0 at the last "
                             "step, set each step with FlexFlow's optimizer.set_learning_rate "
                             "(default: linear)")
    parser.add_argument("--warmup", type=int, default=100,
                        help="warm-up steps: the learning rate rises linearly to --lr (default: 100)")
    parser.add_argument("--examples", type=int, default=3,
                        help="example translations printed per direction at the end (default: 3)")
    parser.add_argument("--no-decode", action="store_true",
                        help="skip decoding the eval set (no predictions.csv, BLEU, chrF)")
    if checkpoints:
        parser.add_argument("--checkpoint-every", type=int, metavar="N",
                            help="write OUT/ff/checkpoint.safetensors (weights, optimizer state, "
                                 "position, history) every N steps and after every epoch "
                                 "(default: no checkpoints)")
        parser.add_argument("--resume", action="store_true",
                            help="continue from OUT/ff/checkpoint.safetensors where it stopped "
                                 "(same data and batch size), checkpointing as before")
        parser.add_argument("--force", action="store_true",
                            help="start afresh although OUT/ff/checkpoint.safetensors exists "
                                 "(it is overwritten)")
    return parser


def parse_args(doc, argv=None, prog=None, checkpoints=False):
    """The script's options plus FlexFlow's flags; anything else is an error (FlexFlow
    skips unknown flags, so a misspelt `--epoch 3` would otherwise train one epoch)."""
    from flexflow_torch.runtime.config import parse_flexflow_args
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(doc, prog, checkpoints)
    args, extras = parser.parse_known_args(argv)
    unknown = unknown_flags(extras)
    if unknown:
        value_flags, bool_flags = _flexflow_flags()
        known = [o for a in parser._actions for o in a.option_strings] + sorted(value_flags | bool_flags)
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"; did you mean {close[0]}?" if close else "; see --help"
        parser.error(f"unrecognized argument{'s' if len(unknown) > 1 else ''} "
                     f"{' '.join(unknown)}{hint}")
    try:
        flags = parse_flexflow_args(argv)
    except FlexFlowTorchError as exc:
        parser.error(str(exc))
    args.batch_size, args.epochs = flags["batch_size"], flags["epochs"]
    lr_given = any(a in ("--lr", "--learning-rate") for a in argv)
    args.lr = flags["learning_rate"] if lr_given else (0.001 if args.optimizer == "adam" else 0.01)
    if checkpoints and args.checkpoint_every is not None and args.checkpoint_every < 1:
        parser.error("--checkpoint-every must be >= 1")
    if checkpoints and args.resume and args.force:
        parser.error("--resume continues the checkpoint, --force starts afresh: pass one of them")
    for name in ("warmup", "max_train", "max_eval", "examples"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.d_model < 4 or args.d_model % 4:
        parser.error(f"--d-model must be a positive multiple of 4 (4 heads), got {args.d_model}")
    return args


def run_script(main, prog):
    """Run `main()`; a user's mistake ends with one line and exit status 2."""
    try:
        main()
    except USER_ERRORS as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(2)


# --------------------------------------------------------------------------- recipe
def learning_rate(args, step, total_steps):
    """The learning rate of update number `step` (0-based): linear warm-up from
    lr/warmup, then constant or a linear/cosine decay towards 0 at the last step."""
    if args.warmup and step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if args.schedule == "constant":
        return args.lr
    span = max(1, total_steps - args.warmup)
    done = min(1.0, (step - args.warmup) / span)
    if args.schedule == "linear":
        return args.lr * (1.0 - done)
    return args.lr * 0.5 * (1.0 + math.cos(math.pi * done))


class FlexFlowAdam(torch.optim.Optimizer):
    """FlexFlow's Adam update in PyTorch (src/runtime/optimizer.cc AdamOptimizer::next
    and the update kernel): alpha_t bias correction and eps added to sqrt(v), so both
    scripts take identical steps."""

    def __init__(self, params, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps))
        self.t = 0

    @torch.no_grad()
    def step(self):
        self.t += 1
        for group in self.param_groups:
            b1, b2 = group["beta1"], group["beta2"]
            alpha_t = group["lr"] * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["m"], state["v"] = torch.zeros_like(p), torch.zeros_like(p)
                m, v = state["m"], state["v"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-alpha_t)


def torch_optimizer(args, model):
    if args.optimizer == "adam":
        return FlexFlowAdam(model.parameters(), lr=args.lr)
    return torch.optim.SGD(model.parameters(), lr=args.lr)


def set_torch_lr(optimizer, lr):
    """PyTorch's side of FlexFlow's optimizer.set_learning_rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr


# --------------------------------------------------------------------------- data
def quiet_hf_progress():
    """No HF progress bars (save_pretrained's shards) when the output is a log."""
    if not sys.stdout.isatty():
        from transformers.utils import logging
        logging.disable_progress_bar()


def ensure_data(data_dir, model_dir=None):
    """Prepare the shipped English-Sinhala data into `data_dir` if it is not there."""
    if not (Path(data_dir) / "numpy" / "meta.json").is_file():
        mt5_data.prepare(data_dir=ROOT / "data" / "eng-sin", out=Path(data_dir),
                         model_dir=model_dir)
    return mt5_data.read_meta(Path(data_dir))


def load_split(data_dir, split, limit=None, batch_size=1):
    """The prepared arrays of one split, cut to a whole number of batches."""
    arrays = mt5_data.load_arrays(Path(data_dir), split)
    n = len(arrays["source_ids"]) if limit is None else min(limit, len(arrays["source_ids"]))
    n -= n % batch_size
    if n == 0:
        raise ScriptArgumentError(f"the {split} split of {data_dir} holds fewer rows "
                                  f"({len(arrays['source_ids'])}, limit {limit}) than one batch "
                                  f"of {batch_size}; lower -b")
    return {k: np.ascontiguousarray(v[:n]) for k, v in arrays.items()}


def check_ids(arrays, vocab_size, data_dir, split):
    """Every id and label lies in [0, vocab_size): checked before any training step
    (FlexFlow would read out of bounds; the embedded runtime raises mid-epoch)."""
    for name in ("source_ids", "y_ids", "lm_labels"):
        a = arrays[name]
        if a.size and (a.min() < 0 or a.max() >= vocab_size):
            path = Path(data_dir) / "numpy" / f"{split}_{name}.npy"
            raise ScriptArgumentError(
                f"{path}: ids in [{a.min()}, {a.max()}] but the model's vocabulary is "
                f"{vocab_size}; prepare the data with this model's tokenizer "
                "(scripts/prepare_mt5_data.py --model DIR --force)")


def load_tokenizer(data_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(Path(data_dir) / "tokenizer")


def build_model(args, vocab_size):
    """A small MT5 (random, seeded) or the local pretrained `--model` folder.

    Dropout is 0: FlexFlow's dropout has no eval switch, and both sides must run the
    same computation."""
    from transformers import MT5Config, MT5ForConditionalGeneration
    torch.manual_seed(args.seed)
    if args.model is not None:
        if not (Path(args.model) / "config.json").is_file():
            raise ScriptArgumentError(f"--model {args.model}: no config.json there; pass a folder "
                                      "written by save_pretrained")
        model = MT5ForConditionalGeneration.from_pretrained(args.model, dropout_rate=0.0)
        return model.eval()
    config = MT5Config(vocab_size=vocab_size, d_model=args.d_model, d_kv=args.d_model // 4,
                       d_ff=args.d_model * 2, num_layers=args.layers,
                       num_decoder_layers=args.layers, num_heads=4,
                       relative_attention_num_buckets=16, relative_attention_max_distance=32,
                       dropout_rate=0.0, feed_forward_proj="gated-gelu",
                       tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
                       decoder_start_token_id=0)
    return MT5ForConditionalGeneration(config).eval()


def batch_tokens(arrays, batch_size):
    """Non-pad source + label tokens of each batch (the progress line's tokens/s)."""
    real = (arrays["source_ids"] != 0).sum(1) + (arrays["lm_labels"].reshape(len(arrays["lm_labels"]), -1) != 0).sum(1)
    return real.reshape(-1, batch_size).sum(1).tolist()


# --------------------------------------------------------------------------- metrics
def token_accuracy(probs_or_logits, labels, pad_id=0):
    """(accuracy over non-pad label positions, over all positions). Pads are most label
    positions (every row is padded to the length) and trivially right, so the first
    is the one that says whether the model learned."""
    x = torch.as_tensor(probs_or_logits)
    y = torch.as_tensor(labels).long().reshape(x.shape[:-1])
    hit = x.argmax(-1) == y
    real = y != pad_id
    return float(hit[real].float().mean()) if real.any() else math.nan, float(hit.float().mean())


def new_history():
    return {"train_loss": [], "train_lr": [], "steps_per_epoch": 0, "eval_loss": [],
            "eval_accuracy_nonpad": [], "eval_accuracy_all": [], "train_loss_epoch": []}


def epoch_line(history, epoch, epochs, seconds):
    n = history["steps_per_epoch"]
    train = sum(history["train_loss"][-n:]) / n
    history["train_loss_epoch"].append(train)
    return (f"epoch {epoch + 1}/{epochs}: train loss {train:.4f}, eval loss "
            f"{history['eval_loss'][-1]:.4f}, eval token accuracy (non-pad) "
            f"{100 * history['eval_accuracy_nonpad'][-1]:.2f}%, {seconds:.0f}s")


# --------------------------------------------------------------------------- decoding
def decode_length(meta):
    """New tokens per translation: the training targets' length (max_length - 1 tokens,
    eos included), which is also the decoder length of the converted program."""
    return meta["max_length"] - 1


@torch.no_grad()
def hf_greedy_decode(model, tokenizer, source_ids, source_mask, max_new_tokens, batch_size=64):
    """Greedy decoding (num_beams=1, no sampling, no repetition tricks) with HF generate;
    `model` is a PyTorch model or a converted one (`flexflow_torch.FlexFlowModel`)."""
    model.eval()
    out = []
    for i in range(0, len(source_ids), batch_size):
        ids = torch.from_numpy(source_ids[i:i + batch_size])
        mask = torch.from_numpy(source_mask[i:i + batch_size])
        gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                             num_beams=1, max_new_tokens=max_new_tokens)
        out += tokenizer.batch_decode(gen, skip_special_tokens=True)
    return out


_LOOP = re.compile(r"(.{1,12}?)\1{3,}", re.S)


def is_loop(text):
    """A degenerate repetition: some unit of 1-12 characters repeated 4+ times in a row
    ("ඇඇඇඇ", "In In In In ")."""
    return _LOOP.search(text) is not None


def write_predictions(predict, data_dir, out_dir, max_rows=None):
    """Decode the eval set with `predict(source_ids, source_mask) -> [str]`; write
    predictions.csv (prefix, source, reference, prediction) and scores.json (BLEU, chrF,
    loop rate per direction and overall). Returns (scores, frame)."""
    import pandas as pd
    import sacrebleu
    _, eval_df = mt5_data.read_tsv(Path(data_dir))
    arrays = mt5_data.load_arrays(Path(data_dir), "eval")
    n = len(eval_df) if max_rows is None else min(max_rows, len(eval_df))
    preds = predict(arrays["source_ids"][:n], arrays["source_mask"][:n])
    frame = pd.DataFrame({"prefix": eval_df["prefix"][:n].values,
                          "source": eval_df["input_text"][:n].values,
                          "reference": eval_df["target_text"][:n].values,
                          "prediction": preds})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_dir / "predictions.csv", index=False)
    scores = {"rows": n}
    for label, rows in [("all", frame)] + list(frame.groupby("prefix")):
        refs, hyps = rows["reference"].astype(str).tolist(), rows["prediction"].astype(str).tolist()
        scores[label] = {"bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
                         "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
                         "loop_rate": float(np.mean([is_loop(h) for h in hyps])) if hyps else 0.0,
                         "exact": float(np.mean([h.strip() == r.strip() for h, r in zip(hyps, refs)]))
                         if hyps else 0.0,
                         "rows": len(rows)}
    (out_dir / "scores.json").write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    return scores, frame


# --------------------------------------------------------------------------- report
def plot_loss(history, path, title):
    """Train loss per step and per epoch, eval loss per epoch, on a log axis (the first
    steps are 100 times the later ones)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(history["train_loss"]) + 1)
    per_epoch = history["steps_per_epoch"]
    ax.plot(steps, history["train_loss"], lw=0.6, alpha=0.45, label="train loss (per step)")
    ends = [per_epoch * (e + 1) for e in range(len(history["train_loss_epoch"]))]
    ax.plot(ends, history["train_loss_epoch"], "s-", label="train loss (epoch mean)")
    if history.get("eval_loss"):
        ax.plot(ends[:len(history["eval_loss"])], history["eval_loss"], "o-",
                label="eval loss (end of epoch)")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy summed over tokens / batch")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(title, history, scores, frame, out_dir, seconds, samples, examples=3):
    """Print the figures, a few translations and where everything went."""
    out_dir = Path(out_dir)
    (out_dir / "history.json").write_text(json.dumps(history) + "\n", encoding="utf-8")
    print(f"\n{title}: {samples} training samples in {seconds:.1f}s "
          f"({samples / seconds:.1f} samples/s)")
    if history.get("eval_loss"):
        print(f"eval token accuracy {100 * history['eval_accuracy_nonpad'][-1]:.2f}% of the "
              f"target tokens (pads excluded; {100 * history['eval_accuracy_all'][-1]:.2f}% with "
              f"pads), eval loss {history['eval_loss'][-1]:.4f}")
    if scores:
        print(f"BLEU {scores['all']['bleu']:.2f}  chrF {scores['all']['chrf']:.2f}  on "
              f"{scores['rows']} eval rows (greedy; {100 * scores['all']['loop_rate']:.1f}% "
              f"repetition loops, {100 * scores['all']['exact']:.1f}% exact)")
        for prefix, rows in frame.groupby("prefix"):
            print(f"  {prefix}: BLEU {scores[prefix]['bleu']:.2f}  chrF {scores[prefix]['chrf']:.2f}")
            for _, row in rows.head(examples).iterrows():
                print(f"    {row['source']}  ->  {row['prediction']}   (reference: {row['reference']})")
        print(f"predictions: {out_dir / 'predictions.csv'}")
        print(f"scores:      {out_dir / 'scores.json'}")
    print(f"loss plot:   {out_dir / 'loss.png'}")
    print(f"history:     {out_dir / 'history.json'}")
