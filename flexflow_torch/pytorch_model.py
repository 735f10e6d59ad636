"""`PyTorchModel`: the public converter (upstream FlexFlow's entry points, kept)."""

from __future__ import annotations

import torch

from .analysis import AnalysisReport, count_ops, find_unsupported, lint, raise_if_unsupported
from .capture import check_against_examples, check_batch_size, make_example_inputs, normalize_example_inputs
from .context import ConversionContext
from .errors import ConversionError, DataLoaderError, InvalidModelError, ModelStateError
from .graph import FFProgram
from .loaders import (InputLoader, as_input_array, check_samples, register_replay, replay_of, replays_of,
                      write_constants)
from .param_plan import ParamPlan
from .prepare import prepare
from .serialization import load_program, save_program
from .weights import copy_weights_to_torch, refresh as refresh_weights


def convert(prepared, one_gpu=False, snapshot=None) -> tuple:
    """(program, parameter plan) recorded from a prepared graph; `one_gpu` lays shared
    tables used as matrices out for one GPU (one read per step, see param_plan);
    `snapshot` shares weight copies with earlier conversions (weights.bind)."""
    raise_if_unsupported(find_unsupported(prepared), prepared.ties)
    program = FFProgram()
    program.batch_size = len(next(iter(prepared.example_inputs.values())))      # samples per batch
    program.host = prepared.host
    plan = ParamPlan(prepared.graph, prepared.params)
    ConversionContext(prepared, program, plan, one_gpu, snapshot).run()
    check_index_inputs(program, list(prepared.ff_inputs(prepared.example_inputs).values()), "example input",
                       ConversionError)
    return program, plan


def check_index_inputs(program, arrays, what, error):
    """Arrays fed to the program's inputs hold valid ids wherever an input indexes an
    embedding or a gather (FlexFlow reads out of bounds without a check)."""
    from .runtime.dataloader import check_index_range
    limits = program.index_limits()
    for vid, name, array in zip(program.inputs, program.input_names, arrays):
        if vid in limits:
            array = array.detach().cpu().numpy() if hasattr(array, "detach") else array
            try:
                check_index_range(array, *limits[vid], f"{what} {name!r}")
            except DataLoaderError as exc:
                raise error(str(exc)) from None


class Replay:
    """What one replay of a program onto an FFModel made: its input tensors, the
    constants the data loaders write after init_layers, and the prefix of its layer
    names. A program added to an FFModel that already holds a layer of one of its names
    (a second conversion, or a hand-written layer) gets the first free `model<k>/`
    prefix, so that its weights load into its own layers."""

    def __init__(self, program, ffmodel, inputs, tensor_map=None, prefix=None):
        check_ffmodel(ffmodel)
        self.program, self.inputs, self.constants = program, list(inputs), []
        self.prefix = _free_prefix(program, ffmodel) if prefix is None else prefix
        self.outputs = program.replay(ffmodel, self.inputs, tensor_map=tensor_map, constants=self.constants,
                                      prefix=self.prefix)
        register_replay(ffmodel, self)


def check_ffmodel(ffmodel):
    if not (hasattr(ffmodel, "create_tensor") and hasattr(ffmodel, "_ffconfig")):
        raise ConversionError(f"expected an FFModel (flexflow_torch.core.FFModel), got {type(ffmodel).__name__}")


def _layer_names(ffmodel):
    try:
        return {op.name for op in ffmodel.get_layers().values()}
    except (AttributeError, TypeError):      # a backend that cannot list its layers
        return {name for r in replays_of(ffmodel) for name in _program_names(r.program, r.prefix)}


def _program_names(program, prefix=""):
    return {prefix + op.name for op in program.ops if op.kind == "op" and op.name is not None}


def _free_prefix(program, ffmodel):
    taken = _layer_names(ffmodel)
    prefix, k = "", len(replays_of(ffmodel))
    while _program_names(program, prefix) & taken:
        k += 1
        prefix = f"model{k}/"
    return prefix


def create_input_tensors(program, ffmodel, names=None):
    """FlexFlow input tensors of the shapes and data types the program takes (those
    named in `names` only, when given)."""
    from .backend import enums_for
    check_ffmodel(ffmodel)
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


def create_data_loaders(ffmodel, arrays, program=None):
    """FlexFlow data loaders for the inputs of the converted model added to `ffmodel`
    (`arrays`: the user's, in input order or a dict by name; samples on axis 0; integer
    arrays become int32; inputs computed on the host are computed from them, see
    `input_arrays`). The first loader also writes the program's constants at every
    reset(): FlexFlow's init_layers zero-fills every input tensor. `program` picks one
    of several converted models added to the same FFModel."""
    replay = replay_of(ffmodel, program)
    arrays = input_arrays(replay.program, arrays)
    names = replay.program.input_names
    check_samples(arrays, names)
    check_index_inputs(replay.program, arrays, "input", DataLoaderError)
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

    def __init__(self, model, is_hf_model=False, input_names=None, batch_size=None, seq_length=None,
                 example_inputs=None, training=None):
        if not isinstance(model, torch.nn.Module):
            raise InvalidModelError(f"expected a torch.nn.Module or torch.fx.GraphModule, got {type(model).__name__}")
        if batch_size is not None:
            check_batch_size(batch_size)
        if input_names is not None and (isinstance(input_names, str) or
                                        not all(isinstance(n, str) for n in input_names)):
            raise ConversionError(f"input_names must be a list of strings, got {input_names!r}")
        self.model = model
        self.is_hf_model = bool(is_hf_model) or hasattr(model, "config")
        self.input_names = list(input_names) if input_names else None
        self.seq_length = seq_length
        self.training = bool(model.training if training is None else training)
        if example_inputs is not None:
            self.example_inputs, self._positional = normalize_example_inputs(model, example_inputs, self.input_names)
            bad = [k for k, v in self.example_inputs.items() if not isinstance(v, torch.Tensor)]
            if bad:
                raise ConversionError(f"example_inputs must all be tensors; {bad} are not (HF flags such as "
                                      "use_cache are set by the converter)")
            check_against_examples(self.example_inputs, batch_size, seq_length)
        else:
            self.example_inputs = make_example_inputs(model, self.input_names, batch_size or 1, seq_length)
            self._positional = False
        self.batch_size = int(next(iter(self.example_inputs.values())).shape[0])
        self.input_names = list(self.example_inputs)
        self._captures = {}       # training? -> {"prepared", (one_gpu?) -> (program, plan)}
        self._weights = {}        # weight key -> (layout record, array): one copy for every program

    # ------------------------------------------------------------------ conversion
    def _capture(self, training):
        if training not in self._captures:
            prepared = prepare(self.model, self.example_inputs, self._positional, self.is_hf_model, training)
            self._captures[training] = {"prepared": prepared}
        return self._captures[training]

    @property
    def prepared(self):
        return self._capture(self.training)["prepared"]

    def _converted(self, training, one_gpu=False):
        entry = self._capture(training)
        if one_gpu and not ParamPlan(entry["prepared"].graph, entry["prepared"].params).has_matrix_tables():
            one_gpu = False                      # the same program either way
        if one_gpu not in entry:
            entry[one_gpu] = convert(entry["prepared"], one_gpu, self._weights)
        return entry[one_gpu]

    def program_for(self, training, one_gpu=False) -> FFProgram:
        """The program for training or eval mode; `one_gpu` reads shared tables used as
        matrices once per step (replaying it with data parallelism raises)."""
        return self._converted(training, one_gpu)[0]

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

    def torch_to_ff(self, ffmodel, input_tensors=None, verbose=False, name_prefix=None):
        """Add the model's operators to `ffmodel`; returns the output tensors.

        `input_tensors` follow `ff_input_names` (a list, or a dict by name: inputs computed
        on the host that it lacks are created); None creates them all (see
        `create_input_tensors`). Weights are loaded by `ffmodel.compile()`;
        constants by the loaders of `create_data_loaders` (or `load_constants`). Layer
        names are the module paths, prefixed with `name_prefix` (default: `model<k>/`
        only when the FFModel already holds layers of those names)."""
        from .semantics.model import degree_of
        check_ffmodel(ffmodel)
        program = self.program_for(self.training, one_gpu=degree_of(ffmodel._ffconfig) == 1)
        if input_tensors is None:
            input_tensors = create_input_tensors(program, ffmodel)
        if not isinstance(input_tensors, (list, tuple, dict)):
            raise ConversionError(f"input_tensors is a list (in input_names order) or a dict by name, got "
                                  f"{type(input_tensors).__name__}")
        if isinstance(input_tensors, dict):
            names = list(program.input_names)
            unknown = set(input_tensors) - set(names)
            if unknown:
                raise ConversionError(f"unknown inputs {sorted(unknown)}; the model takes {names}")
            missing = [n for n in names if n not in input_tensors]
            made = dict(zip(missing, create_input_tensors(program, ffmodel, missing)))
            input_tensors = [input_tensors[n] if n in input_tensors else made[n] for n in names]
        replay = Replay(program, ffmodel, input_tensors, prefix=name_prefix)
        if verbose:
            print(program)
        return replay.outputs

    to_ff = torch_to_ff

    def _programs(self):
        """Every program converted so far (eval/training, laid out for one or more GPUs)."""
        return [converted[0] for entry in self._captures.values()
                for key, converted in entry.items() if key != "prepared"]

    def _replay(self, ffmodel):
        programs = self._programs()
        mine = [r for r in replays_of(ffmodel) if any(r.program is p for p in programs)]
        if not mine:
            raise ModelStateError("add this converted model to the FFModel first (torch_to_ff)")
        return mine[-1]

    def input_tensors(self, ffmodel):
        return list(self._replay(ffmodel).inputs)

    def create_data_loaders(self, ffmodel, arrays):
        """See `flexflow_torch.create_data_loaders`."""
        return create_data_loaders(ffmodel, arrays, self._replay(ffmodel).program)

    def load_constants(self, ffmodel):
        """See `flexflow_torch.load_constants`."""
        write_constants(ffmodel, self._replay(ffmodel).constants)

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
        """Write `ffmodel`'s (trained) weights back into the PyTorch model, in place, so
        that e.g. HF `save_pretrained` saves them. The converted programs' copies of the
        weights follow, so `torch_to_file` then saves the trained weights too."""
        replay = self._replay(ffmodel)
        snapshot = copy_weights_to_torch(ffmodel, replay.program, self.model, replay.prefix)
        self._weights.clear()
        self._weights.update(snapshot)
        for program in self._programs():
            if program is not replay.program:
                refresh_weights(program, self.model, self._weights)
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
        report.lint = lint(p, program, self._converted(self.training)[1], self.model)
        return report


def load_constants(ffmodel):
    """Write the constants of the converted model added to `ffmodel` (call after
    init_layers; the loaders of `create_data_loaders` do it at every reset); with several
    converted models, the constants of all of them."""
    replays = replays_of(ffmodel) or [replay_of(ffmodel)]
    for replay in replays:
        write_constants(ffmodel, replay.constants)


def file_to_ff(path, ffmodel, input_tensors=None):
    """Rebuild a graph saved by `torch_to_file` on `ffmodel` (input tensors created
    when not given); returns the output tensors."""
    program = load_program(path)
    if input_tensors is None:
        input_tensors = create_input_tensors(program, ffmodel)
    return Replay(program, ffmodel, input_tensors).outputs


def analyze(model, input_names=None, batch_size=None, seq_length=None, example_inputs=None,
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
