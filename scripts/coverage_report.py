"""Coverage of HuggingFace architectures: convert each class through the documented
flow and compare every output with eager PyTorch.

For every class of the yardstick list (below) that the installed Transformers has and
that has a tiny-config recipe here: build it from a tiny random config (parameters
perturbed with seeded noise), convert it with `PyTorchModel(model, is_hf_model=True,
example_inputs=...)`, `torch_to_ff` onto an embedded-runtime FFModel, compile,
`create_data_loaders` with the user's arrays, `init_layers`, one `forward`, and compare
every output with eager PyTorch (float32, `torch.testing.assert_close` defaults).

    python scripts/coverage_report.py                       # all classes, table + count
    python scripts/coverage_report.py --jobs 2 --markdown docs/coverage.md
    python scripts/coverage_report.py BertModel OPTForCausalLM

The yardstick is `transformers.utils.fx._SUPPORTED_MODELS` of Transformers 4.57.6 (the
last release with `transformers.utils.fx`): 251 classes, generated from
`_REGULAR_SUPPORTED_MODEL_NAMES_AND_TASKS` x the task mappings of
`models/auto/modeling_auto.py` plus `_SPECIAL_SUPPORTED_MODELS` of that wheel
(`pip download transformers==4.57.6 --no-deps`). 238 of them exist in Transformers 5.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# transformers 4.57.6, transformers/utils/fx.py _SUPPORTED_MODELS (sorted)
YARDSTICK = """
AlbertForMaskedLM AlbertForMultipleChoice AlbertForPreTraining AlbertForQuestionAnswering
AlbertForSequenceClassification AlbertForTokenClassification AlbertModel AltCLIPModel AltCLIPTextModel
AltCLIPVisionModel BartForCausalLM BartForConditionalGeneration BartForQuestionAnswering
BartForSequenceClassification BartModel BertForMaskedLM BertForMultipleChoice BertForNextSentencePrediction
BertForPreTraining BertForQuestionAnswering BertForSequenceClassification BertForTokenClassification
BertLMHeadModel BertModel BitNetForCausalLM BitNetModel BlenderbotForCausalLM BlenderbotForConditionalGeneration
BlenderbotModel BlenderbotSmallForCausalLM BlenderbotSmallForConditionalGeneration BlenderbotSmallModel
BloomForCausalLM BloomForQuestionAnswering BloomForSequenceClassification BloomForTokenClassification BloomModel
CLIPForImageClassification CLIPModel CLIPTextModel CLIPTextModelWithProjection CLIPVisionModel
CLIPVisionModelWithProjection CohereForCausalLM CohereModel ConvNextBackbone ConvNextForImageClassification
ConvNextModel DINOv3ConvNextModel DINOv3ViTModel DebertaForMaskedLM DebertaForQuestionAnswering
DebertaForSequenceClassification DebertaForTokenClassification DebertaModel DebertaV2ForMaskedLM
DebertaV2ForMultipleChoice DebertaV2ForQuestionAnswering DebertaV2ForSequenceClassification
DebertaV2ForTokenClassification DebertaV2Model Dinov2Backbone Dinov2ForImageClassification Dinov2Model
DistilBertForMaskedLM DistilBertForMultipleChoice DistilBertForQuestionAnswering
DistilBertForSequenceClassification DistilBertForTokenClassification DistilBertModel
DonutSwinForImageClassification DonutSwinModel ElectraForCausalLM ElectraForMaskedLM ElectraForMultipleChoice
ElectraForPreTraining ElectraForQuestionAnswering ElectraForSequenceClassification ElectraForTokenClassification
ElectraModel GPT2DoubleHeadsModel GPT2ForQuestionAnswering GPT2ForSequenceClassification
GPT2ForTokenClassification GPT2LMHeadModel GPT2Model GPTJForCausalLM GPTJForQuestionAnswering
GPTJForSequenceClassification GPTJModel GPTNeoForCausalLM GPTNeoForQuestionAnswering
GPTNeoForSequenceClassification GPTNeoForTokenClassification GPTNeoModel GitVisionModel HieraBackbone
HieraForImageClassification HieraForPreTraining HieraModel HubertForCTC HubertForSequenceClassification
HubertModel IJepaForImageClassification IJepaModel LayoutLMForMaskedLM LayoutLMForQuestionAnswering
LayoutLMForSequenceClassification LayoutLMForTokenClassification LayoutLMModel LlamaForCausalLM
LlamaForQuestionAnswering LlamaForSequenceClassification LlamaForTokenClassification LlamaModel
LxmertForPreTraining LxmertForQuestionAnswering LxmertModel M2M100ForConditionalGeneration M2M100Model
MBartForCausalLM MBartForConditionalGeneration MBartForQuestionAnswering MBartForSequenceClassification
MBartModel MT5ForConditionalGeneration MT5ForQuestionAnswering MT5ForSequenceClassification
MT5ForTokenClassification MT5Model MarianForCausalLM MarianMTModel MarianModel MegatronBertForCausalLM
MegatronBertForMaskedLM MegatronBertForMultipleChoice MegatronBertForNextSentencePrediction
MegatronBertForPreTraining MegatronBertForQuestionAnswering MegatronBertForSequenceClassification
MegatronBertForTokenClassification MegatronBertModel MinistralForCausalLM MinistralForQuestionAnswering
MinistralForSequenceClassification MinistralForTokenClassification MinistralModel MistralForCausalLM
MistralForQuestionAnswering MistralForSequenceClassification MistralForTokenClassification MistralModel
MixtralForCausalLM MixtralForQuestionAnswering MixtralForSequenceClassification MixtralForTokenClassification
MixtralModel MobileBertForMaskedLM MobileBertForMultipleChoice MobileBertForNextSentencePrediction
MobileBertForPreTraining MobileBertForQuestionAnswering MobileBertForSequenceClassification
MobileBertForTokenClassification MobileBertModel NezhaForMaskedLM NezhaForMultipleChoice
NezhaForNextSentencePrediction NezhaForPreTraining NezhaForQuestionAnswering NezhaForSequenceClassification
NezhaForTokenClassification NezhaModel OPTForCausalLM OPTForQuestionAnswering OPTForSequenceClassification
OPTModel PLBartForCausalLM PLBartForConditionalGeneration PLBartForSequenceClassification PLBartModel
PeftModelForCausalLM PeftModelForSeq2SeqLM PegasusForCausalLM PegasusForConditionalGeneration PegasusModel
Qwen2ForCausalLM Qwen2ForQuestionAnswering Qwen2ForSequenceClassification Qwen2ForTokenClassification
Qwen2Model Qwen2MoeForCausalLM Qwen2MoeForQuestionAnswering Qwen2MoeForSequenceClassification
Qwen2MoeForTokenClassification Qwen2MoeModel Qwen3ForCausalLM Qwen3ForQuestionAnswering
Qwen3ForSequenceClassification Qwen3ForTokenClassification Qwen3Model Qwen3MoeForCausalLM
Qwen3MoeForQuestionAnswering Qwen3MoeForSequenceClassification Qwen3MoeForTokenClassification Qwen3MoeModel
Qwen3NextForCausalLM Qwen3NextForQuestionAnswering Qwen3NextForSequenceClassification
Qwen3NextForTokenClassification Qwen3NextModel ResNetBackbone ResNetForImageClassification ResNetModel
RobertaForCausalLM RobertaForMaskedLM RobertaForMultipleChoice RobertaForQuestionAnswering
RobertaForSequenceClassification RobertaForTokenClassification RobertaModel SegformerForImageClassification
SegformerForSemanticSegmentation SegformerModel Speech2Text2Decoder Speech2Text2ForCausalLM
Speech2TextForConditionalGeneration Speech2TextModel SwinBackbone SwinForImageClassification
SwinForMaskedImageModeling SwinModel T5ForConditionalGeneration T5ForQuestionAnswering
T5ForSequenceClassification T5ForTokenClassification T5Model TrOCRDecoder TrOCRForCausalLM
VJEPA2ForVideoClassification VJEPA2Model ViTForImageClassification ViTForMaskedImageModeling ViTModel
Wav2Vec2ForCTC Wav2Vec2ForMaskedLM Wav2Vec2ForPreTraining Wav2Vec2ForSequenceClassification Wav2Vec2Model
XGLMForCausalLM XGLMModel
""".split()

#: the fixed sample CI runs (tests/models/test_coverage_sample.py): host-side positions and gather
#: index, multiple choice, depthwise conv, mixture of experts, group/weight norm, a Transformers 5 classic
CI_SAMPLE = ["RobertaForSequenceClassification", "CLIPTextModel", "DistilBertForMultipleChoice", "ConvNextModel",
             "Qwen2MoeForCausalLM", "HubertModel", "T5ForQuestionAnswering"]

B, S, T = 2, 8, 6          # batch, text length, decoder length
VOCAB = 99

# ---------------------------------------------------------------- tiny configs
_BERT = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=64, type_vocab_size=2, pad_token_id=0)
_LLAMA = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, head_dim=8, pad_token_id=0, bos_token_id=1,
              eos_token_id=2)
# expert sizes in multiples of 4 floats: Transformers' default grouped_mm experts need 16-byte strides
_MOE = dict(_LLAMA, intermediate_size=40, num_experts=4, num_local_experts=4, num_experts_per_tok=2,
            moe_intermediate_size=16, shared_expert_intermediate_size=24)
_BART = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64,
             pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None)
_T5 = dict(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2, num_heads=4,
           relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
_VIT = dict(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37)
_CLIP_TEXT = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=64, projection_dim=16, pad_token_id=1, bos_token_id=0, eos_token_id=2)
_CLIP_VISION = dict(_VIT, projection_dim=16)
_W2V = dict(vocab_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            conv_dim=[16, 16, 16], conv_stride=[4, 2, 2], conv_kernel=[8, 3, 3], num_feat_extract_layers=3,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_codevectors_per_group=8,
            num_codevector_groups=2, codevector_dim=16, proj_codevector_dim=16, classifier_proj_size=16,
            mask_time_prob=0.0)

RECIPES = {
    "albert": dict(_BERT, embedding_size=16),
    "bert": _BERT, "megatron-bert": _BERT, "roberta": _BERT, "layoutlm": _BERT,
    "electra": dict(_BERT, embedding_size=16),
    "deberta": dict(_BERT, pooler_hidden_size=32), "deberta-v2": dict(_BERT, pooler_hidden_size=32),
    "distilbert": dict(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64,
                       pad_token_id=0),
    "mobilebert": dict(_BERT, embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16,
                       num_feedforward_networks=2),
    "gpt2": dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, pad_token_id=0,
                 bos_token_id=1, eos_token_id=2),
    "gpt_neo": dict(vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=37,
                    max_position_embeddings=64, attention_types=[[["global", "local"], 1]], window_size=4,
                    pad_token_id=0, bos_token_id=1, eos_token_id=2),
    "gptj": dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64, pad_token_id=0,
                 bos_token_id=1, eos_token_id=2),
    "bloom": dict(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4, pad_token_id=0, bos_token_id=1,
                  eos_token_id=2),
    "opt": dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=37,
                word_embed_proj_dim=32, max_position_embeddings=64, pad_token_id=1, bos_token_id=2, eos_token_id=2),
    "xglm": dict(vocab_size=VOCAB, d_model=32, num_layers=2, attention_heads=4, ffn_dim=37,
                 max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=2),
    "llama": _LLAMA, "mistral": _LLAMA, "ministral": _LLAMA, "qwen2": _LLAMA, "qwen3": _LLAMA, "cohere": _LLAMA,
    "bitnet": _LLAMA, "mixtral": _MOE, "qwen2_moe": _MOE, "qwen3_moe": _MOE,
    "qwen3_next": dict(_MOE, layer_types=["linear_attention", "full_attention"], linear_key_head_dim=8,
                       linear_value_head_dim=8, linear_num_key_heads=2, linear_num_value_heads=4,
                       linear_conv_kernel_dim=2),
    "t5": _T5, "mt5": _T5,
    "bart": _BART, "mbart": _BART, "plbart": _BART, "blenderbot": _BART, "blenderbot-small": _BART,
    "pegasus": _BART, "m2m_100": _BART,
    "marian": dict(_BART, decoder_vocab_size=VOCAB, pad_token_id=VOCAB - 1, decoder_start_token_id=VOCAB - 1),
    "trocr": dict(vocab_size=VOCAB, d_model=32, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=37,
                  max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=2),
    "speech_to_text": dict(_BART, conv_channels=16, conv_kernel_sizes=[3, 3], input_feat_per_channel=16,
                           max_source_positions=64, max_target_positions=64),
    "clip": dict(text_config=_CLIP_TEXT, vision_config=_CLIP_VISION, projection_dim=16),
    "clip_text_model": _CLIP_TEXT, "clip_vision_model": _CLIP_VISION,
    "altclip": dict(text_config=dict(_BERT, project_dim=16, pad_token_id=1), vision_config=_CLIP_VISION,
                    projection_dim=16),
    "altclip_text_model": dict(_BERT, project_dim=16, pad_token_id=1), "altclip_vision_model": _CLIP_VISION,
    "git_vision_model": _VIT,
    "vit": _VIT, "dinov2": _VIT, "ijepa": _VIT,
    "dinov3_vit": dict(_VIT, rope_theta=100.0),
    "convnext": dict(image_size=32, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_labels=3),
    "dinov3_convnext": dict(image_size=32, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1]),
    "resnet": dict(image_size=32, embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                   layer_type="basic", num_labels=3),
    "swin": dict(image_size=32, patch_size=2, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4,
                 encoder_stride=4),
    "donut-swin": dict(image_size=32, patch_size=2, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4),
    "segformer": dict(image_size=32, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32],
                      patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2],
                      decoder_hidden_size=32, num_labels=3),
    "hiera": dict(embed_dim=8, image_size=[64, 64], depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], num_labels=3,
                  decoder_hidden_size=16, decoder_depth=1, decoder_num_heads=1),
    "vjepa2": dict(patch_size=4, crop_size=16, frames_per_clip=4, tubelet_size=2, hidden_size=32,
                   num_attention_heads=4, num_hidden_layers=2, pred_hidden_size=32, pred_num_attention_heads=4,
                   pred_num_hidden_layers=1, num_pooler_layers=1, num_labels=3),
    "wav2vec2": _W2V, "hubert": _W2V,
    "lxmert": dict(vocab_size=VOCAB, hidden_size=32, num_attention_heads=4, intermediate_size=37, l_layers=1,
                   x_layers=1, r_layers=1, visual_feat_dim=16, visual_pos_dim=4, num_qa_labels=5,
                   num_object_labels=7, num_attr_labels=3, max_position_embeddings=64),
}


def resolve(name):
    """The class `name` in the installed Transformers (top level or its modeling module), or None."""
    import transformers
    cls = getattr(transformers, name, None)
    if cls is not None:
        return cls
    for module in ("trocr.modeling_trocr",):
        try:
            mod = importlib.import_module(f"transformers.models.{module}")
        except ImportError:
            continue
        if hasattr(mod, name):
            return getattr(mod, name)
    return None


def _config(cls):
    cfg_cls = cls.config_class
    recipe = RECIPES.get(cfg_cls.model_type)
    if recipe is None:
        return None
    kwargs = dict(recipe)
    if cfg_cls.model_type in ("clip", "altclip"):
        return cfg_cls(text_config=kwargs.pop("text_config"), vision_config=kwargs.pop("vision_config"), **kwargs)
    return cfg_cls(**kwargs)


def _perturb(model, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def _text(cfg, shape, pad):
    """ids in [3, vocab) with `pad` where the mask has trailing padding (row 1)."""
    import torch
    from flexflow_torch.capture import padding_mask
    g = torch.Generator().manual_seed(1)
    vocab = getattr(cfg, "vocab_size", VOCAB) or VOCAB
    ids = torch.randint(3, vocab, shape, generator=g)
    mask = padding_mask(math.prod(shape[:-1]), shape[-1], g).reshape(shape)
    if pad is not None:
        ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad))
    return ids, mask


def example_inputs(cls, model):
    """The user's arrays for one forward of `cls` (a dict name -> tensor)."""
    import inspect
    import torch
    cfg = model.config
    mt = cfg.model_type
    g = torch.Generator().manual_seed(2)
    params = inspect.signature(model.forward).parameters
    name = cls.__name__
    text_cfg = getattr(cfg, "text_config", cfg)
    vision_cfg = getattr(cfg, "vision_config", cfg)
    pad = getattr(text_cfg, "pad_token_id", None)

    def pixels(c=vision_cfg):
        size = getattr(c, "image_size", 16)
        size = size if isinstance(size, (list, tuple)) else (size, size)
        return torch.randn(B, getattr(c, "num_channels", 3), *size, generator=g)

    if mt in ("wav2vec2", "hubert"):
        return {"input_values": torch.randn(B, 320, generator=g)}
    if mt == "vjepa2":
        return {"pixel_values_videos": torch.randn(B, cfg.frames_per_clip, 3, cfg.crop_size, cfg.crop_size,
                                                   generator=g)}
    if mt == "speech_to_text":
        feats = torch.randn(B, 16, cfg.input_feat_per_channel, generator=g)
        ids, _ = _text(cfg, (B, T), None)
        return {"input_features": feats, "decoder_input_ids": ids}
    if "pixel_values" in params and "input_ids" not in params:
        return {"pixel_values": pixels()}
    inputs = {}
    if mt == "lxmert":
        ids, mask = _text(cfg, (B, S), 0)
        return {"input_ids": ids, "attention_mask": mask,
                "visual_feats": torch.randn(B, 3, cfg.visual_feat_dim, generator=g),
                "visual_pos": torch.rand(B, 3, cfg.visual_pos_dim, generator=g)}
    shape = (B, 2, S) if ("MultipleChoice" in name or "DoubleHeads" in name) else (B, S)
    ids, mask = _text(text_cfg, shape, pad)
    inputs["input_ids"] = ids
    if "attention_mask" in params:
        inputs["attention_mask"] = mask
    if mt == "layoutlm":
        x0 = torch.randint(0, 500, (B, S, 2), generator=g)
        inputs["bbox"] = torch.cat([x0, x0 + torch.randint(0, 500, (B, S, 2), generator=g)], -1)
    if "pixel_values" in params:
        inputs["pixel_values"] = pixels()
    if cfg.is_encoder_decoder and "decoder_input_ids" in params and not name.endswith(
            ("QuestionAnswering", "SequenceClassification", "TokenClassification")):
        inputs["decoder_input_ids"], _ = _text(cfg, (B, T), None)
    return inputs


# ---------------------------------------------------------------- one class
@dataclass
class Row:
    cls: str
    status: str              # match | mismatch | unsupported | capture | conversion | raw | absent | no recipe
    reason: str = ""
    max_error: float = float("nan")
    seconds: float = 0.0


def _one_line(text, limit=160):
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _unsupported_reason(exc):
    """The first unsupported operators: target, why (first clause), where (file:line)."""
    import re
    items = exc.report.unsupported

    def one(u):
        why = "" if u.reason == "no converter" else " (" + re.split(r" \(|: ", u.reason)[0] + ")"
        m = re.search(r'File "(?:.*/site-packages/)?([^"]*)", line (\d+)', u.source or "")
        return f"{u.target}{why}" + (f" at {m.group(1)}:{m.group(2)}" if m and "flexflow_torch" not in m.group(1)
                                     else "")
    return "no FlexFlow form for " + "; ".join(one(u) for u in items[:3]) + \
        (f"; and {len(items) - 3} more" if len(items) > 3 else "")


def convert_and_compare(model, inputs):
    """The documented flow on the embedded runtime; returns (max error, names of outputs
    that differ)."""
    import numpy as np
    import torch
    import torch.utils._pytree as pytree
    from flexflow_torch import PyTorchModel
    from flexflow_torch import runtime as ff
    from flexflow_torch.capture import eager_outputs
    from flexflow_torch.verify import embedded_model

    hf = PyTorchModel(model, is_hf_model=True, example_inputs=inputs)
    ffmodel = embedded_model(B)
    outputs = hf.torch_to_ff(ffmodel)
    ffmodel.compile(optimizer=ff.SGDOptimizer(ffmodel, 0.0), loss_type=ff.LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[ff.MetricsType.METRICS_MEAN_SQUARED_ERROR], comp_mode=ff.CompMode.INFERENCE)
    loaders = hf.create_data_loaders(ffmodel, {k: v.numpy() for k, v in inputs.items()})
    ffmodel.init_layers()
    for loader in loaders:
        loader.reset()
        loader.next_batch(ffmodel)
    ffmodel.forward()
    want = [x for x in pytree.tree_leaves(eager_outputs(model, inputs, False, True)) if isinstance(x, torch.Tensor)]
    if len(want) != len(outputs):
        raise AssertionError(f"{len(outputs)} converted outputs, PyTorch returns {len(want)}")
    worst, bad = 0.0, []
    for name, out, w in zip(hf.output_names, outputs, want):
        got = torch.from_numpy(np.asarray(out.get_tensor(ffmodel))).to(w.dtype)
        if got.shape != w.shape:
            bad.append(f"{name} shape {tuple(got.shape)} vs {tuple(w.shape)}")
            worst = float("inf")
            continue
        if w.numel():
            worst = max(worst, float((got.double() - w.double()).abs().max()))
        try:
            torch.testing.assert_close(got, w)
        except AssertionError:
            bad.append(name)
    return worst, bad


class _Timeout(Exception):
    pass


def run_class(name, timeout=300) -> Row:
    """Build, convert, run and compare one class."""
    start = time.perf_counter()
    cls = resolve(name)
    if cls is None:
        return Row(name, "absent", "not in the installed Transformers")
    import torch
    from flexflow_torch.errors import (CaptureError, ConversionError, FlexFlowTorchError,
                                       UnsupportedOperatorsError)
    torch.manual_seed(0)
    cfg = _config(cls)
    if cfg is None:
        return Row(name, "no recipe", f"no tiny config for model type {cls.config_class.model_type!r}")

    def alarm(*_):
        raise _Timeout()
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(timeout)
    try:
        model = _perturb(cls(cfg), 1)
        inputs = example_inputs(cls, model)
        worst, bad = convert_and_compare(model, inputs)
        row = Row(name, "match" if not bad else "mismatch", "" if not bad else "outputs differ: " + ", ".join(bad),
                  worst)
    except _Timeout:
        row = Row(name, "timeout", f"more than {timeout} s")
    except UnsupportedOperatorsError as exc:
        row = Row(name, "unsupported", _one_line(_unsupported_reason(exc), 240))
    except CaptureError as exc:
        row = Row(name, "capture", _one_line(str(exc).split(". What to do")[0], 220))
    except ConversionError as exc:
        row = Row(name, "conversion", _one_line(f"{type(exc).__name__}: {exc}"))
    except FlexFlowTorchError as exc:
        row = Row(name, "runtime", _one_line(f"{type(exc).__name__}: {exc}"))
    except Exception as exc:  # noqa: BLE001 - reported as a raw exception: a bug to fix
        row = Row(name, "raw", _one_line(f"{type(exc).__name__}: {exc}"))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    row.seconds = round(time.perf_counter() - start, 1)
    return row


# ---------------------------------------------------------------- report
def markdown(rows) -> str:
    present = [r for r in rows if r.status != "absent"]
    ok = sum(r.status == "match" for r in present)
    lines = [f"{ok} of {len(present)} classes convert and match eager PyTorch "
             f"({len(rows) - len(present)} of the yardstick's {len(rows)} are not in this Transformers).", "",
             "| class | status | reason | max error |", "| --- | --- | --- | --- |"]
    for r in rows:
        err = "" if math.isnan(r.max_error) else f"{r.max_error:.1e}"
        lines.append(f"| {r.cls} | {r.status} | {r.reason.replace('|', '/')} | {err} |")
    counts = {}
    for r in present:
        counts[r.status] = counts.get(r.status, 0) + 1
    lines += ["", "By status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))]
    return "\n".join(lines)


def _worker(names, timeout, out):
    with open(out, "a") as f:
        for name in names:
            row = run_class(name, timeout)
            f.write(json.dumps(asdict(row)) + "\n")
            f.flush()


def run_all(names, jobs, timeout):
    """Rows for `names`, computed by `jobs` worker processes (each converts its share in turn)."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for j in range(jobs):
            share = names[j::jobs]
            if not share:
                continue
            out = os.path.join(tmp, f"{j}.jsonl")
            procs.append((subprocess.Popen([sys.executable, __file__, "--worker", out, "--timeout", str(timeout),
                                            *share], stdout=subprocess.DEVNULL), out, share))
        rows = {}
        for proc, out, share in procs:
            proc.wait()
            done = {}
            if os.path.exists(out):
                for line in open(out):
                    r = Row(**json.loads(line))
                    done[r.cls] = r
            for name in share:       # a worker that died takes its current class with it
                rows[name] = done.get(name) or Row(name, "raw", f"the worker process died (exit {proc.returncode})")
    return [rows[n] for n in names]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("classes", nargs="*", help="class names (default: the whole yardstick)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per class (default 300)")
    ap.add_argument("--markdown", help="also write the table to this file")
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    names = args.classes or YARDSTICK
    if args.worker:
        _worker(names, args.timeout, args.worker)
        return 0
    rows = run_all(names, max(1, args.jobs), args.timeout)
    text = markdown(rows)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(HEADER + text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return 0


HEADER = """# HuggingFace architectures: coverage

Generated by `python scripts/coverage_report.py --jobs 2 --markdown docs/coverage.md`; do not edit
by hand. Every class of `transformers.utils.fx._SUPPORTED_MODELS` (Transformers 4.57.6, the
last release that has it) that exists in the installed Transformers is built from a tiny random
config, converted with `PyTorchModel(model, is_hf_model=True, example_inputs=...)`, compiled on the
embedded runtime, fed through `create_data_loaders` and run forward once; every output is compared
with eager PyTorch in float32 with `torch.testing.assert_close` defaults.

"""

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
