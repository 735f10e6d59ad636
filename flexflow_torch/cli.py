"""The `flexflow-torch` command line: analyze, convert or verify a model.

TARGET is a local HuggingFace folder (what `save_pretrained` writes) or
`module:factory`, a function returning an nn.Module or a `(module, example_inputs)`
pair. A user's mistake ends with one line, `flexflow-torch: error: ...` naming the
problem and the fix, and exit status 2; a report that finds problems exits 1."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from pathlib import Path

from .errors import ConfigError, ConversionError, FlexFlowTorchError

TASKS = {
    "seq2seq-lm": "AutoModelForSeq2SeqLM",
    "causal-lm": "AutoModelForCausalLM",
    "masked-lm": "AutoModelForMaskedLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "image-classification": "AutoModelForImageClassification",
    "base": "AutoModel",
}
COMMANDS = {
    "analyze": "Report every operator of the model that has no FlexFlow converter, with its "
               "module path and source line (exit 1 if there is one).",
    "convert": "Convert the model and save the FlexFlow program with its weights in one "
               "safetensors file (load it back with flexflow_torch.file_to_ff).",
    "verify": "Convert the model, run it and the PyTorch model on the same inputs and compare "
              "every output; on a mismatch name the first diverging operator (exit 1).",
}
DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "bool")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class CommandLineError(ConfigError):
    """A command-line mistake: one line naming the problem and the fix."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CommandLineError(f"{message} (see {self.prog} --help)")


# --------------------------------------------------------------------------- targets
def _hf_class(config, task, path):
    """(model class, how it was chosen): --task's Auto class, else the class that
    config.json's `architectures` names (so a BertForMaskedLM folder keeps its head)."""
    import transformers
    if task != "auto":
        return getattr(transformers, TASKS[task]), f"--task {task}"
    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return cls, "config.json architectures"
    names = ", ".join(getattr(config, "architectures", None) or []) or "none"
    print(f"flexflow-torch: {path}/config.json names no architecture this Transformers knows "
          f"({names}); loading the base model (pass --task for a head)", file=sys.stderr)
    return transformers.AutoModel, "no architecture in config.json"


def load_hf_folder(path, task="auto"):
    """(model in eval mode, config) from a save_pretrained folder."""
    import transformers
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise CommandLineError(f"{path} is a folder without config.json; pass a folder written "
                               "by save_pretrained")
    try:
        config = transformers.AutoConfig.from_pretrained(path)
    except (ValueError, OSError) as exc:
        raise CommandLineError(f"{path}/config.json cannot be read: {_first_line(exc)}") from None
    cls, how = _hf_class(config, task, path)
    try:
        model = cls.from_pretrained(path)
    except ValueError as exc:
        raise CommandLineError(
            f"--task {task} does not fit {path} (model type {config.model_type!r}): "
            f"{_first_line(exc)}; leave --task out to use config.json's architectures") from None
    except OSError as exc:
        raise CommandLineError(f"{path}: cannot load the weights: {_first_line(exc)}") from None
    print(f"flexflow-torch: {type(model).__name__} from {path} ({how})", file=sys.stderr)
    return model.eval(), config


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _load_factory(target):
    module_name, _, attr = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandLineError(f"{target}: cannot import {module_name!r} ({_first_line(exc)}); "
                               "run from the folder holding it or add it to PYTHONPATH") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise CommandLineError(f"{target}: {module_name} has no {attr!r}")
    try:
        return factory() if callable(factory) else factory
    except Exception as exc:  # noqa: BLE001 - the user's factory failed: say which and why
        raise CommandLineError(f"{target}: the factory raised {type(exc).__name__}: "
                               f"{_first_line(exc)}") from None


def load_target(target, task="auto"):
    """(model, example_inputs or None, is_hf)"""
    if os.path.isdir(target):
        model, _ = load_hf_folder(target, task)
        return model, None, True
    if ":" in target and not os.path.exists(target):
        made = _load_factory(target)
        if isinstance(made, tuple) and len(made) == 2:
            return made[0], made[1], hasattr(made[0], "config")
        return made, None, hasattr(made, "config")
    if os.path.isfile(target):
        raise CommandLineError(f"{target} is a file; pass the folder save_pretrained wrote "
                               "(config.json and the weights) or module:factory")
    if _HUB_ID.match(target):
        raise CommandLineError(
            f"{target!r} is not a local folder, and flexflow-torch downloads nothing from the "
            f"Hub: where there is internet, save it with transformers.AutoModelForCausalLM (or "
            f"the class of its task).from_pretrained({target!r}).save_pretrained("
            f"'{target.split('/')[-1]}'), copy that folder here and pass it")
    raise CommandLineError(f"{target}: no such folder, and not module:factory")


def default_input_names(model):
    cfg = getattr(model, "config", None)
    main = getattr(model, "main_input_name", "input_ids")
    if main == "pixel_values":
        return ["pixel_values"]
    names = [main, "attention_mask"]
    if getattr(cfg, "is_encoder_decoder", False):
        names.append("decoder_input_ids")
    return names


# --------------------------------------------------------------------------- options
def _seq_length(text):
    parts = text.split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a length, or ENC,DEC for "
                                         "encoder-decoder models (e.g. 48,47)") from None
    if len(values) > 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: lengths are whole numbers >= 1, one or two "
                                         "(ENC,DEC)")
    return values[0] if len(values) == 1 else tuple(values)


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def _input_spec(text):
    """NAME:SHAPE[:DTYPE], e.g. x:4x16:float32 -> (name, shape, dtype)."""
    parts = text.split(":")
    fix = "use NAME:SHAPE[:DTYPE], e.g. x:4x16:float32"
    if len(parts) not in (2, 3) or not parts[0].isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: {fix}")
    try:
        shape = tuple(int(d) for d in parts[1].lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the shape is sizes >= 1 joined by x; {fix}")
    dtype = parts[2] if len(parts) == 3 else "float32"
    if dtype not in DTYPES:
        raise argparse.ArgumentTypeError(f"{text!r}: dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return parts[0], shape, dtype


def example_from_specs(specs):
    """Seeded example inputs, passed to forward() in order: floats normal, integers
    and bools 0/1."""
    import torch
    g = torch.Generator().manual_seed(0)
    out = []
    for _, shape, dtype in specs:
        kind = getattr(torch, dtype)
        if kind.is_floating_point:
            out.append(torch.randn(shape, generator=g).to(kind))
        else:
            out.append(torch.randint(0, 2, shape, generator=g).to(kind))
    return tuple(out)


def _check_positions(model, seq_length, batch_size):
    cfg = getattr(model, "config", None)
    limit = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    lengths = seq_length if isinstance(seq_length, tuple) else (seq_length,)
    if isinstance(limit, int) and max(lengths) > limit:
        raise CommandLineError(f"--seq-length {max(lengths)} exceeds the model's {limit} positions "
                               f"(config.json); pass --seq-length {limit} or less")


def build(args):
    """The PyTorchModel the options describe."""
    from .pytorch_model import PyTorchModel
    model, example_inputs, is_hf = load_target(args.target, args.task)
    if args.input:
        if example_inputs is not None:
            raise CommandLineError(f"{args.target} returns its own example inputs; drop --input")
        if args.batch_size is not None or args.seq_length is not None:
            raise CommandLineError("--input gives the shapes: drop --batch-size/--seq-length")
        example_inputs = example_from_specs(args.input)
    names = args.input_names.split(",") if args.input_names else None
    if args.input and names is None:
        names = [name for name, _, _ in args.input]
    if example_inputs is None and names is None:
        if not is_hf:
            raise CommandLineError(
                f"{args.target} is a plain nn.Module: give its inputs, e.g. --input x:4x16:float32 "
                "(repeat per input), or return (model, example_inputs) from the factory")
        names = default_input_names(model)
    if example_inputs is None:
        batch, seq = args.batch_size or 1, args.seq_length or 16
        _check_positions(model, seq, batch)
    else:       # the example inputs fix both; PyTorchModel reports a flag that contradicts them
        batch, seq = args.batch_size, args.seq_length
    return PyTorchModel(model, is_hf_model=is_hf, input_names=names, batch_size=batch,
                        seq_length=seq, example_inputs=example_inputs)


def _is_graph_file(path):
    from safetensors import safe_open
    from .serialization import META_KEY
    try:
        with safe_open(str(path), framework="numpy") as f:
            return META_KEY in (f.metadata() or {})
    except Exception:  # noqa: BLE001 - not a safetensors file at all: not ours
        return False


def output_path(args):
    """Where `convert` writes: never over a file it did not write (a graph file of ours
    is replaced), unless --force; never over a file of the model's own folder."""
    out = Path(args.output or (os.path.basename(os.path.normpath(args.target)).replace(":", "_")
                               + ".ff.safetensors"))
    if out.is_dir():
        raise CommandLineError(f"-o {out} is a folder; give a file name, e.g. -o {out / 'model.ff.safetensors'}")
    if not out.parent.is_dir():
        raise CommandLineError(f"-o {out}: the folder {out.parent} does not exist")
    if out.exists():
        if os.path.isdir(args.target) and out.resolve().parent == Path(args.target).resolve():
            raise CommandLineError(f"-o {out} is a file of the model folder {args.target}; "
                                   "write the graph file elsewhere")
        if not args.force and not _is_graph_file(out):
            raise CommandLineError(f"-o {out} exists and is not a flexflow-torch graph file; "
                                   "pass --force to replace it, or choose another name")
    return out


def _write(ptm, out):
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        ptm.torch_to_file(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- main
def make_parser():
    parser = _Parser(prog="flexflow-torch", description="Analyze, convert or verify a PyTorch "
                     "or HuggingFace model for FlexFlow. A user's mistake ends with one line "
                     "naming the problem and the fix (exit status 2).",
                     epilog="Run 'flexflow-torch COMMAND --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, purpose in COMMANDS.items():
        p = sub.add_parser(name, help=purpose, description=purpose)
        p.add_argument("target", help="a local HuggingFace folder (save_pretrained output) or "
                       "module:factory (a function returning an nn.Module or (module, example_inputs))")
        p.add_argument("--task", default="auto", choices=["auto", *TASKS],
                       help="which HF head to load (default: the class config.json's "
                            "architectures names)")
        p.add_argument("--batch-size", type=_positive, default=None,
                       help="batch of the example inputs (default: 1)")
        p.add_argument("--seq-length", type=_seq_length, default=None,
                       help="sequence length, or ENC,DEC for encoder-decoder models (default: 16)")
        p.add_argument("--input", type=_input_spec, action="append", metavar="NAME:SHAPE[:DTYPE]",
                       help="an input of a module:factory model, e.g. x:4x16:float32 (repeat per "
                            "input; default dtype float32; integers are 0/1)")
        p.add_argument("--input-names", default=None,
                       help="comma-separated forward() arguments (default: input_ids, "
                            "attention_mask[, decoder_input_ids] or pixel_values)")
        if name == "convert":
            p.add_argument("-o", "--output", default=None,
                           help="graph file to write (default: TARGET's name + .ff.safetensors)")
            p.add_argument("--force", action="store_true",
                           help="replace an existing -o file that is not a flexflow-torch graph file")
            p.add_argument("--print-program", action="store_true",
                           help="print the FlexFlow program (one line per operator)")
    return parser


def main(argv=None):
    try:
        args = make_parser().parse_args(argv)
        out = output_path(args) if args.command == "convert" else None
        ptm = build(args)
        if args.command == "analyze":
            report = ptm.analyze()
            print(report)
            return 0 if report.ok else 1
        if args.command == "convert":
            _write(ptm, out)
            if args.print_program:
                print(ptm.program)
            print(f"wrote {out}: {len(ptm.program.ff_ops())} FlexFlow operators, "
                  f"{len(ptm.program.weights)} weights, inputs {ptm.input_names}, "
                  f"outputs {ptm.output_names}")
            return 0
        from .verify import verify
        report = verify(ptm)
        print(report)
        return 0 if report.ok else 1
    except FlexFlowTorchError as exc:
        print(f"flexflow-torch: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc):
    """The error as one line; the unsupported-operator report keeps its lines (one per
    operator: it is the answer, not a mistake)."""
    from .errors import UnsupportedOperatorsError
    if isinstance(exc, UnsupportedOperatorsError):
        return str(exc)
    text = " ".join(str(exc).split())
    return text if isinstance(exc, (CommandLineError, ConversionError)) else \
        f"{type(exc).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
