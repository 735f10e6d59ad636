"""The new families train like PyTorch under FlexFlow's semantics: a few SGD steps on the
converted model follow PyTorch's loss trajectory, and the trained weights copied back
equal PyTorch's (grouped-conv slices, weight-norm g and v, expert tables included).

Host-side inputs (GPT-2's last-token gather, OPT's positions), mixture-of-experts routing
(topk as max pooling + a zero-gradient one-hot), depthwise convolution, GroupNorm and a
weight-normed computed-kernel convolution (wav2vec2)."""

import copy

import pytest
import torch
import transformers as tf

from flexflow_torch import PyTorchModel
from flexflow_torch.testing import sgd_steps_ff, sgd_steps_torch

from tiny_models import VOCAB, _perturb
from test_host_inputs import padded_ids

B, STEPS, LR = 4, 3, 0.1


def gpt2_classifier():
    c = tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=4, n_positions=64, pad_token_id=0,
                      num_labels=3, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0)
    ids, mask = padded_ids(B)
    return tf.GPT2ForSequenceClassification(c), {"input_ids": ids, "attention_mask": mask}, 3


def opt_lm():
    c = tf.OPTConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, ffn_dim=37,
                     word_embed_proj_dim=32, dropout=0.0, attention_dropout=0.0, pad_token_id=1)
    ids, mask = padded_ids(B, pad=5)      # not the padding_idx row, which FlexFlow would train
    return tf.OPTForCausalLM(c), {"input_ids": ids, "attention_mask": mask}, VOCAB


def mixtral_lm():
    c = tf.MixtralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=40, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                         max_position_embeddings=64, pad_token_id=0)
    ids, _ = padded_ids(B, pad=5)
    return tf.MixtralForCausalLM(c), {"input_ids": ids}, VOCAB


def convnext_classifier():
    c = tf.ConvNextConfig(image_size=32, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=3)
    return tf.ConvNextForImageClassification(c), {"pixel_values": torch.randn(B, 3, 32, 32,
                                                  generator=torch.Generator().manual_seed(7))}, 3


def wav2vec2_classifier():
    c = tf.Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                          conv_dim=[16, 16], conv_stride=[4, 2], conv_kernel=[8, 3], num_feat_extract_layers=2,
                          num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, classifier_proj_size=16,
                          num_labels=2, mask_time_prob=0.0, hidden_dropout=0.0, attention_dropout=0.0,
                          activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0, layerdrop=0.0)
    return tf.Wav2Vec2ForSequenceClassification(c), {"input_values": torch.randn(
        B, 160, generator=torch.Generator().manual_seed(8))}, 2


MODELS = {"gpt2_classifier": gpt2_classifier, "opt": opt_lm, "mixtral": mixtral_lm, "convnext": convnext_classifier,
          "wav2vec2": wav2vec2_classifier}


@pytest.fixture(scope="module", params=list(MODELS))
def run(request):
    torch.manual_seed(0)
    model, inputs, classes = MODELS[request.param]()
    model = _perturb(model, 31)
    reference = copy.deepcopy(model)
    ptm = PyTorchModel(model, is_hf_model=True, example_inputs=inputs)
    first = next(iter(inputs.values()))
    shape = (B,) if classes != VOCAB else (B, first.shape[1])
    labels = torch.randint(0, classes, shape, generator=torch.Generator().manual_seed(9))
    degree = 1 if ptm.program.single_gpu else 4
    torch_losses = sgd_steps_torch(reference, inputs, labels, LR, STEPS, rows=B // degree)
    ff_losses, ffmodel = sgd_steps_ff(ptm, inputs, labels, LR, STEPS, degree=degree)
    return ptm, reference, ffmodel, ff_losses, torch_losses


def test_loss_trajectory_matches_pytorch(run):
    _, _, _, ff_losses, torch_losses = run
    assert ff_losses[-1] < ff_losses[0]
    torch.testing.assert_close(torch.tensor(ff_losses, dtype=torch.float64),
                               torch.tensor(torch_losses, dtype=torch.float64), rtol=1e-4, atol=0.0)


def test_trained_weights_copy_back(run):
    ptm, reference, ffmodel, _, _ = run
    model = ptm.copy_weights_to_torch(ffmodel)
    ref = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        # float32 sums in different orders over 3 SGD steps: 1e-4 instead of the 1e-5 default
        torch.testing.assert_close(p, ref[name], rtol=1e-4, atol=1e-4, msg=name)
