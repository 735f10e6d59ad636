"""Decoding with the converted model's own FlexFlow program (HF `generate` over
`FlexFlowModel`, every step one FlexFlow forward) gives HF `generate`'s tokens on the
PyTorch model with the same weights: greedy and beam search, for a seq2seq model and
a causal LM, with more rows than the program's batch and padded prompts."""

import pytest
import torch

from flexflow_torch import PyTorchModel
from flexflow_torch.errors import ConversionError, ShapeError
from flexflow_torch.hf import FlexFlowModel
from flexflow_torch.verify import compile_for_inference, embedded_model

from tiny_models import gpt2, mt5


def _face(model, batch, training=False, **kwargs):
    kwargs.update(batch_size=batch)
    ptm = PyTorchModel(model, is_hf_model=True, training=training, **kwargs)
    ffmodel = embedded_model(batch)
    ptm.torch_to_ff(ffmodel)
    compile_for_inference(ffmodel)
    ffmodel.init_layers()
    return FlexFlowModel.from_converted(ptm, ffmodel)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_seq2seq_generate_equals_hf(num_beams):
    model, kwargs = mt5()
    kwargs.update(seq_length=(7, 6))
    face = _face(model, 3, **kwargs)
    ids = torch.randint(2, 100, (5, 7), generator=torch.Generator().manual_seed(5))   # 5 rows: chunks of 3
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    mask[3, 2:] = 0
    settings = dict(do_sample=False, num_beams=num_beams, max_new_tokens=5, min_new_tokens=5)
    with torch.no_grad():
        want = model.generate(input_ids=ids, attention_mask=mask, **settings)
    torch.testing.assert_close(face.generate(input_ids=ids, attention_mask=mask, **settings), want)


def test_causal_lm_generate_equals_hf_with_left_padding():
    """HF generate gives a left-padded row positions counted from its first token; the
    converted model takes them as an input, or refuses such rows."""
    model, kwargs = gpt2()
    kwargs.update(seq_length=9, input_names=["input_ids", "attention_mask", "position_ids"])
    face = _face(model, 2, **kwargs)
    ids = torch.randint(1, 100, (3, 4), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0                                                   # left padding, as HF pipelines pad
    settings = dict(do_sample=False, max_new_tokens=5, min_new_tokens=5, pad_token_id=0)
    with torch.no_grad():
        want = model.generate(input_ids=ids, attention_mask=mask, **settings)
    torch.testing.assert_close(face.generate(input_ids=ids, attention_mask=mask, **settings), want)
    kwargs.update(input_names=["input_ids", "attention_mask"])
    face = _face(model, 2, **kwargs)
    torch.testing.assert_close(face.generate(input_ids=ids[1:], attention_mask=mask[1:], **settings), want[1:])
    with pytest.raises(ConversionError, match="'position_ids' among input_names"):
        face.generate(input_ids=ids, attention_mask=mask, **settings)


def test_too_long_and_training_programs_are_refused():
    model, kwargs = gpt2()
    kwargs.update(seq_length=6)
    face = _face(model, 2, **kwargs)
    with pytest.raises(ShapeError, match="input_ids: 7 positions"):
        face.generate(input_ids=torch.ones(1, 4, dtype=torch.long), max_new_tokens=4, min_new_tokens=4)
    model.config.resid_pdrop = 0.1
    with pytest.raises(ConversionError, match="dropout"):
        _face(type(model)(model.config), 2, training=True, **kwargs)
