"""Tiny HF models: converted forward outputs match PyTorch float32 (assert_close defaults)."""

import numpy as np
import pytest
import torch

from flexflow_torch import PyTorchModel
from flexflow_torch.testing import run_ff, torch_outputs

from tiny_models import BUILDERS

#: FlexFlow ops each model must map onto (structure), beyond matching numbers
EXPECTED = {
    "bert": {"embedding", "layer_norm", "dense", "batch_matmul", "softmax", "gelu", "tanh"},
    "gpt2": {"embedding", "layer_norm", "dense", "batch_matmul", "softmax", "pow", "tanh", "concat"},
    "t5": {"embedding", "rms_norm", "dense", "batch_matmul", "softmax"},   # relu fused into dense
    "mt5": {"embedding", "rms_norm", "dense", "batch_matmul", "softmax", "pow", "tanh"},
    "llama": {"embedding", "rms_norm", "dense", "batch_matmul", "softmax", "sigmoid"},   # rotary sin/cos folded
    "llama_gqa": {"embedding", "rms_norm", "dense", "batch_matmul", "softmax", "gather"},
    "albert": {"embedding", "layer_norm", "batch_matmul", "softmax", "dense"},
    "opt": {"embedding", "layer_norm", "dense", "batch_matmul", "softmax"},
    "gptj": {"embedding", "layer_norm", "dense", "batch_matmul", "softmax", "gather", "concat"},
    "bloom": {"embedding", "layer_norm", "dense", "batch_matmul", "softmax", "gather"},
    "vit": {"conv2d", "embedding", "layer_norm", "dense", "batch_matmul", "softmax", "gelu", "concat"},
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_forward_matches_pytorch(name):
    model, kwargs = BUILDERS[name]()
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    ops = set(ptm.program.ff_ops())
    assert EXPECTED[name] <= ops, f"missing {EXPECTED[name] - ops}"
    assert not ops & {"divide", "mean", "multihead_attention", "batch_norm"}
    if "attention_mask" in ptm.example_inputs:      # a real padded mask was used
        assert (ptm.example_inputs["attention_mask"] == 0).any()
    got = run_ff(ptm)
    want = torch_outputs(model, ptm.example_inputs)
    assert len(got) == len(want) == len(ptm.output_names)
    for g, w in zip(got, want):
        torch.testing.assert_close(torch.from_numpy(np.asarray(g)), w)


def test_output_names_follow_model_output():
    model, kwargs = BUILDERS["t5"]()
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    assert ptm.output_names == ["logits", "encoder_last_hidden_state"]
