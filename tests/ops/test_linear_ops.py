"""Linear layers, fused activations, matmuls, GPT-2 Conv1D (addmm)."""

import torch

from flexflow_torch.testing import check_module

from test_elementwise_ops import Lambda, _x


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


def test_matmul_batched_and_broadcast():
    fn = Lambda(lambda a, b: torch.matmul(a, b) + torch.matmul(a, b[0]).sum())
    check_module(fn, (_x(2, 3, 4, 5), _x(2, 3, 5, 6, seed=1)), expect_ops=["batch_matmul"])


def test_bmm_and_mm():
    fn = Lambda(lambda a, b: torch.bmm(a, b).reshape(2, -1) @ (torch.arange(24.0).reshape(12, 2) / 24))
    check_module(fn, (_x(2, 3, 4), _x(2, 4, 4, seed=1)), expect_ops=["batch_matmul"])


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
