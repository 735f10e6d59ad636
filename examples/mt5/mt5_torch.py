"""mT5 English<->Sinhala translation in plain PyTorch: the baseline for mt5_ff.py.

Same data, model, initial weights, optimizer (SGD) and loss definition as
mt5_ff.py, so the two loss curves can be compared step by step:

    python examples/mt5/mt5_torch.py -b 8 -e 2 [--lr 0.01] [--model DIR]
"""

import time

import torch

from common import (INPUT_NAMES, build_model, ensure_data, load_split, load_tokenizer,
                    parse_args, plot_loss, report, token_accuracy, torch_optimizer,
                    write_predictions)
from tqdm.auto import tqdm


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
    losses, acc, acc_real = [], [], []
    for batch in batches(arrays, batch_size):
        logits = forward(model, batch)
        losses.append(float(loss_fn(logits, batch["lm_labels"])))
        a, r = token_accuracy(logits, batch["lm_labels"])
        acc.append(a)
        acc_real.append(r)
    return sum(losses) / len(losses), sum(acc) / len(acc), sum(acc_real) / len(acc_real)


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    meta = ensure_data(args.data, args.model)
    tokenizer = load_tokenizer(args.data)
    train = load_split(args.data, "train", args.max_train, args.batch_size)
    evals = load_split(args.data, "eval", args.max_eval, args.batch_size)
    model = build_model(args, meta["vocab_size"])
    optimizer = torch_optimizer(args, model)
    out = args.out / "torch"
    out.mkdir(parents=True, exist_ok=True)
    history = {"train_loss": [], "eval_loss": [], "eval_accuracy": [], "eval_accuracy_nonpad": []}
    print(f"MT5 ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters), "
          f"{len(train['source_ids'])} training rows, inputs {INPUT_NAMES}, "
          f"batch {args.batch_size}, {args.epochs} epochs, {args.optimizer} lr {args.lr}")
    start = time.perf_counter()
    for epoch in range(args.epochs):
        bar = tqdm(list(batches(train, args.batch_size)), desc=f"epoch {epoch + 1}/{args.epochs}",
                   unit="batch", disable=None)
        for batch in bar:
            loss = loss_fn(forward(model, batch), batch["lm_labels"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history["train_loss"].append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        seconds = time.perf_counter() - start
        loss, acc, acc_real = evaluate(model, evals, args.batch_size)
        for key, value in zip(("eval_loss", "eval_accuracy", "eval_accuracy_nonpad"),
                              (loss, acc, acc_real)):
            history[key].append(value)
        print(f"epoch {epoch + 1}/{args.epochs}: train loss "
              f"{sum(history['train_loss'][-len(bar):]) / len(bar):.4f}, eval loss {loss:.4f}, "
              f"eval token accuracy {100 * acc:.2f}% (non-pad {100 * acc_real:.2f}%)")
        start = time.perf_counter() - seconds
    seconds = time.perf_counter() - start
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    scores = None if args.no_decode else write_predictions(
        model, tokenizer, args.data, out, args.max_eval, meta["max_length"])
    plot_loss(history, out / "loss.png", "mt5_torch.py (PyTorch)")
    report("mt5_torch.py", history, scores, out, seconds,
           len(train["source_ids"]) * args.epochs)
    return history, scores


if __name__ == "__main__":
    main()
