"""Every row of the op table (op_table.py): exact structure, then the output and every
gradient of one training step against PyTorch; rows FlexFlow cannot express must be
reported, with the reason, by analyze() before anything is emitted."""

import pytest

import flexflow_torch
from flexflow_torch import PyTorchModel
from flexflow_torch.analysis import count_ops
from flexflow_torch.errors import UnsupportedOperatorsError
from flexflow_torch.registry import target_name

from op_harness import build, run_case
from op_table import ROWS


def _param(case):
    marks = [pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in ROWS if "unsupported" not in c.extra])
def test_op(case):
    run_case(case)


@pytest.mark.parametrize("case", [_param(c) for c in ROWS if "unsupported" in c.extra])
def test_unsupported_op_is_reported(case, monkeypatch):
    module, inputs = build(case)
    ptm = PyTorchModel(module, example_inputs=inputs)
    assert count_ops(ptm.prepared) == {target_name(k): v for k, v in case.aten.items()}
    message = case.extra["unsupported"]
    if case.extra.get("found") != "converting":          # the supports checks see it: nothing is emitted
        import flexflow_torch.pytorch_model as pm

        def no_conversion(*args, **kwargs):
            raise AssertionError("analyze() converted the model to find the problem")
        monkeypatch.setattr(pm, "ConversionContext", no_conversion)
        report = flexflow_torch.analyze(ptm)
        assert not report.ok and any(message in u.reason for u in report.unsupported), str(report)
        monkeypatch.undo()
    with pytest.raises(UnsupportedOperatorsError, match=message):
        ptm.program
