"""`PyTorchModel`: the public converter (upstream FlexFlow's entry points, kept)."""

from __future__ import annotations

import torch

from .analysis import AnalysisReport, count_ops, find_unsupported, lint, raise_if_unsupported
from .capture import make_example_inputs, normalize_example_inputs
from .context import ConversionContext
from .errors import ConversionError, InvalidModelError
from .graph import FFProgram
from .loaders import InputLoader, as_input_array, check_samples, register_replay, replay_of, write_constants
from .param_plan import ParamPlan
from .prepare import prepare
from .serialization import load_program, save_program
from .weights import copy_weights_to_torch


def convert(prepared) -> tuple:
    """(program, parameter plan) recorded from a prepared graph."""
    raise_if_unsupported(find_unsupported(prepared), prepared.ties)
    program = FFProgram()
    program.batch_size = prepared.batch_size
    program.host = prepared.host
    plan = ParamPlan(prepared.graph, prepared.params)
    ConversionContext(prepared, program, plan).run()
    return program, plan


class Replay:
    """What one replay of a program onto an FFModel made: its input tensors and the
    constants the data loaders write after init_layers."""

    def __init__(self, program, ffmodel, inputs, tensor_map=None):
        self.program, self.inputs, self.constants = program, list(inputs), []
        self.outputs = program.replay(ffmodel, self.inputs, tensor_map=tensor_map, constants=self.constants)
        register_replay(ffmodel, self)


def create_input_tensors(program, ffmodel, names=None):
    """FlexFlow input tensors of the shapes and data types the program takes (those
    named in `names` only, when given)."""
    from .backend import enums_for
    E = enums_for(ffmodel)
    return [ffmodel.create_tensor(list(program.values[v].shape), getattr(E.DataType, program.values[v].dtype))
            for v, n in zip(program.inputs, program.input_names) if names is None or n in names]


def input_arrays(program, arrays) -> list:
    """The arrays of every FlexFlow input of `program`, in order, from the user's `arrays`
    (in the user's input order, or a dict by name; samples on axis 0). Inputs computed
    on the host (position ids, pad masks, last-token indices...) are computed here,
    batch by batch, by the program's host-side part."""
    names = program.user_input_names
    if isinstance(arrays, dict):
        missing = [n for n in names if n not in arrays]
        if missing:
            raise ConversionError(f"no array for the inputs {missing}; the model takes {names}")
        arrays = [arrays[n] for n in names]
    arrays = list(arrays)
    if len(arrays) != len(names):
        raise ConversionError(f"the converted model takes {len(names)} inputs ({', '.join(names)}), "
                              f"got {len(arrays)} arrays")
    if program.host is not None:
        arrays = program.host.feed(dict(zip(names, arrays)))
    return [as_input_array(a, program.values[v].dtype, n)
            for a, v, n in zip(arrays, program.inputs, program.input_names)]


def create_data_loaders(ffmodel, arrays):
    """FlexFlow data loaders for the inputs of the converted model added to `ffmodel`
    (`arrays`: the user's, in input order or a dict by name; samples on axis 0; integer
    arrays become int32; inputs computed on the host are computed from them, see
    `input_arrays`). The first loader also writes the program's constants at every
    reset(): FlexFlow's init_layers zero-fills every input tensor."""
    replay = replay_of(ffmodel)
    arrays = input_arrays(replay.program, arrays)
    check_samples(arrays, replay.program.input_names)
    loaders = [ffmodel.create_data_loader(t, a) for t, a in zip(replay.inputs, arrays)]
    loaders[0] = InputLoader(loaders[0], ffmodel, replay.constants)
    return loaders


class PyTorchModel:
    """Convert a PyTorch / HuggingFace model into FlexFlow operators.

    `example_inputs` (dict name -> tensor, or a tuple) is used for capture when
    given; else inputs are built from `input_names`, `batch_size` and
    `seq_length` (an int, or an (encoder, decoder) pair: `decoder_*` inputs get
    the decoder length). Outputs are the model's outputs flattened in pytree
    order (ModelOutput fields in order: `logits`, `encoder_last_hidden_state`...);
    see `output_names`. Integer inputs are DT_INT32 tensors.

    `training` (default: the model's own `model.training`) captures dropout as
    FlexFlow dropout with the model's rates; eval mode has none. No loss operator is
    appended: add one with `flexflow_torch.CrossEntropyHead`."""

    def __init__(self, model, is_hf_model=False, input_names=None, batch_size=1, seq_length=None,
                 example_inputs=None, training=None):
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
        self.training = bool(model.training if training is None else training)
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
        self._captures = {}       # training? -> [prepared, program, plan]

    # ------------------------------------------------------------------ conversion
    def _capture(self, training):
        if training not in self._captures:
            prepared = prepare(self.model, self.example_inputs, self._positional, self.is_hf_model, training)
            self._captures[training] = [prepared, None, None]
        return self._captures[training]

    @property
    def prepared(self):
        return self._capture(self.training)[0]

    def program_for(self, training) -> FFProgram:
        entry = self._capture(training)
        if entry[1] is None:
            entry[1], entry[2] = convert(entry[0])
        return entry[1]

    @property
    def program(self) -> FFProgram:
        """The recorded FlexFlow program (converted once, on first use)."""
        return self.program_for(self.training)

    @property
    def eval_program(self) -> FFProgram:
        """The program captured in eval mode (no dropout): what verify compares."""
        return self.program_for(False)

    @property
    def output_names(self):
        return list(self.program.output_names)

    def create_input_tensors(self, ffmodel):
        """FlexFlow input tensors of the converted model's input shapes and data types
        (one per `ff_input_names`)."""
        return create_input_tensors(self.program, ffmodel)

    @property
    def ff_input_names(self):
        """The converted program's FlexFlow inputs, in order: the user's inputs FlexFlow reads
        and the ones computed on the host from them (`host.<node>`: position ids, masks,
        gather offsets of data-dependent indexing)."""
        return list(self.program.input_names)

    def input_arrays(self, arrays):
        """The user's arrays (in `input_names` order, or a dict) -> the arrays of every
        FlexFlow input (`ff_input_names` order); `create_data_loaders` calls it."""
        return input_arrays(self.program, arrays)

    def torch_to_ff(self, ffmodel, input_tensors=None, verbose=False):
        """Add the model's operators to `ffmodel`; returns the output tensors.

        `input_tensors` follow `ff_input_names` (a list, or a dict by name; inputs computed
        on the host that are missing from a dict are created); None creates them all (see
        `create_input_tensors`). Weights are loaded by `ffmodel.compile()`; constants by
        the loaders of `create_data_loaders` (or `load_constants`)."""
        names = self.ff_input_names
        if input_tensors is None:
            input_tensors = self.create_input_tensors(ffmodel)
        if isinstance(input_tensors, dict):
            unknown = set(input_tensors) - set(names)
            if unknown:
                raise ConversionError(f"unknown inputs {sorted(unknown)}; the model takes {names}")
            missing = [n for n in names if n not in input_tensors]
            input_tensors = dict(input_tensors, **dict(zip(missing, create_input_tensors(self.program, ffmodel,
                                                                                         missing))))
            input_tensors = [input_tensors[n] for n in names]
        replay = Replay(self.program, ffmodel, input_tensors)
        if verbose:
            print(self.program)
        return replay.outputs

    to_ff = torch_to_ff

    def input_tensors(self, ffmodel):
        return list(replay_of(ffmodel).inputs)

    def create_data_loaders(self, ffmodel, arrays):
        """See `flexflow_torch.create_data_loaders`."""
        return create_data_loaders(ffmodel, arrays)

    def load_constants(self, ffmodel):
        """See `flexflow_torch.load_constants`."""
        load_constants(ffmodel)

    def torch_to_string(self) -> str:
        """The converted program as text (one FlexFlow call per line)."""
        return str(self.program)

    def torch_to_file(self, path):
        """Save the converted graph with its weights (one safetensors file)."""
        return save_program(self.program, path)

    @staticmethod
    def file_to_ff(path, ffmodel, input_tensors=None):
        """Rebuild a saved graph on `ffmodel` without the PyTorch model; returns the outputs."""
        return file_to_ff(path, ffmodel, input_tensors)

    def copy_weights_to_torch(self, ffmodel):
        """Write `ffmodel`'s (trained) weights back into the PyTorch model, in
        place, so that e.g. HF `save_pretrained` saves them."""
        copy_weights_to_torch(ffmodel, replay_of(ffmodel).program, self.model)
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
        report.lint = lint(p, program, self._captures[self.training][2], self.model)
        return report


def load_constants(ffmodel):
    """Write the constants of the converted model added to `ffmodel` (call after
    init_layers; the loaders of `create_data_loaders` do it at every reset)."""
    write_constants(ffmodel, replay_of(ffmodel).constants)


def file_to_ff(path, ffmodel, input_tensors=None):
    """Rebuild a graph saved by `torch_to_file` on `ffmodel` (input tensors created
    when not given); returns the output tensors."""
    program = load_program(path)
    if input_tensors is None:
        input_tensors = create_input_tensors(program, ffmodel)
    return Replay(program, ffmodel, input_tensors).outputs


def analyze(model, input_names=None, batch_size=1, seq_length=None, example_inputs=None,
            is_hf_model=False) -> AnalysisReport:
    """Report (without raising) what converting `model` would hit; given an FFModel
    (embedded runtime), lint its layers against FlexFlow's rules."""
    from .runtime.model import FFModel
    if isinstance(model, FFModel):
        from .analysis import lint_ffmodel
        return AnalysisReport(lint=lint_ffmodel(model))
    ptm = model if isinstance(model, PyTorchModel) else PyTorchModel(
        model, is_hf_model=is_hf_model, input_names=input_names, batch_size=batch_size,
        seq_length=seq_length, example_inputs=example_inputs)
    return ptm.analyze()
