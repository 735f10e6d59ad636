"""Computations on the integer inputs alone run on the host and feed FlexFlow as extra
inputs: the documented flow (torch_to_ff, create_data_loaders with the user's arrays),
verify and graph files carry them; data-dependent indexing reaches FlexFlow as
per-sample gather offsets. Every check compares with eager PyTorch."""

import json

import numpy as np
import pytest
import torch
import transformers as tf

from flexflow_torch import PyTorchModel, create_data_loaders, file_to_ff, verify
from flexflow_torch import runtime as ff
from flexflow_torch.errors import ConversionError, DataLoaderError, GraphFileError
from flexflow_torch.host_program import HostProgram
from flexflow_torch.verify import embedded_model

from tiny_models import VOCAB, _perturb, opt

B = 2


def gpt2_classifier():
    c = tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, pad_token_id=0,
                      num_labels=3)
    torch.manual_seed(0)
    return _perturb(tf.GPT2ForSequenceClassification(c), 21)


def padded_ids(n, length=7, seed=0, pad=0):
    """ids with trailing padding (the pad id) in every other row, and the matching mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.int64)
    for row in range(1, n, 2):
        cut = int(torch.randint(2, length - 1, (1,), generator=g))
        mask[row, cut:] = 0
    return torch.where(mask.bool(), ids, torch.full_like(ids, pad)), mask


def forward_batches(ffmodel, arrays, batches):
    """The documented flow: loaders over the user's arrays, one forward per batch."""
    ffmodel.compile(optimizer=ff.SGDOptimizer(ffmodel, 0.0), loss_type=ff.LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[ff.MetricsType.METRICS_MEAN_SQUARED_ERROR], comp_mode=ff.CompMode.INFERENCE)
    loaders = create_data_loaders(ffmodel, arrays)     # flexflow_torch's: works for graph files too
    ffmodel.init_layers()
    for loader in loaders:
        loader.reset()
    outs = []
    for _ in range(batches):
        for loader in loaders:
            loader.next_batch(ffmodel)
        ffmodel.forward()
        outs.append(np.array(replay_outputs(ffmodel)[0].get_tensor(ffmodel)))
    return outs


def replay_outputs(ffmodel):
    from flexflow_torch.loaders import replay_of
    return replay_of(ffmodel).outputs


def test_last_token_index_is_a_per_sample_gather_over_several_batches():
    """GPT-2 sequence classification picks each row's last non-pad token (ne + argmax of
    the ids: host) and indexes the logits with it (a gather with host offsets); every
    batch of a multi-batch dataset matches PyTorch."""
    model = gpt2_classifier()
    ids, mask = padded_ids(B)
    ptm = PyTorchModel(model, is_hf_model=True, example_inputs={"input_ids": ids, "attention_mask": mask})
    program = ptm.program
    ops = [s["op"] for s in program.host.steps]
    assert "aten::ne.Scalar" in ops and "aten::argmax.default" in ops
    index = [n for n in ptm.ff_input_names if n.endswith(".index")]
    assert len(index) == 1
    v = program.values[program.inputs[ptm.ff_input_names.index(index[0])]]
    assert v.dtype == "DT_INT32" and v.shape[0] == B
    assert "gather" in program.ff_ops() and not program.single_gpu
    all_ids, all_mask = padded_ids(3 * B, seed=5)
    ffmodel = embedded_model(B)
    ptm.torch_to_ff(ffmodel)
    outs = forward_batches(ffmodel, {"input_ids": all_ids.numpy(), "attention_mask": all_mask.numpy()}, 3)
    with torch.no_grad():
        want = model(input_ids=all_ids, attention_mask=all_mask).logits
    for b, got in enumerate(outs):
        torch.testing.assert_close(torch.from_numpy(got), want[b * B:(b + 1) * B])


def test_opt_positions_from_the_mask_and_verify():
    """OPT without position_ids: cumsum of the mask (+2) on the host; verify() runs it."""
    model, kwargs = opt()
    kwargs["input_names"] = ["input_ids", "attention_mask"]
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    assert ptm.input_names == ["input_ids", "attention_mask"]
    assert ptm.ff_input_names[0] == "input_ids" and all(n.startswith("host.") for n in ptm.ff_input_names[1:])
    report = verify(ptm)
    assert report.ok, str(report)
    arrays = ptm.input_arrays(ptm.example_inputs)
    assert [a.dtype for a in arrays][:2] == [np.int32, np.int32]
    assert len(arrays) == len(ptm.ff_input_names)


def test_graph_file_carries_the_host_program(tmp_path):
    model = gpt2_classifier()
    ids, mask = padded_ids(B, seed=3)
    ptm = PyTorchModel(model, is_hf_model=True, example_inputs={"input_ids": ids, "attention_mask": mask})
    path = ptm.torch_to_file(tmp_path / "m.safetensors")
    ffmodel = embedded_model(B)
    file_to_ff(path, ffmodel)                       # no PyTorch model, no tracing
    outs = forward_batches(ffmodel, [ids.numpy(), mask.numpy()], 1)
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(torch.from_numpy(outs[0]), want)


def test_host_program_files_are_validated():
    model = gpt2_classifier()
    ids, mask = padded_ids(B)
    host = PyTorchModel(model, is_hf_model=True, example_inputs={"input_ids": ids, "attention_mask": mask}).program.host
    data = json.loads(json.dumps(host.to_json()))
    tensors = {f"host/{k}": v.numpy() for k, v in host.constants.items()}
    HostProgram.from_json(data, tensors)            # round trip
    bad = json.loads(json.dumps(data))
    bad["steps"][0]["op"] = "aten::from_file.default"
    with pytest.raises(GraphFileError, match="not an allowed operator"):
        HostProgram.from_json(bad, tensors)
    bad = json.loads(json.dumps(data))
    bad["steps"][0]["args"][0] = {"$r": "undefined"}
    with pytest.raises(GraphFileError, match="before it is defined"):
        HostProgram.from_json(bad, tensors)
    bad = json.loads(json.dumps(data))
    bad["format"] = 99
    with pytest.raises(GraphFileError):
        HostProgram.from_json(bad, tensors)


def test_a_computed_index_that_crosses_samples_is_refused():
    class Cross(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x, ids):
            h = self.lin(x)
            return h[ids.argmax(-1)]            # row i reads the sample argmax(ids[i])
    x, ids = torch.randn(2, 4), torch.tensor([[0, 5], [7, 1]])
    with pytest.raises(ConversionError, match="another sample"):
        PyTorchModel(Cross(), example_inputs=(x, ids)).program
    # and when only the data shows it, at loading time
    ptm = PyTorchModel(Cross(), example_inputs=(x, torch.tensor([[9, 5], [0, 1]])))
    with pytest.raises(DataLoaderError, match="another sample"):
        ptm.input_arrays([x.numpy(), torch.tensor([[0, 5], [7, 1]]).numpy()])


def test_multiple_choice_rows():
    """(batch, choices, seq) inputs viewed as (batch * choices, seq): the activations have
    batch x choices rows; inputs keep the batch on axis 0 (single GPU: a reshape of axis 0)."""
    c = tf.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=37, max_position_embeddings=64)
    torch.manual_seed(0)
    model = _perturb(tf.BertForMultipleChoice(c), 22)
    ids, mask = padded_ids(B * 3, seed=4)
    inputs = {"input_ids": ids.reshape(B, 3, -1), "attention_mask": mask.reshape(B, 3, -1)}
    ptm = PyTorchModel(model, is_hf_model=True, example_inputs=inputs)
    program = ptm.program
    assert all(program.values[v].shape[0] == B for v in program.inputs)
    assert program.single_gpu
    ffmodel = embedded_model(B)
    ptm.torch_to_ff(ffmodel)
    got = forward_batches(ffmodel, inputs, 1)[0]
    with torch.no_grad():
        want = model(**inputs).logits
    torch.testing.assert_close(torch.from_numpy(got), want)
