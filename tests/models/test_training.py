"""A few SGD steps on the converted model follow PyTorch's loss trajectory.

Same loss on both sides: `ffmodel.softmax(logits)` + sparse CE, whose gradient
(p - y)/batch is that of CrossEntropyLoss(reduction="sum")/batch; same SGD lr;
dropout 0. The losses agree to 1e-4 (relative)."""

import copy

import pytest
import torch

from flexflow_torch import PyTorchModel
from flexflow_torch.testing import sgd_steps_ff, sgd_steps_torch

from tiny_models import albert_mlm, gpt2, mt5, vit_classifier, VOCAB

STEPS, LR = 3, 0.1


def _train_both(builder, seed, classes=VOCAB):
    model, kwargs = builder()
    reference = copy.deepcopy(model)
    model.initial_state = {n: p.detach().clone() for n, p in model.named_parameters()}
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    inputs = ptm.example_inputs
    shape = (kwargs["batch_size"],) if classes != VOCAB else (kwargs["batch_size"], list(inputs.values())[-1].shape[1])
    labels = torch.randint(0, classes, shape, generator=torch.Generator().manual_seed(seed))
    ff_losses, ffmodel = sgd_steps_ff(ptm, inputs, labels, LR, STEPS)
    torch_losses = sgd_steps_torch(reference, inputs, labels, LR, STEPS)
    return ptm, ffmodel, reference, ff_losses, torch_losses


@pytest.fixture(scope="module")
def gpt2_run():
    return _train_both(gpt2, 10)


@pytest.fixture(scope="module")
def mt5_run():
    return _train_both(mt5, 11)


@pytest.fixture(scope="module")
def vit_run():
    """2-D logits; the cls token and position embeddings are parameters used as tensors"""
    return _train_both(vit_classifier, 12, classes=5)


@pytest.fixture(scope="module")
def albert_run():
    """every layer shares its weights (and the MLM decoder is tied): one FlexFlow parameter each"""
    return _train_both(albert_mlm, 13)


@pytest.mark.parametrize("run", ["gpt2_run", "mt5_run", "vit_run", "albert_run"])
def test_loss_trajectory_matches_pytorch(run, request):
    _, _, _, ff_losses, torch_losses = request.getfixturevalue(run)
    assert ff_losses[-1] < ff_losses[0]            # it trains
    torch.testing.assert_close(torch.tensor(ff_losses, dtype=torch.float64), torch.tensor(torch_losses, dtype=torch.float64),
                               rtol=1e-4, atol=0.0)


@pytest.mark.parametrize("run", ["gpt2_run", "mt5_run", "vit_run", "albert_run"])
def test_trained_weights_copy_back_into_pytorch(run, request):
    ptm, ffmodel, reference, _, _ = request.getfixturevalue(run)
    model = ptm.copy_weights_to_torch(ffmodel)
    ref = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        # float32 sums in different orders over 3 SGD steps: 1e-4 instead of the 1e-5 default
        torch.testing.assert_close(p, ref[name], rtol=1e-4, atol=1e-4, msg=name)


def test_tied_embedding_stays_tied_through_training(gpt2_run):
    ptm, ffmodel, reference, _, _ = gpt2_run
    program = ptm.program
    holders = [op for op in program.ops for w in op.weights if w["key"] == "transformer.wte.weight"]
    assert len(holders) == 1 and holders[0].method == "embedding"   # one FlexFlow parameter for both uses
    model = ptm.copy_weights_to_torch(ffmodel)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    # the tied PyTorch weight got gradients from the lookup AND the LM head; so did FlexFlow's
    torch.testing.assert_close(model.transformer.wte.weight, reference.transformer.wte.weight,
                               rtol=1e-4, atol=1e-4)
    initial = model.initial_state["transformer.wte.weight"]
    assert (model.transformer.wte.weight - initial).abs().max() > 1e-3        # it did train


def test_save_pretrained_after_copy_back(gpt2_run, tmp_path):
    import transformers
    ptm, ffmodel, reference, _, _ = gpt2_run
    model = ptm.copy_weights_to_torch(ffmodel)
    model.save_pretrained(tmp_path)
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path)
    ref = dict(reference.named_parameters())
    for name, p in reloaded.named_parameters():
        torch.testing.assert_close(p, ref[name], rtol=1e-4, atol=1e-4, msg=name)   # as above: 3 SGD steps
