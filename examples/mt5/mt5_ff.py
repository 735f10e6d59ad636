"""mT5 English<->Sinhala translation on FlexFlow: the HF model converted by
flexflow-torch's PyTorchModel, trained and evaluated through FlexFlow's API.

    python examples/mt5/mt5_ff.py -b 8 -e 2                       # embedded runtime
    flexflow_python examples/mt5/mt5_ff.py -ll:gpu 4 -ll:fsize 14000 -ll:zsize 4096 -b 32 -e 2

The training loop runs exactly the steps of FlexFlow's `FFModel.fit` (next_batch on
every loader, forward, zero_gradients, backward, update) and also reads the model's
output after each step to record the loss, which FlexFlow never returns to Python.
After training, the trained weights are copied back into the PyTorch model, which is
saved with `save_pretrained` and decodes the eval set greedily.
"""

from common import (INPUT_NAMES, build_model, ensure_data, load_split, load_tokenizer, parse_args,
                    plot_loss, report, token_accuracy, write_predictions)
from tqdm.auto import tqdm

from flexflow_torch import CrossEntropyHead, PyTorchModel, init_runtime
from flexflow_torch.core import *  # noqa: F403  FlexFlow's names: real FlexFlow or embedded


def create_model(ffconfig, args, vocab_size, max_length):
    """The converted MT5 on `ffconfig`'s FFModel, under a cross-entropy head that trains
    every target position (see flexflow_torch.heads)."""
    ffmodel = FFModel(ffconfig)
    model = build_model(args, vocab_size)
    hf_model = PyTorchModel(model, is_hf_model=True, input_names=INPUT_NAMES,
                            batch_size=ffconfig.batch_size, seq_length=(max_length, max_length - 1))
    logits = hf_model.torch_to_ff(ffmodel)[0]          # DT_INT32 input tensors are created for us
    head = CrossEntropyHead(ffmodel, logits)
    if args.optimizer == "adam":
        optimizer = AdamOptimizer(ffmodel, alpha=args.lr)
    else:
        optimizer = SGDOptimizer(ffmodel, lr=args.lr)
    ffmodel.compile(optimizer=optimizer, loss_type=head.loss_type, metrics=head.metrics)
    return ffmodel, model, hf_model, head


def loaders_for(ffmodel, hf_model, head, arrays):
    xs = hf_model.create_data_loaders(ffmodel, [arrays["source_ids"], arrays["source_mask"], arrays["y_ids"]])
    return xs, head.create_label_loader(ffmodel, arrays["lm_labels"])


def run_epoch(ffmodel, head, xs, y, labels, batch, desc, train):
    """One pass: FlexFlow's fit (train) or eval steps, recording loss and accuracy from the
    probabilities (with data parallelism, of GPU 0's samples: the rows FlexFlow reads back)."""
    for d in xs + [y]:
        d.reset()
    ffmodel.reset_metrics()
    steps = y.num_samples // batch
    rows = batch // (ffmodel._ffconfig.workers_per_node * ffmodel._ffconfig.num_nodes)
    losses, accs, accs_real = [], [], []
    bar = tqdm(range(steps), desc=desc, unit="batch", disable=None)
    for step in bar:
        for d in xs + [y]:
            d.next_batch(ffmodel)
        ffmodel.forward()
        logits = head.logits.get_tensor(ffmodel)[:rows]
        if train:
            ffmodel.zero_gradients()
            ffmodel.backward()
            ffmodel.update()
        else:
            ffmodel.compute_metrics()
        step_labels = labels[step * batch:step * batch + rows]
        losses.append(head.loss(logits, step_labels))
        acc, acc_real = token_accuracy(logits, step_labels)
        accs.append(acc)
        accs_real.append(acc_real)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    return losses, sum(accs) / steps, sum(accs_real) / steps


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    init_runtime(argv)
    ffconfig = FFConfig()
    batch = ffconfig.batch_size
    meta = ensure_data(args.data, args.model)
    tokenizer = load_tokenizer(args.data)
    train = load_split(args.data, "train", args.max_train, batch)
    evals = load_split(args.data, "eval", args.max_eval, batch)
    ffmodel, model, hf_model, head = create_model(ffconfig, args, meta["vocab_size"], meta["max_length"])
    train_x, train_y = loaders_for(ffmodel, hf_model, head, train)
    eval_x, eval_y = loaders_for(ffmodel, hf_model, head, evals)
    ffmodel.init_layers()
    out = args.out / "ff"
    out.mkdir(parents=True, exist_ok=True)
    history = {"train_loss": [], "eval_loss": [], "eval_accuracy": [], "eval_accuracy_nonpad": []}
    print(f"MT5 converted to {len(ffmodel.get_layers())} FlexFlow layers; "
          f"{len(train['source_ids'])} training rows, batch {batch}, {ffconfig.epochs} epochs, "
          f"{args.optimizer} lr {args.lr}")
    seconds = 0.0
    for epoch in range(ffconfig.epochs):
        start = ffconfig.get_current_time()
        losses, train_accuracy, _ = run_epoch(ffmodel, head, train_x, train_y, train["lm_labels"], batch,
                                              f"epoch {epoch + 1}/{ffconfig.epochs}", train=True)
        seconds += 1e-6 * (ffconfig.get_current_time() - start)
        history["train_loss"] += losses
        eval_losses, acc, acc_real = run_epoch(ffmodel, head, eval_x, eval_y, evals["lm_labels"],
                                               batch, "eval", train=False)
        history["eval_loss"].append(sum(eval_losses) / len(eval_losses))
        history["eval_accuracy"].append(acc)
        history["eval_accuracy_nonpad"].append(acc_real)
        print(f"epoch {epoch + 1}/{ffconfig.epochs}: train loss {sum(losses) / len(losses):.4f}, "
              f"train token accuracy {100 * train_accuracy:.2f}%, eval loss {history['eval_loss'][-1]:.4f}, "
              f"eval token accuracy {100 * acc:.2f}% (non-pad {100 * acc_real:.2f}%)")
    hf_model.copy_weights_to_torch(ffmodel)      # trained FlexFlow weights -> PyTorch model
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    scores = None if args.no_decode else write_predictions(
        model, tokenizer, args.data, out, args.max_eval, meta["max_length"])
    plot_loss(history, out / "loss.png", "mt5_ff.py (FlexFlow API, converted MT5)")
    report("mt5_ff.py", history, scores, out, seconds, len(train["source_ids"]) * ffconfig.epochs)
    return history, scores


if __name__ == "__main__":
    main()
