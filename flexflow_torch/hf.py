"""HuggingFace's face on a converted model: `generate`, `pipeline(...)`,
`save_pretrained`/`from_pretrained`, with every forward run by FlexFlow.

    hf = FlexFlowModel.from_converted(ptm, ffmodel, tokenizer)      # after training
    pipeline("text2text-generation", model=hf, tokenizer=tokenizer)("translate ...")
    hf.save_pretrained("out")                                        # config, tokenizer, graph + weights
    FlexFlowModel.from_pretrained("out")                             # no PyTorch model class needed

FlexFlow programs have fixed shapes: inputs are padded to the converted batch and
lengths and the logits cut back. There is no KV cache (each generation step runs the
whole program; for seq2seq models the encoder too), so `generate` calls `forward` with
the full sequences. An encoder-decoder's `get_encoder()` only carries the ids to
`forward`, which runs encoder and decoder together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, GenerationConfig, GenerationMixin, Pipeline, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, ModelOutput
from transformers.pipelines import PIPELINE_REGISTRY

from .errors import ConversionError, ShapeError
from .loaders import replay_of, write_constants
from .pytorch_model import input_arrays
from .semantics.model import degree_of

GRAPH_FILE = "flexflow_model.safetensors"
_FACES: dict[str, type] = {}


class _IdsEncoder(torch.nn.Module):
    """`get_encoder()` of a converted encoder-decoder: hands the ids (and the mask) to
    `forward` inside `encoder_outputs`, where the whole program runs."""

    main_input_name = "input_ids"

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        return BaseModelOutput(last_hidden_state=input_ids.unsqueeze(-1).float())


class FlexFlowModel(PreTrainedModel, GenerationMixin):
    """A converted model on an FFModel (compiled, `init_layers()` done), seen as a HF model."""

    base_model_prefix = "flexflow"
    main_input_name = "input_ids"
    _supports_cache_class = False

    def __init__(self, config, ffmodel, tokenizer=None):
        config = config.__class__.from_dict(config.to_dict())         # our own copy
        if type(self) is not FlexFlowModel:
            config.architectures = [type(self).__name__]               # saved, so from_pretrained finds it
        config._attn_implementation = "eager"       # FlexFlow runs the attention; no HF kernel choice applies
        super().__init__(config)
        self.ffmodel, self.tokenizer = ffmodel, tokenizer
        self.replay = replay_of(ffmodel)
        program = self.replay.program
        if any(op.method == "dropout" and op.args.get("rate", 0) > 0 for op in program.ops):
            raise ConversionError("the program has dropout (converted in training mode) and FlexFlow's dropout "
                                  "drops in inference too: generate with a model converted with training=False")
        self.names = list(program.user_input_names)     # the host program computes the others
        self.shapes = program.host.input_shapes if program.host is not None else \
            {n: program.values[v].shape for n, v in zip(self.names, program.inputs)}
        self.batch = next(iter(self.shapes.values()))[0]
        self.rows = self.batch // degree_of(ffmodel._ffconfig)
        self.logits = self.replay.outputs[program.output_names.index("logits")
                                          if "logits" in program.output_names else 0]
        self.encoder = _IdsEncoder() if config.is_encoder_decoder else None
        self.generation_config.use_cache = False
        write_constants(ffmodel, self.replay.constants)

    # ---------------------------------------------------------------- construction
    @classmethod
    def for_architecture(cls, name):
        """The face class standing for HF class `name`: it carries that name, because HF's
        pipelines check a model's class name against the task's architectures."""
        if name not in _FACES:
            _FACES[name] = type(name, (cls,), {"__qualname__": f"FlexFlowModel[{name}]", "__module__": __name__})
        return _FACES[name]

    @classmethod
    def from_converted(cls, ptm, ffmodel, tokenizer=None):
        """The HF face of `ptm`'s program on `ffmodel` (its config is the model's)."""
        return cls.for_architecture(type(ptm.model).__name__)(ptm.model.config, ffmodel, tokenizer)

    def save_pretrained(self, save_directory, **kwargs):
        """The HF config (and generation config), the tokenizer if given, and the
        converted graph with FlexFlow's current weights (one safetensors file)."""
        from .serialization import save_program
        from .weights import read_weights
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(folder)
        self.generation_config.save_pretrained(folder)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)
        program = self.replay.program
        program.weights.update(read_weights(self.ffmodel, program, self.replay.prefix))
        save_program(program, folder / GRAPH_FILE)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, ffmodel=None, tokenizer=None, **kwargs):
        """Rebuild from a folder written by `save_pretrained`, on `ffmodel` (default: a
        new embedded-runtime FFModel of the graph's batch size, the graph replayed on it;
        a given `ffmodel` already holds it, compiled and initialised)."""
        folder = Path(pretrained_model_name_or_path)
        if not (folder / GRAPH_FILE).is_file():
            raise ConversionError(f"{folder} has no {GRAPH_FILE}: save it with FlexFlowModel.save_pretrained")
        config = AutoConfig.from_pretrained(folder)
        if ffmodel is None:
            from .pytorch_model import Replay, create_input_tensors
            from .serialization import load_program
            from .verify import compile_for_inference, embedded_model
            program = load_program(folder / GRAPH_FILE)          # read and validated once
            ffmodel = embedded_model(program.batch_size)
            Replay(program, ffmodel, create_input_tensors(program, ffmodel))
            compile_for_inference(ffmodel)
            ffmodel.init_layers()
        if tokenizer is None and (folder / "tokenizer_config.json").is_file():
            from transformers import AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(folder)
        face = cls.for_architecture(config.architectures[0]) if config.architectures else cls
        model = face(config, ffmodel, tokenizer)
        if (folder / "generation_config.json").is_file():
            model.generation_config = GenerationConfig.from_pretrained(folder)
            model.generation_config.use_cache = False
        return model

    # ---------------------------------------------------------------- HF plumbing
    @property
    def device(self):
        return torch.device("cpu")

    def prepare_inputs_for_generation(self, input_ids, next_sequence_length=None, **kwargs):
        """Whole sequences at every step: the program has no KV cache to continue from."""
        kwargs.pop("cache", None)
        return super().prepare_inputs_for_generation(input_ids, None, **kwargs)

    def get_encoder(self):
        return self.encoder

    def can_generate(self):
        return True

    def _init_weights(self, module):
        pass

    # ---------------------------------------------------------------- forward
    def _padded(self, name, value, pad):
        shape = self.shapes[name]
        a = np.asarray(value.detach().cpu().numpy() if torch.is_tensor(value) else value, dtype=np.int64)
        if a.shape[1] > shape[1]:
            raise ShapeError(f"{name}: {a.shape[1]} positions, the converted model takes {shape[1]}")
        a = np.pad(a, ((0, 0), (0, shape[1] - a.shape[1])), constant_values=pad)
        return np.concatenate([a, np.repeat(a[:1], self.batch - len(a), axis=0)]) if len(a) < self.batch else a

    def _run(self, feeds, rows):
        for tensor, array in zip(self.replay.inputs, input_arrays(self.replay.program, feeds)):
            tensor.set_tensor(self.ffmodel, np.ascontiguousarray(array))
        self.ffmodel.forward()
        return self.logits.get_tensor(self.ffmodel)[:rows]

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, encoder_outputs=None,
                token_type_ids=None, position_ids=None, **kwargs):
        if encoder_outputs is not None:
            input_ids = encoder_outputs[0][..., 0].long()
        if position_ids is not None and "position_ids" not in self.names and not torch.equal(
                position_ids, torch.arange(position_ids.shape[-1]).expand_as(position_ids)):
            raise ConversionError("position_ids other than 0, 1, ... (HF generate derives them from a left-padded "
                                  "attention_mask) but the converted model computes its own: convert it with "
                                  "'position_ids' among input_names")
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                 "decoder_input_ids": decoder_input_ids, "token_type_ids": token_type_ids}
        if given["attention_mask"] is None and "attention_mask" in self.names:
            given["attention_mask"] = torch.ones_like(input_ids)
        missing = [n for n in self.names if given.get(n) is None]
        if missing:
            raise ConversionError(f"the converted model takes {self.names}; {missing} not given")
        pads = {"attention_mask": 0, "token_type_ids": 0, "position_ids": 0}
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else 0
        b = len(input_ids)
        chunks = []
        for i in range(0, b, self.rows):
            feeds = {n: self._padded(n, given[n][i:i + self.rows], pads.get(n, pad)) for n in self.names}
            chunks.append(self._run(feeds, min(self.rows, b - i)))
        logits = np.concatenate(chunks)
        length = (decoder_input_ids if self.config.is_encoder_decoder else input_ids).shape[1]
        return ModelOutput(logits=torch.from_numpy(np.ascontiguousarray(logits[:, :length])))


class Seq2SeqGenerationPipeline(Pipeline):
    """Text in, generated text out, for encoder-decoder models: `pipeline("seq2seq-generation",
    model=..., tokenizer=...)`. Transformers 5 removed its own text2text-generation and
    translation tasks; this is that task on `generate`, for converted models and PyTorch ones."""

    _load_tokenizer = True

    def _sanitize_parameters(self, **generate_kwargs):
        return {}, generate_kwargs, {}

    def preprocess(self, text):
        return self.tokenizer(text, return_tensors="pt")

    def _forward(self, inputs, **generate_kwargs):
        return {"ids": self.model.generate(**inputs, **generate_kwargs)}

    def postprocess(self, outputs):
        return [{"generated_text": self.tokenizer.decode(ids, skip_special_tokens=True)} for ids in outputs["ids"]]


PIPELINE_REGISTRY.register_pipeline("seq2seq-generation", pipeline_class=Seq2SeqGenerationPipeline,
                                    pt_model=FlexFlowModel, type="text")
