"""Tiny HF models: converted forward outputs match PyTorch float32 (assert_close defaults)."""

import numpy as np
import pytest
import torch

from flexflow_torch import PyTorchModel
from flexflow_torch.testing import run_ff, torch_outputs

from tiny_models import BUILDERS

#: FlexFlow ops each model must map onto (structure), beyond matching numbers. Attention
#: softmaxes are composed (pool2d max, exp, reduce_sum, pow), norms from reduce_sum/pow,
#: permutations are gathers (semantics/: FlexFlow's softmax, layer_norm, rms_norm and
#: transpose do not train correctly)
SOFTMAX = {"pool2d", "exp", "reduce_sum", "pow"}
EXPECTED = {
    "bert": {"embedding", "dense", "batch_matmul", "gelu", "tanh", "gather"} | SOFTMAX,
    "gpt2": {"embedding", "dense", "batch_matmul", "tanh", "gather"} | SOFTMAX,
    "t5": {"embedding", "dense", "batch_matmul", "gather"} | SOFTMAX,   # relu fused into dense
    "mt5": {"embedding", "dense", "batch_matmul", "tanh", "gather"} | SOFTMAX,
    "llama": {"embedding", "dense", "batch_matmul", "sigmoid", "gather"} | SOFTMAX,   # rotary sin/cos folded
    "llama_gqa": {"embedding", "dense", "batch_matmul", "gather"} | SOFTMAX,
    "albert": {"embedding", "batch_matmul", "dense"} | SOFTMAX,
    "opt": {"embedding", "dense", "batch_matmul"} | SOFTMAX,
    "gptj": {"embedding", "dense", "batch_matmul", "gather", "concat"} | SOFTMAX,
    "bloom": {"embedding", "dense", "batch_matmul", "gather"} | SOFTMAX,
    "vit": {"conv2d", "embedding", "dense", "batch_matmul", "gelu", "concat"} | SOFTMAX,
}
#: models whose programs are data-parallel (per sample throughout); Bloom merges batch and
#: heads for its ALiBi bmm, so its program runs on one GPU
SINGLE_GPU = {"bloom"}
#: FlexFlow operators a converted program never uses (they abort or train wrongly)
FORBIDDEN = {"softmax", "layer_norm", "rms_norm", "transpose", "divide", "mean", "multihead_attention",
             "batch_norm"}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_forward_matches_pytorch(name):
    model, kwargs = BUILDERS[name]()
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    ops = set(ptm.program.ff_ops())
    assert EXPECTED[name] <= ops, f"missing {EXPECTED[name] - ops}"
    assert not ops & FORBIDDEN
    assert (ptm.program.single_gpu != []) == (name in SINGLE_GPU), ptm.program.single_gpu
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
