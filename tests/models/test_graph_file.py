"""A saved graph (program + weights in one safetensors file) reloads without the
PyTorch model and gives identical outputs."""

import numpy as np
import pytest
import torch

import flexflow_torch
from flexflow_torch import PyTorchModel
from flexflow_torch.errors import GraphFileError
from flexflow_torch.testing import run_ff

from graph_fuzz import run_file
from tiny_models import t5


def test_graph_file_round_trip(tmp_path):
    model, kwargs = t5()
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    path = tmp_path / "t5.safetensors"
    ptm.torch_to_file(path)
    expected = run_ff(ptm)
    del model                                          # the file is self-contained
    program = flexflow_torch.load_program(path)
    assert program.ff_ops() == ptm.program.ff_ops()
    assert program.output_names == ["logits", "encoder_last_hidden_state"]
    got = run_file(path, ptm.example_inputs)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


# --------------------------------------------------------------------------- hostile files
def rewrite(src, dst, edit_program=None, edit_tensors=None, resign=True):
    """Copy a graph file, editing its program JSON and/or tensors; `resign` recomputes the
    checksum (a writer that made the change on purpose), else the old one is kept."""
    import json
    from safetensors import safe_open
    from safetensors.numpy import save_file
    from flexflow_torch.serialization import CHECKSUM_KEY, META_KEY, checksum
    with safe_open(str(src), framework="numpy") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    data = json.loads(meta[META_KEY])
    if edit_program:
        edit_program(data)
    if edit_tensors:
        edit_tensors(tensors)
    meta[META_KEY] = json.dumps(data)
    if resign:
        meta[CHECKSUM_KEY] = checksum(meta[META_KEY], tensors)
    save_file(tensors, str(dst), metadata=meta)
    return dst


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).eval()
    ptm = PyTorchModel(model, example_inputs=(torch.randn(2, 4),))
    path = tmp_path_factory.mktemp("graph") / "mlp.safetensors"
    ptm.torch_to_file(path)
    return path


def _dense_op(data):
    return next(op for op in data["ops"] if op["method"] == "dense")


HOSTILE = {
    "repeated op record": (lambda d: d["ops"].insert(2, dict(d["ops"][1])), None, "repeated op record"),
    "unknown version": (lambda d: d.update(version=99), None, "version 99 is not supported"),
    "compile is no operator": (lambda d: _dense_op(d).update(method="compile"), None, "not a FlexFlow training"),
    "unknown argument": (lambda d: _dense_op(d)["args"].update(kernel_initializer=1), None, "unknown arguments"),
    "reference to nothing": (lambda d: _dense_op(d)["args"].update(input={"$v": 999}), None, "before any op"),
    "shape that does not follow": (lambda d: _dense_op(d)["args"].update(out_dim=9), None, "not what FlexFlow"),
    "huge input": (lambda d: d["ops"][0]["args"].update(dims=[2, 2 ** 40]), None, "integer in"),
    "int64 weight": (None, lambda t: t.update({"weight/0.weight": t["weight/0.weight"].astype(np.int64)}),
                     "unexpected tensor"),
    "transposed weight": (None, lambda t: t.update({"weight/0.weight": np.ascontiguousarray(t["weight/0.weight"].T)}),
                          "shape"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_graph_files_are_rejected(mlp_file, tmp_path, name):
    edit_program, edit_tensors, message = HOSTILE[name]
    bad = rewrite(mlp_file, tmp_path / "bad.safetensors", edit_program, edit_tensors)
    with pytest.raises(GraphFileError, match=message):
        flexflow_torch.load_program(bad)


def test_changed_weight_bytes_fail_the_checksum(mlp_file, tmp_path):
    def flip(tensors):
        w = tensors["weight/2.weight"].copy()
        w.view(np.uint32)[0, 0] ^= 1
        tensors["weight/2.weight"] = w
    bad = rewrite(mlp_file, tmp_path / "flipped.safetensors", edit_tensors=flip, resign=False)
    with pytest.raises(GraphFileError, match="checksum"):
        flexflow_torch.load_program(bad)
    assert flexflow_torch.load_program(rewrite(mlp_file, tmp_path / "same.safetensors")).ff_ops() == \
        ["dense", "tanh", "dense"]
