"""Convolution and pooling beyond the op table: a residual CNN, conv1d weights round trip."""

import torch
import torch.nn.functional as F

from flexflow_torch.testing import check_module

from test_elementwise_ops import _x


class CNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(2)
        self.avg = torch.nn.AvgPool2d(2)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = h + self.conv2(h)                       # residual
        h = self.avg(self.pool(h))
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        return self.head(h)


def test_residual_cnn():
    torch.manual_seed(0)
    check_module(CNN(), (_x(2, 3, 8, 8),), expect_ops=["conv2d", "conv2d", "pool2d", "pool2d", "pool2d", "dense"])


class Conv1dNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 6, 3, padding=1)
        self.conv2 = torch.nn.Conv1d(6, 2, 2, stride=2)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv(x)))


def test_conv1d_as_conv2d_and_weights_round_trip():
    from flexflow_torch.verify import run_converted
    torch.manual_seed(0)
    net = Conv1dNet()
    ptm = check_module(net, (_x(2, 4, 9),), expect_ops=["conv2d", "conv2d"])
    assert ptm.program.weights["conv.weight"].shape == (6, 4, 1, 3)
    ffmodel, _, _, _ = run_converted(ptm.program, ptm.example_inputs)
    before = net.conv.weight.detach().clone()
    ptm.copy_weights_to_torch(ffmodel)                 # (6, 4, 1, 3) back to (6, 4, 3)
    torch.testing.assert_close(net.conv.weight, before)
