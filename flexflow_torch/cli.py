"""Command line: `flexflow-torch analyze|convert|verify TARGET`.

TARGET is a local HuggingFace folder (`save_pretrained` output, loaded with
AutoConfig + AutoModel* for `--task`) or `module:factory`, a function returning
an nn.Module (or a `(module, example_inputs)` pair)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import ConversionError, FlexFlowTorchError

TASKS = {
    "seq2seq-lm": "AutoModelForSeq2SeqLM",
    "causal-lm": "AutoModelForCausalLM",
    "masked-lm": "AutoModelForMaskedLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "image-classification": "AutoModelForImageClassification",
    "base": "AutoModel",
}


def _infer_task(config):
    archs = " ".join(getattr(config, "architectures", None) or [])
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq-lm"
    if "CausalLM" in archs or "LMHead" in archs:
        return "causal-lm"
    return "base"


def load_hf_folder(path, task="auto"):
    import transformers
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ConversionError(f"{path} is not a HuggingFace model folder (no config.json)")
    config = transformers.AutoConfig.from_pretrained(path)
    task = _infer_task(config) if task == "auto" else task
    if task not in TASKS:
        raise ConversionError(f"unknown --task {task!r}; one of {', '.join(TASKS)}")
    model = getattr(transformers, TASKS[task]).from_pretrained(path)
    return model.eval(), config


def default_input_names(model):
    cfg = getattr(model, "config", None)
    main = getattr(model, "main_input_name", "input_ids")
    if main == "pixel_values":
        return ["pixel_values"]
    names = [main, "attention_mask"]
    if getattr(cfg, "is_encoder_decoder", False):
        names.append("decoder_input_ids")
    return names


def load_target(target, task="auto"):
    """(model, example_inputs or None, is_hf)"""
    if os.path.isdir(target):
        model, _ = load_hf_folder(target, task)
        return model, None, True
    if ":" in target:
        module_name, _, attr = target.partition(":")
        sys.path.insert(0, os.getcwd())
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConversionError(f"cannot load {target}: {exc}") from exc
        made = factory() if callable(factory) else factory
        if isinstance(made, tuple):
            return made[0], made[1], hasattr(made[0], "config")
        return made, None, hasattr(made, "config")
    raise ConversionError(f"{target!r} is neither a folder nor module:factory")


def _seq_length(text):
    if text is None:
        return None
    parts = [int(p) for p in text.split(",")]
    return parts[0] if len(parts) == 1 else tuple(parts)


def build(args):
    from .pytorch_model import PyTorchModel
    model, example_inputs, is_hf = load_target(args.target, args.task)
    names = args.input_names.split(",") if args.input_names else None
    if example_inputs is None and names is None:
        names = default_input_names(model)
    if example_inputs is None:      # a factory's example inputs fix both
        args.batch_size = 1 if args.batch_size is None else args.batch_size
        args.seq_length = "16" if args.seq_length is None else args.seq_length
    return PyTorchModel(model, is_hf_model=is_hf, input_names=names, batch_size=args.batch_size,
                        seq_length=_seq_length(args.seq_length), example_inputs=example_inputs)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="flexflow-torch", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["analyze", "convert", "verify"])
    parser.add_argument("target", help="HF model folder or module:factory")
    parser.add_argument("--task", default="auto", help="HF task: " + ", ".join(TASKS) + " (default: from config)")
    parser.add_argument("--batch-size", type=int, default=None, help="(default: 1)")
    parser.add_argument("--seq-length", default=None, help="int, or ENC,DEC for encoder-decoder models (default: 16)")
    parser.add_argument("--input-names", default=None, help="comma separated (default: from the model)")
    parser.add_argument("-o", "--output", default=None, help="graph file to write (convert)")
    parser.add_argument("--print-program", action="store_true")
    args = parser.parse_args(argv)
    try:
        ptm = build(args)
        if args.command == "analyze":
            report = ptm.analyze()
            print(report)
            return 0 if report.ok else 1
        if args.command == "convert":
            out = args.output or (os.path.basename(os.path.normpath(args.target)).replace(":", "_") + ".ff.safetensors")
            ptm.torch_to_file(out)
            if args.print_program:
                print(ptm.program)
            print(f"wrote {out}: {len(ptm.program.ff_ops())} FlexFlow operators, "
                  f"{len(ptm.program.weights)} weights, inputs {ptm.input_names}, outputs {ptm.output_names}")
            return 0
        from .verify import verify
        report = verify(ptm)
        print(report)
        return 0 if report.ok else 1
    except FlexFlowTorchError as exc:
        print(f"flexflow-torch: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
