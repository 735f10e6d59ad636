"""mT5 English<->Sinhala translation on FlexFlow: the HF model converted by
flexflow-torch's PyTorchModel, trained, evaluated and decoded through FlexFlow's API.

    python examples/mt5/mt5_ff.py -b 16 -e 10 --lr 0.003           # embedded runtime (the quick start)
    flexflow_python examples/mt5/mt5_ff.py -ll:gpu 4 -ll:fsize 14000 -ll:zsize 4096 -b 32 -e 10

The training loop runs exactly the steps of FlexFlow's `FFModel.fit` (next_batch on
every loader, forward, zero_gradients, backward, update), sets the learning rate of
each step with the optimizer's `set_learning_rate` (FlexFlow has no schedule object),
and reads the model's output after each step to record the loss, which FlexFlow never
returns to Python. `--checkpoint-every N` saves weights, optimizer state and position
(flexflow_torch.save_checkpoint) and `--resume` continues from them. The translations
come from the converted model itself: HF `generate` over `flexflow_torch.FlexFlowModel`,
every step one forward of the FlexFlow program. The trained weights are also copied back
into the PyTorch model, saved with `save_pretrained` (OUT/ff/model), and the converted
model is saved for `FlexFlowModel.from_pretrained` (OUT/ff/flexflow).
"""

import sys

from common import (INPUT_NAMES, ScriptArgumentError, batch_tokens, build_model, check_ids,
                    decode_length, ensure_data, epoch_line, hf_greedy_decode, learning_rate,
                    load_split, load_tokenizer, new_history, parse_args, plot_loss,
                    quiet_hf_progress, report, run_script, token_accuracy, write_predictions)

from flexflow_torch import (CrossEntropyHead, FlexFlowModel, PyTorchModel, init_runtime,
                            load_checkpoint, save_checkpoint)
from flexflow_torch.core import *  # noqa: F403  FlexFlow's names: real FlexFlow or embedded
from flexflow_torch.progress import Progress


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
    return ffmodel, optimizer, model, hf_model, head


def loaders_for(ffmodel, hf_model, head, arrays):
    xs = hf_model.create_data_loaders(ffmodel, [arrays["source_ids"], arrays["source_mask"], arrays["y_ids"]])
    return xs, head.create_label_loader(ffmodel, arrays["lm_labels"])


def run_epoch(ffmodel, head, xs, y, arrays, batch, desc, train=None, start=0, after_step=None):
    """One pass: FlexFlow's fit steps (`train` = (optimizer, lr of step i)) or eval steps,
    from step `start` (the batches before it are skipped, as a resumed run must);
    `after_step(i, losses)` runs after each training step. Returns the per-step losses
    and the accuracy (non-pad, all) from the read-back logits (with data parallelism, of
    GPU 0's samples: the rows FlexFlow reads back)."""
    for d in xs + [y]:
        d.reset()
    ffmodel.reset_metrics()
    labels = arrays["lm_labels"]
    steps = y.num_samples // batch
    rows = batch // (ffmodel._ffconfig.workers_per_node * ffmodel._ffconfig.num_nodes)
    losses, hits = [], []
    quiet = {} if train else {"every": steps}          # eval: a bar on a terminal only
    with Progress(steps - start, desc, unit="tokens", file=sys.stdout, **quiet) as progress:
        for step, tokens in enumerate(batch_tokens(arrays, batch)):
            for d in xs + [y]:
                d.next_batch(ffmodel)
            if step < start:
                continue
            ffmodel.forward()
            logits = head.logits.get_tensor(ffmodel)[:rows]
            if train:
                optimizer, lr_of = train
                optimizer.set_learning_rate(lr_of(step))
                ffmodel.zero_gradients()
                ffmodel.backward()
                ffmodel.update()
            else:
                ffmodel.compute_metrics()
            step_labels = labels[step * batch:step * batch + rows]
            losses.append(head.loss(logits, step_labels))
            hits.append(token_accuracy(logits, step_labels))
            progress.update(tokens, loss=f"{losses[-1]:.3f}")
            if after_step is not None:
                after_step(step, losses)
    return losses, [sum(h[i] for h in hits) / len(hits) for i in (0, 1)]


def predict(face, source_ids, source_mask, max_new_tokens):
    """Greedy translations by the converted model: HF generate over the FlexFlowModel
    face, each step one forward of the FlexFlow program over the whole (padded) decoder
    sequence; the same tokens as HF generate on the same weights (tests/e2e say so)."""
    return hf_greedy_decode(face, face.tokenizer, source_ids, source_mask, max_new_tokens)


class Checkpoints:
    """OUT/ff/checkpoint.safetensors: written every `every` steps and after every epoch
    (never after an epoch's last step before its evaluation), read back by --resume.
    The script's history and clock travel in the checkpoint's `extra`."""

    def __init__(self, args, out, ffmodel, data):
        self.path, self.ffmodel, self.data = out / "checkpoint.safetensors", ffmodel, data
        self.every = args.checkpoint_every
        self.enabled = self.every is not None or args.resume
        if args.resume and not self.path.is_file():
            raise ScriptArgumentError(f"--resume: no checkpoint at {self.path}; train with "
                                      "--checkpoint-every N first")
        if self.every is not None and self.path.exists() and not (args.resume or args.force):
            raise ScriptArgumentError(f"{self.path} exists: continue it with --resume, or start "
                                      "afresh with --force (it is overwritten)")

    def load(self):
        """(epoch, step) to continue from, the history and the seconds trained so far."""
        at = load_checkpoint(self.ffmodel, self.path, data=self.data)
        print(f"resumed from {self.path}: epoch {at.epoch + 1}, step {at.batch}", flush=True)
        return at.epoch, at.batch, at.extra["history"], at.extra["seconds"]

    def save(self, epoch, step, history, seconds):
        if self.enabled:
            save_checkpoint(self.ffmodel, self.path, epoch, step, data=self.data,
                            extra={"history": history, "seconds": seconds})

    def in_epoch(self, epoch, steps, history, lrs, clock):
        """The after_step hook of a training epoch: every `every` steps of the run."""
        def after_step(step, losses):
            done = epoch * steps + step + 1
            if self.every and done % self.every == 0 and step + 1 < steps:
                partial = dict(history, train_loss=history["train_loss"] + losses,
                               train_lr=history["train_lr"] + lrs[step + 1 - len(losses):step + 1])
                self.save(epoch, step + 1, partial, clock())
        return after_step


def main(argv=None):
    args = parse_args(__doc__, argv, prog="mt5_ff.py", checkpoints=True)
    init_runtime(argv)                   # FlexFlow's keys from the command line; threads
    ffconfig = FFConfig()
    batch, epochs = ffconfig.batch_size, ffconfig.epochs
    quiet_hf_progress()
    meta = ensure_data(args.data, args.model)
    tokenizer = load_tokenizer(args.data)
    train = load_split(args.data, "train", args.max_train, batch)
    evals = load_split(args.data, "eval", args.max_eval, batch)
    out = args.out / "ff"
    out.mkdir(parents=True, exist_ok=True)
    ffmodel, optimizer, model, hf_model, head = create_model(ffconfig, args, meta["vocab_size"],
                                                             meta["max_length"])
    for split, arrays in (("train", train), ("eval", evals)):
        check_ids(arrays, model.config.vocab_size, args.data, split)
    train_x, train_y = loaders_for(ffmodel, hf_model, head, train)
    eval_x, eval_y = loaders_for(ffmodel, hf_model, head, evals)
    ffmodel.init_layers()
    steps = len(train["source_ids"]) // batch
    checkpoints = Checkpoints(args, out, ffmodel, {"batch_size": batch, "train_rows": len(train["source_ids"]),
                                                   "eval_rows": len(evals["source_ids"])})
    history, seconds, first_epoch, first_step = new_history(), 0.0, 0, 0
    history["steps_per_epoch"] = steps
    if args.resume:
        first_epoch, first_step, history, seconds = checkpoints.load()
    print(f"MT5 ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters) converted to "
          f"{len(ffmodel.get_layers())} FlexFlow layers; {len(train['source_ids'])} training rows, "
          f"batch {batch}, {epochs} epochs, {args.optimizer} lr {args.lr} ({args.schedule}, "
          f"{args.warmup} warm-up steps)", flush=True)
    for epoch in range(first_epoch, epochs):
        start = ffconfig.get_current_time()
        clock = lambda: seconds + 1e-6 * (ffconfig.get_current_time() - start)  # noqa: E731
        skip = first_step if epoch == first_epoch else 0
        lrs = [learning_rate(args, epoch * steps + i, steps * epochs) for i in range(steps)]
        losses, _ = run_epoch(ffmodel, head, train_x, train_y, train, batch, f"epoch {epoch + 1}/{epochs}",
                              train=(optimizer, lrs.__getitem__), start=skip,
                              after_step=checkpoints.in_epoch(epoch, steps, history, lrs, clock))
        seconds = clock()
        history["train_loss"] += losses
        history["train_lr"] += lrs[skip:]
        eval_losses, (real, every) = run_epoch(ffmodel, head, eval_x, eval_y, evals, batch, "eval")
        history["eval_loss"].append(sum(eval_losses) / len(eval_losses))
        history["eval_accuracy_nonpad"].append(real)
        history["eval_accuracy_all"].append(every)
        print(epoch_line(history, epoch, epochs, seconds), flush=True)
        checkpoints.save(epoch + 1, 0, history, seconds)
    face = FlexFlowModel.from_converted(hf_model, ffmodel, tokenizer)
    face.save_pretrained(out / "flexflow")        # the converted model: FlexFlowModel.from_pretrained
    hf_model.copy_weights_to_torch(ffmodel)      # trained FlexFlow weights -> PyTorch model
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    scores = frame = None
    if not args.no_decode:
        scores, frame = write_predictions(
            lambda ids, mask: predict(face, ids, mask, decode_length(meta)), args.data, out, args.max_eval)
    plot_loss(history, out / "loss.png", "mt5_ff.py (FlexFlow API, converted MT5)")
    report("mt5_ff.py", history, scores, frame, out, seconds, len(train["source_ids"]) * epochs,
           args.examples)
    return history, scores


if __name__ == "__main__":
    run_script(main, "mt5_ff.py")
