"""mT5 English<->Sinhala translation in plain PyTorch: the baseline for mt5_ff.py.

Same data, model, initial weights, optimizer (FlexFlow's Adam rule by default, or
SGD), learning-rate schedule and loss definition as mt5_ff.py, so the two loss curves
agree step by step; the model decodes the eval set with HF generate:

    python examples/mt5/mt5_torch.py -b 16 -e 10 --lr 0.003 [--model DIR]
"""

import sys
import time

import torch

from common import (batch_tokens, build_model, check_ids, decode_length, ensure_data, epoch_line,
                    hf_greedy_decode, learning_rate, load_split, load_tokenizer, new_history,
                    parse_args, plot_loss, quiet_hf_progress, report, run_script, set_torch_lr,
                    token_accuracy, torch_optimizer, write_predictions)

from flexflow_torch.progress import Progress
from flexflow_torch.threads import configure_threads


def batches(arrays, batch_size):
    n = len(arrays["source_ids"])
    for i in range(0, n - n % batch_size, batch_size):
        yield {k: torch.from_numpy(v[i:i + batch_size]) for k, v in arrays.items()}


def forward(model, batch):
    return model(input_ids=batch["source_ids"], attention_mask=batch["source_mask"],
                 decoder_input_ids=batch["y_ids"]).logits


def loss_fn(logits, labels):
    """FlexFlow's loss: cross-entropy summed over every position, / batch size."""
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).long(),
        reduction="sum") / logits.shape[0]


@torch.no_grad()
def evaluate(model, arrays, batch_size):
    losses, hits = [], []
    for batch in batches(arrays, batch_size):
        logits = forward(model, batch)
        losses.append(float(loss_fn(logits, batch["lm_labels"])))
        hits.append(token_accuracy(logits, batch["lm_labels"]))
    return sum(losses) / len(losses), *[sum(h[i] for h in hits) / len(hits) for i in (0, 1)]


def main(argv=None):
    args = parse_args(__doc__, argv, prog="mt5_torch.py")
    configure_threads()
    quiet_hf_progress()
    meta = ensure_data(args.data, args.model)
    tokenizer = load_tokenizer(args.data)
    train = load_split(args.data, "train", args.max_train, args.batch_size)
    evals = load_split(args.data, "eval", args.max_eval, args.batch_size)
    model = build_model(args, meta["vocab_size"])
    for split, arrays in (("train", train), ("eval", evals)):
        check_ids(arrays, model.config.vocab_size, args.data, split)
    optimizer = torch_optimizer(args, model)
    out = args.out / "torch"
    out.mkdir(parents=True, exist_ok=True)
    history = new_history()
    steps = len(train["source_ids"]) // args.batch_size
    history["steps_per_epoch"] = steps
    print(f"MT5 ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters); "
          f"{len(train['source_ids'])} training rows, batch {args.batch_size}, {args.epochs} "
          f"epochs, {args.optimizer} lr {args.lr} ({args.schedule}, {args.warmup} warm-up steps)",
          flush=True)
    seconds = 0.0
    tokens = batch_tokens(train, args.batch_size)
    for epoch in range(args.epochs):
        start = time.perf_counter()
        with Progress(steps, f"epoch {epoch + 1}/{args.epochs}", unit="tokens",
                      file=sys.stdout) as progress:
            for step, batch in enumerate(batches(train, args.batch_size)):
                lr = learning_rate(args, epoch * steps + step, steps * args.epochs)
                set_torch_lr(optimizer, lr)
                loss = loss_fn(forward(model, batch), batch["lm_labels"])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                history["train_loss"].append(loss.item())
                history["train_lr"].append(lr)
                progress.update(tokens[step], loss=f"{loss.item():.3f}")
        seconds += time.perf_counter() - start
        loss, real, every = evaluate(model, evals, args.batch_size)
        history["eval_loss"].append(loss)
        history["eval_accuracy_nonpad"].append(real)
        history["eval_accuracy_all"].append(every)
        print(epoch_line(history, epoch, args.epochs, seconds), flush=True)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    scores = frame = None
    if not args.no_decode:
        scores, frame = write_predictions(
            lambda ids, mask: hf_greedy_decode(model, tokenizer, ids, mask, decode_length(meta)),
            args.data, out, args.max_eval)
    plot_loss(history, out / "loss.png", "mt5_torch.py (PyTorch)")
    report("mt5_torch.py", history, scores, frame, out, seconds,
           len(train["source_ids"]) * args.epochs, args.examples)
    return history, scores


if __name__ == "__main__":
    run_script(main, "mt5_torch.py")
