"""FlexFlow's rules seen from the user's side: analyze() on a model written by hand
with FlexFlow's API, dropout captured for training, the launch keys."""

import numpy as np
import pytest
import torch

import flexflow_torch
from flexflow_torch import PyTorchModel
from flexflow_torch.launch import runtime_configs
from flexflow_torch.runtime import ActiMode, DataType, LossType, MetricsType, SGDOptimizer
from flexflow_torch.verify import embedded_model

from tiny_models import gpt2


def _attention_like(ffmodel):
    """A hand-written model with an internal softmax and a gelu on a shared tensor."""
    x = ffmodel.create_tensor([4, 6], DataType.DT_FLOAT)
    h = ffmodel.dense(x, 8, ActiMode.AC_MODE_NONE, name="h")
    scores = ffmodel.softmax(ffmodel.dense(h, 8, name="scores"), name="attn")
    mixed = ffmodel.add(ffmodel.gelu(h, name="act"), ffmodel.multiply(h, scores))
    return ffmodel.softmax(ffmodel.dense(mixed, 3, name="out"), name="probs")


def test_analyze_says_why_a_hand_written_model_trains_differently():
    ffmodel = embedded_model(batch_size=4)
    _attention_like(ffmodel)
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.1), loss_type=LossType.LOSS_SPARSE_CATEGORICAL_CROSSENTROPY,
                    metrics=[MetricsType.METRICS_ACCURACY])
    report = flexflow_torch.analyze(ffmodel)
    text = str(report)
    assert "internal softmax" in text and "'attn'" in text            # not the final one
    assert "'probs'" not in text.split("internal softmax")[0].rsplit("\n", 1)[-1]
    assert "discarded" in text and "gelu" in text                    # gelu overwrites h's gradient
    assert "softmax.cu" in text and "FFModel::backward" in text      # with FlexFlow's sources


def test_converted_programs_break_no_rule():
    model, kwargs = gpt2()
    report = PyTorchModel(model, is_hf_model=True, **kwargs).analyze()
    assert not [item for item in report.lint if item.kind in ("rejected", "gradient", "single-gpu")], str(report)


def test_dropout_captured_for_training_with_the_model_rates():
    """Converted in training mode, GPT-2's dropouts (embeddings, attention, residuals)
    become FlexFlow dropout with the configured rates; eval mode has none."""
    import transformers as tf
    config = tf.GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=16, resid_pdrop=0.1,
                           embd_pdrop=0.2, attn_pdrop=0.3)
    torch.manual_seed(0)
    model = tf.GPT2LMHeadModel(config).train()
    ptm = PyTorchModel(model, is_hf_model=True, input_names=["input_ids"], batch_size=2, seq_length=5)
    program = ptm.program
    rates = sorted(op.args["rate"] for op in program.ops if op.method == "dropout")
    assert rates == [0.1, 0.1, 0.2, 0.3]                 # attn out, mlp out, embeddings, attention probs
    assert "dropout" not in ptm.eval_program.ff_ops()
    drop = next(op for op in program.ops if op.method == "dropout" and op.args["rate"] == 0.3)
    assert "attn" in drop.name


def test_launch_keys_keep_the_scripts_flags():
    argv = ["-ll:gpu", "4", "-ll:fsize", "9000", "-b", "8", "-e", "2", "--lr", "0.5", "--model", "x",
            "--only-data-parallel"]
    configs = runtime_configs(argv)
    assert configs == {"num_gpus": 4, "memory_per_gpu": 9000, "zero_copy_memory_per_node": 4096,
                       "batch_size": 8, "epochs": 2, "learning_rate": 0.5, "only_data_parallel": True}
    assert runtime_configs([])["num_gpus"] == 1
