"""`PyTorchModel`: the public converter (upstream FlexFlow's entry points, kept)."""

from __future__ import annotations

import torch

from .analysis import AnalysisReport, count_ops, find_unsupported, lint, raise_if_unsupported
from .capture import make_example_inputs, normalize_example_inputs
from .context import ConversionContext
from .errors import ConversionError, InvalidModelError, ModelStateError
from .graph import FFProgram
from .param_plan import ParamPlan
from .prepare import prepare
from .serialization import load_program, save_program
from .weights import copy_weights_to_torch


class PyTorchModel:
    """Convert a PyTorch / HuggingFace model into FlexFlow operators.

    `example_inputs` (dict name -> tensor, or a tuple) is used for capture when
    given; else inputs are built from `input_names`, `batch_size` and
    `seq_length` (an int, or an (encoder, decoder) pair: `decoder_*` inputs get
    the decoder length). Outputs are the model's outputs flattened in pytree
    order (ModelOutput fields in order: `logits`, `encoder_last_hidden_state`...);
    see `output_names`. No operator is appended: add `ffmodel.softmax(logits)`
    yourself for a cross-entropy loss."""

    def __init__(self, model, is_hf_model=False, input_names=None, batch_size=1, seq_length=None,
                 example_inputs=None):
        if not isinstance(model, torch.nn.Module):
            raise InvalidModelError(f"expected a torch.nn.Module or torch.fx.GraphModule, got {type(model).__name__}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConversionError(f"batch_size must be a positive int, got {batch_size!r}")
        if input_names is not None and (isinstance(input_names, str) or
                                        not all(isinstance(n, str) for n in input_names)):
            raise ConversionError(f"input_names must be a list of strings, got {input_names!r}")
        self.model = model
        self.is_hf_model = bool(is_hf_model) or hasattr(model, "config")
        self.input_names = list(input_names) if input_names else None
        self.batch_size = batch_size
        self.seq_length = seq_length
        if example_inputs is not None:
            self.example_inputs, self._positional = normalize_example_inputs(model, example_inputs, self.input_names)
            bad = [k for k, v in self.example_inputs.items() if not isinstance(v, torch.Tensor)]
            if bad:
                raise ConversionError(f"example_inputs must all be tensors; {bad} are not (HF flags such as "
                                      "use_cache are set by the converter)")
        else:
            self.example_inputs = make_example_inputs(model, self.input_names, batch_size, seq_length)
            self._positional = False
        self.input_names = list(self.example_inputs)
        self._prepared = None
        self._program = None
        self._plan = None

    # ------------------------------------------------------------------ conversion
    @property
    def prepared(self):
        if self._prepared is None:
            self._prepared = prepare(self.model, self.example_inputs, self._positional, self.is_hf_model)
        return self._prepared

    @property
    def program(self) -> FFProgram:
        """The recorded FlexFlow program (converted once, on first use)."""
        if self._program is None:
            p = self.prepared
            raise_if_unsupported(find_unsupported(p), p.ties)
            program = FFProgram()
            program.batch_size = p.batch_size
            self._plan = ParamPlan(p.graph, p.params)
            ConversionContext(p, program, self._plan).run()
            self._program = program
        return self._program

    @property
    def output_names(self):
        return list(self.program.output_names)

    def torch_to_ff(self, ffmodel, input_tensors, verbose=False):
        """Add the model's operators to `ffmodel`; returns the output tensors.

        `input_tensors` follow `input_names` order. Weights (and constants) are
        loaded by `ffmodel.compile()` through `ffmodel.attr_tensors`."""
        if isinstance(input_tensors, dict):
            unknown = set(input_tensors) - set(self.input_names)
            if unknown:
                raise ConversionError(f"unknown inputs {sorted(unknown)}; the model takes {self.input_names}")
            input_tensors = [input_tensors[n] for n in self.input_names if n in input_tensors]
        outputs = self.program.replay(ffmodel, input_tensors)
        if verbose:
            print(self.program)
        return outputs

    to_ff = torch_to_ff

    def torch_to_string(self) -> str:
        """The converted program as text (one FlexFlow call per line)."""
        return str(self.program)

    def torch_to_file(self, path):
        """Save the converted graph with its weights (one safetensors file)."""
        return save_program(self.program, path)

    @staticmethod
    def file_to_ff(path, ffmodel, input_tensors):
        """Rebuild a saved graph on `ffmodel` without the PyTorch model; returns the outputs."""
        return file_to_ff(path, ffmodel, input_tensors)

    def copy_weights_to_torch(self, ffmodel):
        """Write `ffmodel`'s (trained) weights back into the PyTorch model, in
        place, so that e.g. HF `save_pretrained` saves them."""
        if self._program is None:
            raise ModelStateError("convert the model (torch_to_ff) before copying weights back")
        copy_weights_to_torch(ffmodel, self._program, self.model)
        return self.model

    def analyze(self) -> AnalysisReport:
        """The conversion report without raising: unsupported ops and FlexFlow lint."""
        from .errors import UnsupportedOperatorsError
        p = self.prepared
        report = AnalysisReport(unsupported=find_unsupported(p), aten_ops=count_ops(p), ties=p.ties)
        if report.unsupported:
            return report
        try:
            program = self.program
        except UnsupportedOperatorsError as exc:
            report.unsupported = exc.report.unsupported
            return report
        counts = {}
        for m in program.ff_ops():
            counts[m] = counts.get(m, 0) + 1
        report.ff_ops = counts
        report.lint = lint(p, program, self._plan, self.model)
        return report


def file_to_ff(path, ffmodel, input_tensors):
    """Rebuild a graph saved by `torch_to_file` on `ffmodel`; returns the outputs."""
    return load_program(path).replay(ffmodel, input_tensors)


def analyze(model, input_names=None, batch_size=1, seq_length=None, example_inputs=None,
            is_hf_model=False) -> AnalysisReport:
    """Report (without raising) what converting `model` would hit."""
    ptm = model if isinstance(model, PyTorchModel) else PyTorchModel(
        model, is_hf_model=is_hf_model, input_names=input_names, batch_size=batch_size,
        seq_length=seq_length, example_inputs=example_inputs)
    return ptm.analyze()
