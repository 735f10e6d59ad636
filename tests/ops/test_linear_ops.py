"""Linear layers beyond the op table: FlexFlow layers named after the modules, fused
activations, GPT-2 Conv1D (addmm) as a dense layer with the transposed kernel."""

import torch

from flexflow_torch.testing import check_module

from test_elementwise_ops import _x


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 16)
        self.fc2 = torch.nn.Linear(16, 8, bias=False)
        self.out = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.sigmoid(self.fc2(torch.relu(self.fc1(x)))))


def test_linear_with_fused_activations_named_after_modules():
    torch.manual_seed(0)
    ptm = check_module(MLP(), (_x(4, 6),), expect_ops=["dense"] * 3, forbid_ops=["relu", "sigmoid"])
    dense = [op for op in ptm.program.ops if op.method == "dense"]
    assert [op.name for op in dense] == ["fc1", "fc2", "out"]
    assert [op.args["activation"]["$enum"] for op in dense] == [
        "ActiMode.AC_MODE_RELU", "ActiMode.AC_MODE_SIGMOID", "ActiMode.AC_MODE_NONE"]
    assert [op.args["use_bias"] for op in dense] == [True, False, True]


class Conv1DLike(torch.nn.Module):
    """HF GPT-2's Conv1D: weight (in, out) and addmm."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(6, 10))
        self.bias = torch.nn.Parameter(torch.randn(10))

    def forward(self, x):
        return torch.addmm(self.bias, x.view(-1, 6), self.weight).view(x.shape[0], x.shape[1], 10)


def test_addmm_is_a_dense_with_transposed_kernel():
    torch.manual_seed(0)
    ptm = check_module(Conv1DLike(), (_x(2, 3, 6),), expect_ops=["dense"], forbid_ops=["batch_matmul"])
    assert ptm.program.weight_sources["weight"]["transpose"] is True
