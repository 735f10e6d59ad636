"""Element-wise converters beyond the op table (op_table.py): integer operands become
float before any arithmetic. `Lambda` and `_x` are shared by the other op tests."""

import torch

from flexflow_torch.testing import check_module


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class Lambda(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def test_integer_arithmetic_is_float():
    """FlexFlow's element-wise kernels abort on integers (INT64 at init_layers, INT32 at the
    first forward): arithmetic on the integer inputs alone runs on the host, and what
    reaches FlexFlow's arithmetic is float."""
    ptm = check_module(Lambda(lambda x, m: x * ((1 - m) * -0.5)), (_x(2, 4), torch.tensor([[1, 0, 1, 1], [0, 0, 1, 1]])))
    program = ptm.eval_program
    assert program.host is not None and program.input_names[1].startswith("host.")
    arithmetic = [op for op in program.ops if op.kind == "op"]
    dtypes = {program.values[v["$v"]].dtype for op in arithmetic for v in op.args.values() if isinstance(v, dict) and "$v" in v}
    assert dtypes == {"DT_FLOAT"}
