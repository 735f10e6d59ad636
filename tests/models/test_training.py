"""A few SGD steps on the converted model follow PyTorch's loss trajectory.

Same loss on both sides: `ffmodel.softmax(logits)` + sparse CE, whose gradient
(p - y)/batch is that of CrossEntropyLoss(reduction="sum")/batch; same SGD lr;
dropout 0. The losses agree to 1e-4 (relative)."""

import copy

import pytest
import torch

from flexflow_torch import PyTorchModel
from flexflow_torch.testing import sgd_steps_ff, sgd_steps_torch

from tiny_models import albert_mlm, bert_mlm, gpt2, llama, mt5, t5, vit_classifier, VOCAB

STEPS, LR = 3, 0.1
MODELS = {"gpt2": (gpt2, 10, VOCAB), "bert_mlm": (bert_mlm, 14, VOCAB), "t5": (t5, 15, VOCAB),
          "mt5": (mt5, 11, VOCAB), "llama": (llama, 16, VOCAB), "vit": (vit_classifier, 12, 5),
          "albert": (albert_mlm, 13, VOCAB)}


def _train_both(name, degrees=(1, 4)):
    """One conversion (batch 4), trained for STEPS SGD steps on 1 and on 4 data-parallel
    GPUs, and the same steps in PyTorch; returns {degree: (ffmodel, ff losses, torch
    losses over the rows FlexFlow reads back)} with the converter and the reference."""
    builder, seed, classes = MODELS[name]
    model, kwargs = builder()
    kwargs["batch_size"] = B = 4
    reference = copy.deepcopy(model)
    model.initial_state = {n: p.detach().clone() for n, p in model.named_parameters()}
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    inputs = ptm.example_inputs
    shape = (B,) if classes != VOCAB else (B, list(inputs.values())[-1].shape[1])
    labels = torch.randint(0, classes, shape, generator=torch.Generator().manual_seed(seed))
    runs = {}
    for degree in degrees:
        initial = {n: p.detach().clone() for n, p in reference.named_parameters()}
        torch_losses = sgd_steps_torch(reference, inputs, labels, LR, STEPS, rows=B // degree)
        ff_losses, ffmodel = sgd_steps_ff(ptm, inputs, labels, LR, STEPS, degree=degree)
        runs[degree] = (ffmodel, ff_losses, torch_losses)
        if degree != degrees[-1]:       # start the next run from the same weights
            with torch.no_grad():
                for n, p in reference.named_parameters():
                    p.copy_(initial[n])
    return ptm, reference, runs


@pytest.fixture(scope="module", params=list(MODELS))
def run(request):
    return _train_both(request.param)


@pytest.fixture(scope="module")
def gpt2_run():
    return _train_both("gpt2", degrees=(1,))


@pytest.mark.parametrize("degree", [1, 4])
def test_loss_trajectory_matches_pytorch(run, degree):
    """Under FlexFlow's semantics (copy-through softmax, overwriting backwards, sparse CE
    over axis 0, ...) the converted program takes PyTorch's steps; with -ll:gpu 4
    FlexFlow's partition rules accept it and the losses of the samples Python can read
    back (GPU 0's) follow PyTorch's."""
    _, _, runs = run
    _, ff_losses, torch_losses = runs[degree]
    assert ff_losses[-1] < ff_losses[0]            # it trains
    torch.testing.assert_close(torch.tensor(ff_losses, dtype=torch.float64), torch.tensor(torch_losses, dtype=torch.float64),
                               rtol=1e-4, atol=0.0)


def test_trained_weights_copy_back_into_pytorch(run):
    """After the last (4-GPU) run: FlexFlow's weights equal PyTorch's trained ones."""
    ptm, reference, runs = run
    model = ptm.copy_weights_to_torch(runs[4][0])
    ref = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        # float32 sums in different orders over 3 SGD steps: 1e-4 instead of the 1e-5 default
        torch.testing.assert_close(p, ref[name], rtol=1e-4, atol=1e-4, msg=name)


def test_tied_embedding_stays_tied_through_training(gpt2_run):
    ptm, reference, runs = gpt2_run
    ffmodel = runs[1][0]
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
    ptm, reference, runs = gpt2_run
    ffmodel = runs[1][0]
    model = ptm.copy_weights_to_torch(ffmodel)
    model.save_pretrained(tmp_path)
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path)
    ref = dict(reference.named_parameters())
    for name, p in reloaded.named_parameters():
        torch.testing.assert_close(p, ref[name], rtol=1e-4, atol=1e-4, msg=name)   # as above: 3 SGD steps
