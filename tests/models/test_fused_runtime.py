"""The embedded runtime's fused groups (runtime/fusion.py) train converted models as the
layer-by-layer path does (FLEXFLOW_TORCH_FUSION=0), in both semantics modes.

Fused softmax, norms and tanh GELU are PyTorch's kernels for the same mathematics, so
they agree up to float rounding: losses, weights, and every tensor's value and gradient
after a few SGD steps, within float32 rounding amplified by three steps (relative 1e-3
of each tensor's largest magnitude; the attention masks' gradients reach 1e37).
Transposes run as permutes and a shared table read whole is a view of its weight: the
same values, bit for bit."""

import copy

import numpy as np
import pytest
import torch

from flexflow_torch import PyTorchModel
from flexflow_torch.runtime import ParameterSyncType, Tensor, fusion
from flexflow_torch.runtime.executor import GroupStep
from flexflow_torch.testing import sgd_steps_ff

from tiny_models import VOCAB, bert_mlm, gpt2, mt5

STEPS, LR = 3, 0.1
PS = ParameterSyncType.PS
#: the groups each tiny model must form, by semantics mode
EXPECTED = {
    "gpt2": {"softmax", "layer_norm", "gelu_tanh", "permute"},
    "mt5": {"softmax", "rms_norm", "gelu_tanh", "permute"},
    "bert_mlm": {"softmax", "layer_norm", "permute"},
}


@pytest.fixture(scope="module", params=list(EXPECTED))
def converted(request):
    model, kwargs = {"gpt2": gpt2, "mt5": mt5, "bert_mlm": bert_mlm}[request.param]()
    ptm = PyTorchModel(copy.deepcopy(model), is_hf_model=True, **kwargs)
    inputs = ptm.example_inputs
    labels = torch.randint(0, VOCAB, (kwargs["batch_size"], list(inputs.values())[-1].shape[1]),
                           generator=torch.Generator().manual_seed(7))
    return request.param, ptm, inputs, labels


def _train(ptm, inputs, labels, monkeypatch, fusion):
    monkeypatch.setenv("FLEXFLOW_TORCH_FUSION", fusion)
    losses, ffmodel = sgd_steps_ff(ptm, inputs, labels, LR, STEPS)
    kinds = {s.group.kind for s in ffmodel._plan if isinstance(s, GroupStep)}
    return losses, ffmodel, kinds


def _close(a, b):
    """Equal up to float32 rounding, relative to the tensor's largest magnitude."""
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * float(b.abs().max()) + 1e-6)


def _weights(ffmodel):
    return [torch.from_numpy(op.get_parameter_by_id(i).get_weights(ffmodel))
            for op in ffmodel.get_layers().values() for i in range(op.get_number_parameters())]


@pytest.mark.parametrize("mode", ["flexflow", "exact"])
def test_fused_training_matches_layer_by_layer(converted, mode, monkeypatch):
    name, ptm, inputs, labels = converted
    monkeypatch.setenv("FLEXFLOW_TORCH_SEMANTICS", mode)
    fused_losses, fused, kinds = _train(ptm, inputs, labels, monkeypatch, "1")
    plain_losses, plain, plain_kinds = _train(ptm, inputs, labels, monkeypatch, "0")
    expected = EXPECTED[name] | ({"head"} if mode == "flexflow" else set())
    assert kinds == expected and not plain_kinds
    torch.testing.assert_close(torch.tensor(fused_losses), torch.tensor(plain_losses), rtol=1e-4, atol=0)
    for a, b in zip(_weights(fused), _weights(plain)):
        _close(a, b)
    # the last step's gradients, read through FlexFlow's API, of every tensor
    for (ka, a), (kb, b) in zip(fused.get_layers().items(), plain.get_layers().items()):
        for i in range(a.get_number_outputs()):
            _close(torch.from_numpy(a.get_output_by_id(i).get_gradients(fused, PS)),
                   torch.from_numpy(b.get_output_by_id(i).get_gradients(plain, PS)))
            _close(torch.from_numpy(a.get_output_by_id(i).get_tensor(fused)),
                   torch.from_numpy(b.get_output_by_id(i).get_tensor(plain)))


def test_moves_and_table_reads_are_bit_identical(monkeypatch):
    """GPT-2's attention transposes (reshape, gather with constant indices, reshape), and
    the flat ones after its tied table's lookups, run as one permute; its tied head's
    table read (embedding of ids 0..rows-1) is the weight itself, its lookups' gradients
    scatter-added into the head's: the same bits as gather / embedding with dense
    scatter-add gradients (no other group formed, so that nothing else differs), for
    every tensor and weight after training."""
    monkeypatch.setattr(fusion, "GROUP_MAKERS", (fusion._permute,))
    model, kwargs = gpt2()
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    labels = torch.randint(0, VOCAB, (kwargs["batch_size"], kwargs["seq_length"]),
                           generator=torch.Generator().manual_seed(3))
    (_, fused, kinds), (_, plain, _) = (_train(ptm, ptm.example_inputs, labels, monkeypatch, f) for f in ("1", "0"))
    assert kinds == {"permute"}
    flat = [s.group for s in fused._plan if isinstance(s, GroupStep) and s.group.gather.attrs["dim"] == 0]
    assert flat, "the tied table's lookups transpose through a flat gather: a permute group too"
    assert any(layer.op_type.name == "EMBEDDING" and layer.outputs[0].grad_value is not None
               for layer in fused._graph)
    for layer_a, layer_b in zip(fused._graph, plain._graph):
        for ha, hb in zip(layer_a.outputs, layer_b.outputs):
            a, b = Tensor(ha), Tensor(hb)
            assert np.array_equal(a.get_tensor(fused), b.get_tensor(plain))
            assert np.array_equal(a.get_gradients(fused, PS), b.get_gradients(plain, PS))
    for a, b in zip(_weights(fused), _weights(plain)):
        assert torch.equal(a, b)


def test_backward_through_the_engine_is_torch_autograd_grad(monkeypatch):
    """GradStore calls autograd's engine directly (what torch.autograd.grad calls after
    normalising its arguments); with torch.autograd.grad instead, every tensor, gradient
    and weight of a trained GPT-2 has the same bits."""
    from flexflow_torch.runtime import executor
    model, kwargs = gpt2()
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    labels = torch.randint(0, VOCAB, (kwargs["batch_size"], kwargs["seq_length"]),
                           generator=torch.Generator().manual_seed(3))
    _, direct, _ = _train(ptm, ptm.example_inputs, labels, monkeypatch, "1")
    assert executor._engine_run_backward is not None
    monkeypatch.setattr(executor, "_engine_run_backward", None)
    _, wrapped, _ = _train(ptm, ptm.example_inputs, labels, monkeypatch, "1")
    for layer_a, layer_b in zip(direct._graph, wrapped._graph):
        for ha, hb in zip(layer_a.outputs, layer_b.outputs):
            a, b = Tensor(ha), Tensor(hb)
            assert np.array_equal(a.get_tensor(direct), b.get_tensor(wrapped))
            assert np.array_equal(a.get_gradients(direct, PS), b.get_gradients(wrapped, PS))
    for a, b in zip(_weights(direct), _weights(wrapped)):
        assert torch.equal(a, b)


def test_inner_tensors_of_a_fused_group_are_recomputed_when_read(monkeypatch):
    """A fused softmax never computes its exp; reading it (value and gradient) runs the
    group's layers unfused on the values the fused run read."""
    model, kwargs = gpt2()
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    labels = torch.randint(0, VOCAB, (kwargs["batch_size"], kwargs["seq_length"]),
                           generator=torch.Generator().manual_seed(5))
    fused = _train(ptm, ptm.example_inputs, labels, monkeypatch, "1")[1]
    plain = _train(ptm, ptm.example_inputs, labels, monkeypatch, "0")[1]
    group = next(s for s in fused._plan if isinstance(s, GroupStep) and s.group.kind == "softmax")
    index = fused._graph.index(group.group.layers[2])            # the exp
    inner = fused._graph[index].outputs[0]
    assert inner.value is None and inner.pending is group
    got = Tensor(inner)
    ref = Tensor(plain._graph[index].outputs[0])
    _close(torch.from_numpy(got.get_gradients(fused, PS)), torch.from_numpy(ref.get_gradients(plain, PS)))
    _close(torch.from_numpy(got.get_tensor(fused)), torch.from_numpy(ref.get_tensor(plain)))


def test_head_sum_of_squares_in_blocks(monkeypatch):
    """The loss head's sum(p * p) runs a block of rows at a time through a reused buffer;
    with blocks smaller than the rows (a vocabulary the size of mt5-small's at a small
    buffer) it is PyTorch's sum, up to float rounding."""
    monkeypatch.setattr(fusion, "_SCRATCH_SIZE", 3 * 1000)
    monkeypatch.setattr(fusion, "_SCRATCH", {})
    p = torch.softmax(torch.randn(2, 7, 1000, generator=torch.Generator().manual_seed(1)), -1)
    torch.testing.assert_close(fusion._sum_of_squares(p), (p * p).sum(-1, keepdim=True))
