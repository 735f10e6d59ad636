"""Element-wise converters: structure (FlexFlow ops emitted) and numbers."""

import pytest
import torch

from flexflow_torch import PyTorchModel
from flexflow_torch.errors import UnsupportedOperatorsError

from flexflow_torch.testing import check_module


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class Lambda(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


CASES = [
    ("add", lambda a, b: a + b, ["add"]),
    ("add_alpha", lambda a, b: torch.add(a, b, alpha=2.5), ["add", "scalar_multiply"]),
    ("sub", lambda a, b: a - b, ["subtract"]),
    ("mul", lambda a, b: a * b, ["multiply"]),
    ("div", lambda a, b: a / (b.abs() + 1), ["pow", "multiply"]),
    ("broadcast_rank", lambda a, b: a * b[0, 0, :], ["reshape", "multiply"]),
    ("scalar_ops", lambda a, b: (a + 2) * 3 - 1 + b / 4, ["scalar_add", "scalar_multiply", "scalar_sub",
                                                         "scalar_true_divide"]),
    ("rsub", lambda a, b: 1 - a + b, ["scalar_multiply", "scalar_add"]),
    ("neg_exp", lambda a, b: torch.exp(-a) + b, ["exp", "scalar_multiply"]),
    ("sin_cos", lambda a, b: torch.sin(a) * torch.cos(b), ["sin", "cos"]),
    ("pow_rsqrt_sqrt", lambda a, b: a.pow(2) + torch.rsqrt(b * b + 1) + torch.sqrt(b * b + 2), ["pow", "rsqrt"]),
    ("reciprocal", lambda a, b: torch.reciprocal(a * a + 1) + b, ["pow"]),
    ("maximum", lambda a, b: torch.maximum(a, b) + torch.minimum(a, b), ["max", "min"]),
    ("scalar_div_by_tensor", lambda a, b: 2.0 / (a * a + 1) + b, ["pow", "scalar_multiply"]),
]


@pytest.mark.parametrize("name,fn,ops", CASES, ids=[c[0] for c in CASES])
def test_elementwise(name, fn, ops):
    check_module(Lambda(fn), (_x(2, 3, 4), _x(2, 3, 4, seed=1)), expect_ops=ops, forbid_ops=["divide"])


def test_where_and_masked_fill_with_input_mask():
    def fn(x, mask):
        m = mask.bool()
        return torch.where(m[:, None, :], x, 0.5) + x.masked_fill(~m[:, None, :], -3.0)
    mask = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1]])
    check_module(Lambda(fn), (_x(2, 3, 4), mask), expect_ops=["multiply", "add"])


def test_cast_int_to_float_uses_implicit_cast():
    """An integer tensor reaching float arithmetic in FlexFlow is cast by a multiply with a
    float one (here a host-computed integer value: the input's cast itself runs on the host)."""
    check_module(Lambda(lambda x, ids: x + (ids + 1)), (_x(2, 5), torch.randint(0, 9, (2, 5))),
                 expect_ops=["multiply", "add"])


def test_integer_arithmetic_is_float():
    """FlexFlow's element-wise kernels abort on integers (INT64 at init_layers, INT32 at the
    first forward): arithmetic on the integer inputs alone runs on the host, and what reaches
    FlexFlow's arithmetic is float."""
    ptm = check_module(Lambda(lambda x, m: x * ((1 - m) * -0.5)), (_x(2, 4), torch.tensor([[1, 0, 1, 1], [0, 0, 1, 1]])))
    program = ptm.eval_program
    assert program.host is not None and program.input_names[1].startswith("host.")
    arithmetic = [op for op in program.ops if op.kind == "op"]
    dtypes = {program.values[v["$v"]].dtype for op in arithmetic for v in op.args.values() if isinstance(v, dict) and "$v" in v}
    assert dtypes == {"DT_FLOAT"}


def test_sdpa_mask_as_keyword():
    fn = Lambda(lambda q, m: torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=m.bool()[:, None, None, :]))
    check_module(fn, (_x(2, 2, 4, 8), torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])), expect_ops=["pool2d", "exp"])


def test_ids_computed_with_arithmetic_are_reported():
    """FlexFlow has no integer arithmetic and no float-to-int cast: ids the model computes
    from float activations cannot reach an embedding."""
    class PositionsPlusTwo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = torch.nn.Embedding(12, 4)

        def forward(self, x):
            return self.pos((x * 2).long())
    x = torch.tensor([[0.0, 1, 2, 3], [1, 2, 3, 4]])
    with pytest.raises(UnsupportedOperatorsError, match="compute them on the host"):
        PyTorchModel(PositionsPlusTwo(), example_inputs=(x,)).program
