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

from common import (INPUT_NAMES, build_model, ensure_data, flexflow_loss, load_split,
                    load_tokenizer, parse_args, plot_loss, report, token_accuracy,
                    write_predictions)
from tqdm.auto import tqdm

from flexflow_torch import PyTorchModel
from flexflow_torch.core import *  # noqa: F403  FlexFlow's names: real FlexFlow or embedded


def create_model(ffconfig, args, vocab_size, max_length):
    """FlexFlow input tensors, the converted MT5, and a final softmax for the loss.
    Returns the logits tensor too: the loss is read from it (log_softmax), not from
    the probabilities, which underflow for a random model."""
    ffmodel = FFModel(ffconfig)
    batch = ffconfig.batch_size
    input_ids = ffmodel.create_tensor([batch, max_length], DataType.DT_INT64)
    attention_mask = ffmodel.create_tensor([batch, max_length], DataType.DT_INT64)
    decoder_input_ids = ffmodel.create_tensor([batch, max_length - 1], DataType.DT_INT64)
    model = build_model(args, vocab_size)
    hf_model = PyTorchModel(model, is_hf_model=True, input_names=INPUT_NAMES,
                            batch_size=batch, seq_length=(max_length, max_length - 1))
    outputs = hf_model.torch_to_ff(ffmodel, [input_ids, attention_mask, decoder_input_ids])
    ffmodel.softmax(outputs[0], name="lm_probs")   # final op: sparse CE trains on probabilities
    if args.optimizer == "adam":
        optimizer = AdamOptimizer(ffmodel, alpha=args.lr)
    else:
        optimizer = SGDOptimizer(ffmodel, lr=args.lr)
    ffmodel.compile(optimizer=optimizer,
                    loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                    metrics=[MetricsType.METRICS_ACCURACY,
                             MetricsType.METRICS_SPARSE_CATEGORICAL_CROSSENTROPY])
    return ffmodel, model, hf_model, [input_ids, attention_mask, decoder_input_ids], outputs[0]


def loaders_for(ffmodel, inputs, arrays):
    xs = [ffmodel.create_data_loader(t, arrays[name]) for t, name in
          zip(inputs, ("source_ids", "source_mask", "y_ids"))]
    return xs, ffmodel.create_data_loader(ffmodel.label_tensor, arrays["lm_labels"])


def run_epoch(ffmodel, logits, xs, y, labels, batch, desc, train):
    """One pass: FlexFlow's fit (train) or eval steps, recording loss and accuracy."""
    for d in xs + [y]:
        d.reset()
    ffmodel.reset_metrics()
    steps = y.num_samples // batch
    losses, accs, accs_real = [], [], []
    bar = tqdm(range(steps), desc=desc, unit="batch", disable=None)
    for step in bar:
        for d in xs + [y]:
            d.next_batch(ffmodel)
        ffmodel.forward()
        out = logits.get_tensor(ffmodel)
        if train:
            ffmodel.zero_gradients()
            ffmodel.backward()
            ffmodel.update()
        else:
            ffmodel.compute_metrics()
        step_labels = labels[step * batch:(step + 1) * batch]
        losses.append(flexflow_loss(out, step_labels, from_logits=True))
        acc, acc_real = token_accuracy(out, step_labels)
        accs.append(acc)
        accs_real.append(acc_real)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    return losses, sum(accs) / steps, sum(accs_real) / steps


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    init_flexflow_runtime()
    ffconfig = FFConfig()
    batch = ffconfig.batch_size
    meta = ensure_data(args.data, args.model)
    tokenizer = load_tokenizer(args.data)
    train = load_split(args.data, "train", args.max_train, batch)
    evals = load_split(args.data, "eval", args.max_eval, batch)
    ffmodel, model, hf_model, inputs, logits = create_model(
        ffconfig, args, meta["vocab_size"], meta["max_length"])
    train_x, train_y = loaders_for(ffmodel, inputs, train)
    eval_x, eval_y = loaders_for(ffmodel, inputs, evals)
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
        losses, _, _ = run_epoch(ffmodel, logits, train_x, train_y, train["lm_labels"], batch,
                                 f"epoch {epoch + 1}/{ffconfig.epochs}", train=True)
        seconds += 1e-6 * (ffconfig.get_current_time() - start)
        train_accuracy = ffmodel.get_perf_metrics().get_accuracy()
        history["train_loss"] += losses
        eval_losses, acc, acc_real = run_epoch(ffmodel, logits, eval_x, eval_y, evals["lm_labels"],
                                               batch, "eval", train=False)
        history["eval_loss"].append(sum(eval_losses) / len(eval_losses))
        history["eval_accuracy"].append(acc)
        history["eval_accuracy_nonpad"].append(acc_real)
        print(f"epoch {epoch + 1}/{ffconfig.epochs}: train loss {sum(losses) / len(losses):.4f}, "
              f"train accuracy {train_accuracy:.2f}% (FlexFlow metric), eval loss "
              f"{history['eval_loss'][-1]:.4f}, eval accuracy "
              f"{ffmodel.get_perf_metrics().get_accuracy():.2f}% (non-pad {100 * acc_real:.2f}%)")
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
