"""What mt5_torch.py and mt5_ff.py share: arguments, model, data, loss, evaluation.

Both scripts read FlexFlow's flags the way FlexFlow does (`-b`, `-e`, `--lr`,
`-ll:gpu N`, ...; unknown flags are skipped) plus their own options, train the same
MT5ForConditionalGeneration on the same prepared arrays with the same loss
definition, and report the same scores. FlexFlow's sparse cross-entropy gradient is
(p - onehot) / batch_size summed over every target position (no ignore index), so
the loss both sides report is `CrossEntropyLoss(reduction="sum") / batch_size`.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import data as mt5_data  # noqa: E402  (examples/mt5/data.py)

DEFAULT_DATA = HERE / "data"
DEFAULT_OUT = HERE / "output"
INPUT_NAMES = ["input_ids", "attention_mask", "decoder_input_ids"]


def parse_args(description, argv=None):
    """Script options plus FlexFlow's own flags, read as FlexFlow reads them."""
    from flexflow_torch.runtime.config import parse_flexflow_args
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False,
                                     epilog="FlexFlow flags (-b, -e, --lr, -ll:gpu N, "
                                            "-ll:fsize MB, ...) are read as FlexFlow reads them.")
    parser.add_argument("--model", type=Path, help="local pretrained MT5 folder "
                        "(save_pretrained layout); default: a small random MT5")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="prepared data folder (scripts/prepare_mt5_data.py --out)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results go")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-train", type=int, default=None,
                        help="use only the first N training rows")
    parser.add_argument("--max-eval", type=int, default=None,
                        help="evaluate and decode only the first N eval rows")
    parser.add_argument("--d-model", type=int, default=128, help="size of the default model")
    parser.add_argument("--layers", type=int, default=2, help="encoder and decoder layers")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                        help="Adam (FlexFlow's update rule) or plain SGD; --lr defaults to "
                             "the FlexFlow optimizer's own default (Adam 0.001, SGD 0.01)")
    parser.add_argument("--no-decode", action="store_true", help="skip greedy decoding")
    args, _ = parser.parse_known_args(argv)
    flags = parse_flexflow_args(argv)
    args.batch_size, args.epochs = flags["batch_size"], flags["epochs"]
    lr_given = any(a in ("--lr", "--learning-rate") for a in argv)
    args.lr = flags["learning_rate"] if lr_given else (0.001 if args.optimizer == "adam" else 0.01)
    return args


class FlexFlowAdam(torch.optim.Optimizer):
    """FlexFlow's Adam update in PyTorch (fact sheet 8): alpha_t bias correction and
    eps added to sqrt(v), so both scripts take identical steps."""

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


def ensure_data(data_dir, model_dir=None):
    """Prepare the shipped English-Sinhala data into `data_dir` if it is not there."""
    if not (Path(data_dir) / "numpy" / "meta.json").is_file():
        mt5_data.prepare(data_dir=ROOT / "data" / "eng-sin", out=Path(data_dir),
                         model_dir=model_dir)
    meta = json.loads((Path(data_dir) / "numpy" / "meta.json").read_text(encoding="utf-8"))
    return meta


def load_split(data_dir, split, limit=None, batch_size=1):
    """The prepared arrays of one split, cut to a whole number of batches."""
    arrays = mt5_data.load_arrays(Path(data_dir), split)
    n = len(arrays["source_ids"]) if limit is None else min(limit, len(arrays["source_ids"]))
    n -= n % batch_size
    if n == 0:
        raise ValueError(f"the {split} split holds fewer rows than one batch of {batch_size}")
    return {k: np.ascontiguousarray(v[:n]) for k, v in arrays.items()}


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
        model = MT5ForConditionalGeneration.from_pretrained(args.model, dropout_rate=0.0)
        if model.config.vocab_size < vocab_size:
            raise ValueError(f"--model has a vocabulary of {model.config.vocab_size}, smaller "
                             f"than the tokenizer's {vocab_size}")
        return model.eval()
    config = MT5Config(vocab_size=vocab_size, d_model=args.d_model, d_kv=args.d_model // 4,
                       d_ff=args.d_model * 2, num_layers=args.layers,
                       num_decoder_layers=args.layers, num_heads=4,
                       relative_attention_num_buckets=16, relative_attention_max_distance=32,
                       dropout_rate=0.0, feed_forward_proj="gated-gelu",
                       tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
                       decoder_start_token_id=0)
    return MT5ForConditionalGeneration(config).eval()


def token_accuracy(probs_or_logits, labels, pad_id=0):
    """(accuracy over all positions, accuracy over non-pad label positions)."""
    x = torch.as_tensor(probs_or_logits)
    y = torch.as_tensor(labels).long().reshape(x.shape[:-1])
    hit = x.argmax(-1) == y
    real = y != pad_id
    return float(hit.float().mean()), float(hit[real].float().mean()) if real.any() else math.nan


@torch.no_grad()
def greedy_decode(model, tokenizer, source_ids, source_mask, max_new_tokens, batch_size=64):
    """Greedy decoding (num_beams=1) with HF generate, in batches."""
    model.eval()
    out = []
    for i in range(0, len(source_ids), batch_size):
        ids = torch.from_numpy(source_ids[i:i + batch_size])
        mask = torch.from_numpy(source_mask[i:i + batch_size])
        gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                             num_beams=1, max_new_tokens=max_new_tokens)
        out += tokenizer.batch_decode(gen, skip_special_tokens=True)
    return out


def write_predictions(model, tokenizer, data_dir, out_dir, max_rows=None, max_new_tokens=48):
    """Decode the eval set; write predictions.csv (source, reference, prediction) and
    scores.json (BLEU, chrF per direction and overall). Returns the scores."""
    import pandas as pd
    import sacrebleu
    _, eval_df = mt5_data.read_tsv(Path(data_dir))
    arrays = mt5_data.load_arrays(Path(data_dir), "eval")
    n = len(eval_df) if max_rows is None else min(max_rows, len(eval_df))
    preds = greedy_decode(model, tokenizer, arrays["source_ids"][:n], arrays["source_mask"][:n],
                          max_new_tokens)
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
                         "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score, "rows": len(rows)}
    (out_dir / "scores.json").write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    return scores


def plot_loss(history, path, title):
    """Loss per training step (and per-epoch eval loss) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(history["train_loss"]) + 1)
    ax.plot(steps, history["train_loss"], lw=0.8, alpha=0.5, label="train loss (per batch)")
    if len(steps) >= 20:
        k = max(1, len(steps) // 50)
        smooth = np.convolve(history["train_loss"], np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, lw=1.8, label=f"train loss ({k}-batch mean)")
    if history.get("eval_loss"):
        per_epoch = len(steps) / len(history["eval_loss"])
        ax.plot([per_epoch * (e + 1) for e in range(len(history["eval_loss"]))],
                history["eval_loss"], "o-", label="eval loss (per epoch)")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy summed over tokens / batch")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(title, history, scores, out_dir, seconds, samples):
    """Print where everything went, and the figures."""
    out_dir = Path(out_dir)
    (out_dir / "history.json").write_text(json.dumps(history) + "\n", encoding="utf-8")
    print(f"\n{title}: {samples} training samples in {seconds:.1f}s "
          f"({samples / seconds:.1f} samples/s)")
    if history.get("eval_loss"):
        print(f"eval loss {history['eval_loss'][-1]:.4f}, token accuracy "
              f"{100 * history['eval_accuracy'][-1]:.2f}% (non-pad "
              f"{100 * history['eval_accuracy_nonpad'][-1]:.2f}%)")
    if scores:
        print(f"BLEU {scores['all']['bleu']:.2f}  chrF {scores['all']['chrf']:.2f} "
              f"on {scores['rows']} eval rows")
        print(f"predictions: {out_dir / 'predictions.csv'}")
        print(f"scores:      {out_dir / 'scores.json'}")
    print(f"loss curve:  {out_dir / 'loss.png'}")
    print(f"history:     {out_dir / 'history.json'}")
