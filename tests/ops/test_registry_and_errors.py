"""Registry (schema binding, user converters) and typed errors: one report for
every unsupported operator, bad input."""

import numpy as np
import pytest
import torch

import flexflow_torch
from flexflow_torch import PyTorchModel, registry
from flexflow_torch.errors import (ConversionError, GraphFileError, InvalidModelError, ModelStateError,
                                   ShapeError, UnsupportedOperatorsError)
from flexflow_torch.testing import check_module

from test_elementwise_ops import Lambda, _x

aten = torch.ops.aten


class Unsupported(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x):
        h = self.proj(x)
        a = torch.erf(h)
        b = torch.log(h.abs() + 1)
        c = torch.log(a.abs() + 2)
        return a + b + c + (h > 0).float()


def test_every_unsupported_operator_in_one_error():
    ptm = PyTorchModel(Unsupported(), example_inputs=(_x(2, 3, 4),))
    with pytest.raises(UnsupportedOperatorsError) as info:
        ptm.program
    report = info.value.report
    by_target = {u.target: u for u in report.unsupported}
    assert {"aten::erf", "aten::log", "aten::gt.Scalar"} <= set(by_target)
    assert by_target["aten::log"].count == 2
    assert "test_registry_and_errors.py" in by_target["aten::erf"].source
    text = str(info.value)
    assert "aten::erf" in text and "aten::log x2" in text
    assert isinstance(info.value, ValueError)          # typed, catchable as a ValueError


def test_analyze_reports_without_raising():
    report = flexflow_torch.analyze(Unsupported(), example_inputs=(_x(2, 3, 4),))
    assert not report.ok and len(report.unsupported) >= 3
    ok = flexflow_torch.analyze(Lambda(lambda x: torch.softmax(x, -1) * 2), example_inputs=(_x(2, 3),))
    assert ok.ok and ok.ff_ops["exp"] == 1 and "softmax" not in ok.ff_ops
    assert not [item for item in ok.lint if item.kind in ("gradient", "rejected", "single-gpu")]


def test_converter_error_is_collected_in_the_report():
    conv = torch.nn.Conv2d(3, 4, 3, dilation=2)
    with pytest.raises(UnsupportedOperatorsError, match="dilated"):
        PyTorchModel(conv, example_inputs=(_x(1, 3, 8, 8),)).program


def test_bind_arguments_fills_schema_defaults():
    bound = registry.bind_arguments(aten.add.Tensor, ("a", "b"), {})
    assert bound == {"self": "a", "other": "b", "alpha": 1}
    bound = registry.bind_arguments(aten.layer_norm.default, ("x", [4]), {})
    assert bound["eps"] == 1e-5 and bound["weight"] is None


def test_analyze_reports_every_problem_without_converting(monkeypatch):
    """Converters' supports checks see what only converting showed before: one report
    names the missing converter and the unconvertible uses of converted ops."""
    import flexflow_torch.pytorch_model as pm

    class Several(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, dilation=2, padding=2)
            self.pool = torch.nn.AvgPool2d(2, ceil_mode=True)

        def forward(self, x):
            h = self.pool(self.conv(x))
            return torch.erf(h) + (h * 2.7).long().float()

    monkeypatch.setattr(pm, "ConversionContext", None)             # analyze() must not need it
    report = flexflow_torch.analyze(Several(), example_inputs=(_x(1, 3, 7, 7),))
    reasons = {u.target: u.reason for u in report.unsupported}
    assert set(reasons) == {"aten::conv2d", "aten::avg_pool2d", "aten::erf", "aten::_to_copy"}, str(report)
    assert "dilated" in reasons["aten::conv2d"] and "float-to-integer" in reasons["aten::_to_copy"]
    assert report.unsupported[0].module == "conv"


EMPTY = [("[:, :0]", lambda x: x[:, :0] * 2), ("[:, 1:1]", lambda x: x[:, 1:1] * 2),
         ("[:, 3:1]", lambda x: x[:, 3:1] * 2), ("[:, 5:]", lambda x: x[:, 5:] * 2),
         ("narrow(1, 0, 0)", lambda x: x.narrow(1, 0, 0) * 2)]


@pytest.mark.parametrize("name,fn", EMPTY, ids=[e[0] for e in EMPTY])
def test_empty_slices_are_reported_where_they_start(name, fn):
    with pytest.raises(UnsupportedOperatorsError, match=r"aten::slice.Tensor x1 \(produces an empty tensor") as info:
        PyTorchModel(Lambda(fn), example_inputs=(_x(2, 3, 4),)).program
    assert len(info.value.report.unsupported) == 1          # not the multiply that follows


FINDING_10 = [
    ("data-dependent shape", lambda x: torch.nonzero(x).float().sum() * x, "depends on the input values"),
    ("recurrent layer", torch.nn.LSTM(4, 5, batch_first=True), "aten::lstm.input"),
]


@pytest.mark.parametrize("name,model,message", FINDING_10, ids=[f[0] for f in FINDING_10])
def test_unconvertible_models_are_reported_by_name(name, model, message):
    model = model if isinstance(model, torch.nn.Module) else Lambda(model)
    with pytest.raises(UnsupportedOperatorsError, match=message):
        PyTorchModel(model, example_inputs=(_x(2, 3, 4),)).program


def test_a_forward_that_updates_a_buffer_is_refused():
    class Counter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("calls", torch.zeros(1))

        def forward(self, x):
            self.calls.add_(1)
            return x * 2

    with pytest.raises(ConversionError, match="updates calls in place"):
        PyTorchModel(Counter(), example_inputs=(_x(2, 3),)).program


def test_a_forward_that_updates_its_input_through_a_view_is_refused():
    class ScaleFirstColumn(torch.nn.Module):
        def forward(self, x):
            x[:, 0].mul_(2)
            return x * 1

    with pytest.raises(ConversionError, match="updates x in place"):
        PyTorchModel(ScaleFirstColumn(), example_inputs=(_x(2, 3),)).program


def test_in_place_ops_on_the_forwards_own_tensors_convert():
    def shifted(x):
        y = x * 2
        y.add_(1)
        return y

    check_module(Lambda(shifted), (_x(2, 3),))


def test_inputs_that_contradict_the_model_or_each_other():
    import transformers
    config = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    for seq in (0, -1, (3, 0), 2.5):
        with pytest.raises(ShapeError, match="seq_length"):
            PyTorchModel(model, is_hf_model=True, input_names=["input_ids"], batch_size=2, seq_length=seq)
    with pytest.raises(UnsupportedOperatorsError, match="a table of 16 rows"):          # n_positions 16
        PyTorchModel(model, is_hf_model=True, input_names=["input_ids"], batch_size=2, seq_length=20).program
    with pytest.raises(ConversionError, match=r"example input 'input_ids': indices must lie in \[0, 50\)"):
        PyTorchModel(model, is_hf_model=True, example_inputs={"input_ids": torch.tensor([[1, 60]])}).program
    ids = {"input_ids": torch.tensor([[1, 6], [2, 3]])}
    with pytest.raises(ConversionError, match="batch_size=4 contradicts"):
        PyTorchModel(model, is_hf_model=True, example_inputs=ids, batch_size=4)
    with pytest.raises(ConversionError, match="seq_length=8 contradicts"):
        PyTorchModel(model, is_hf_model=True, example_inputs=ids, seq_length=8)
    assert PyTorchModel(model, is_hf_model=True, example_inputs=ids, batch_size=2, seq_length=2).batch_size == 2


def test_library_helpers_leave_the_callers_configuration_alone(monkeypatch):
    """verify() and the test helpers build their FFModels from their arguments: the
    caller's FFConfig() and command line (here a pytest-like `-p plugin -b 8`) neither
    change nor matter."""
    import sys
    from flexflow_torch.runtime import FFConfig
    from flexflow_torch.runtime.config import ensure_runtime
    ensure_runtime()
    monkeypatch.setattr(sys, "argv", ["prog", "-b", "8"])
    before = FFConfig().batch_size
    assert flexflow_torch.verify(torch.nn.Linear(3, 2), example_inputs=(_x(2, 3),)).ok
    assert FFConfig().batch_size == before == 8
    monkeypatch.setattr(sys, "argv", ["pytest", "-p", "no:randomly", "tests/ops"])
    check_module(Lambda(lambda x: x * 2), (_x(2, 3),), expect_ops=["scalar_multiply"])


def test_override_of_a_builtin_before_the_first_conversion():
    """Built-ins load on first use; a user's entry registered before still wins."""
    import subprocess
    import sys
    code = (
        "import torch\n"
        "from flexflow_torch import PyTorchModel, registry\n"
        "@registry.register(torch.ops.aten.tanh.default, override=True)\n"
        "def mine(ctx, self):\n"
        "    return ctx.emit('sigmoid', {'input': ctx.tensor(self)})\n"
        "class M(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return torch.tanh(x)\n"
        "print(PyTorchModel(M(), example_inputs=(torch.randn(2, 3),)).program.ff_ops())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "['sigmoid']"


def test_user_registered_converter_and_override_guard():
    from flexflow_torch.converters._common import scalar_op

    @registry.register(aten.hardtanh.default)
    def aten_hardtanh(ctx, self, min_val=-1.0, max_val=1.0):
        """hardtanh(Tensor self, Scalar min_val=-1, Scalar max_val=1) -> Tensor"""
        x = ctx.tensor(self)
        lo = ctx.emit("relu", {"input": scalar_op(ctx, "scalar_sub", x, min_val)}, {"inplace": False})
        hi = ctx.emit("relu", {"input": scalar_op(ctx, "scalar_sub", x, max_val)}, {"inplace": False})
        return scalar_op(ctx, "scalar_add", ctx.emit("subtract", {"x": lo, "y": hi}), min_val)

    try:
        check_module(Lambda(lambda x: torch.nn.functional.hardtanh(x * 2)), (_x(2, 5),), expect_ops=["relu"])
        with pytest.raises(ValueError, match="already registered"):
            registry.register(aten.hardtanh.default)(lambda ctx, self: self)
    finally:
        registry.unregister(aten.hardtanh.default)


def test_bad_inputs_raise_typed_errors(tmp_path):
    with pytest.raises(InvalidModelError):
        PyTorchModel("bert-base")
    with pytest.raises(TypeError):
        PyTorchModel(42)
    with pytest.raises(ConversionError):
        PyTorchModel(torch.nn.Linear(2, 2), batch_size=0, example_inputs=(_x(1, 2),))
    with pytest.raises(ConversionError):
        PyTorchModel(torch.nn.Linear(2, 2), input_names=["x"])          # no shapes for a plain module
    with pytest.raises(ConversionError):
        PyTorchModel(torch.nn.Linear(2, 2), input_names="x", example_inputs=(_x(1, 2),))
    ptm = PyTorchModel(torch.nn.Linear(2, 2), example_inputs=(_x(3, 2),))
    with pytest.raises(ModelStateError):
        ptm.copy_weights_to_torch(object())
    from flexflow_torch.runtime import DataType
    from flexflow_torch.verify import embedded_model
    ffmodel = embedded_model(batch_size=3)
    with pytest.raises(ShapeError, match="takes 1 inputs"):
        ptm.torch_to_ff(ffmodel, [])
    with pytest.raises(ShapeError, match="shape"):
        ptm.torch_to_ff(ffmodel, [ffmodel.create_tensor([4, 2], DataType.DT_FLOAT)])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a graph")
    with pytest.raises(GraphFileError):
        flexflow_torch.file_to_ff(bad, ffmodel, [])
    with pytest.raises(GraphFileError):
        flexflow_torch.file_to_ff(tmp_path / "missing.ff", ffmodel, [])


def test_inputs_by_name_and_text_form():
    from flexflow_torch.verify import embedded_model
    from flexflow_torch.runtime import DataType
    ptm = PyTorchModel(torch.nn.Linear(2, 3), example_inputs={"input": _x(4, 2)})
    assert "dense(" in ptm.torch_to_string()
    ffmodel = embedded_model(batch_size=4)
    out = ptm.torch_to_ff(ffmodel, {"input": ffmodel.create_tensor([4, 2], DataType.DT_FLOAT)})
    assert tuple(out[0].dims) == (4, 3)
    with pytest.raises(ConversionError, match="unknown inputs"):
        ptm.torch_to_ff(ffmodel, {"y": None})
    with pytest.raises(ConversionError, match="tensors"):
        PyTorchModel(torch.nn.Linear(2, 3), example_inputs={"x": _x(4, 2), "flag": True})


class LintMe(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = torch.nn.Dropout(0.1)
        self.emb = torch.nn.Embedding(10, 4)
        self.emb.weight.data[0].zero_()

    def forward(self, ids, x):
        e = self.drop(self.emb(ids))                                 # (2, 3, 4)
        big = e[:, :, None, None, :].expand(2, 3, 2, 1, 4).reshape(2, 6, 4)   # 5-D on the way
        return torch.softmax(big / (x.abs() + 1), -1)


def test_analyze_lint_kinds():
    """Converted programs break none of FlexFlow's rules; the notes say what conversion
    changed (a >4-D chain became a gather, a 3-D output needs CrossEntropyHead, dropout
    left out in eval mode)."""
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    report = flexflow_torch.analyze(LintMe().eval(), example_inputs=(ids, _x(2, 6, 4)))
    kinds = {item.kind for item in report.lint}
    assert kinds == {"rank", "loss", "dropout"}, str(report)
    check_module(LintMe(), (ids, _x(2, 6, 4)), expect_ops=["gather", "pow", "exp"], forbid_ops=["softmax", "dropout"])


def test_training_mode_captures_dropout_with_the_model_rate():
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    ptm = PyTorchModel(LintMe().train(), example_inputs=(ids, _x(2, 6, 4)))
    assert ptm.training and ptm.program.ff_ops().count("dropout") == 1
    assert next(op for op in ptm.program.ops if op.method == "dropout").args["rate"] == 0.1
    assert "dropout" not in ptm.eval_program.ff_ops()              # verify and eval use eval mode
    assert "dropout" not in {item.kind for item in ptm.analyze().lint}


class TwoInputs(torch.nn.Module):
    def forward(self, a, b):
        return a - 2 * b


def test_input_order_follows_input_names():
    from flexflow_torch.testing import run_ff
    x, y = _x(2, 3), _x(2, 3, seed=1)
    ptm = PyTorchModel(TwoInputs(), input_names=["b", "a"], example_inputs={"a": x, "b": y})
    assert ptm.input_names == ["b", "a"] == ptm.program.input_names
    torch.testing.assert_close(torch.from_numpy(run_ff(ptm, [y, x])[0]), x - 2 * y)
    with pytest.raises(ConversionError, match="do not match"):
        PyTorchModel(TwoInputs(), input_names=["a"], example_inputs={"a": x, "b": y})
