"""verify(): PyTorch vs converted per output, and the first diverging node;
plain MLP and residual CNN; an fx.GraphModule as input."""

import torch

import flexflow_torch
from flexflow_torch import PyTorchModel, registry

aten = torch.ops.aten


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = torch.nn.Linear(10, 32), torch.nn.Linear(32, 32), torch.nn.Linear(32, 4)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        h = torch.tanh(self.fc2(h)) + h
        return self.fc3(h)


class ResidualCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.block = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
                                         torch.nn.Conv2d(8, 8, 3, padding=1))
        self.pool = torch.nn.MaxPool2d(2)
        self.head = torch.nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = torch.relu(h + self.block(h))
        return self.head(torch.flatten(self.pool(h), 1))


def _inputs(*shape):
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(0)),)


def test_verify_mlp_and_cnn_pass():
    torch.manual_seed(0)
    for model, x in ((MLP(), _inputs(6, 10)), (ResidualCNN(), _inputs(2, 3, 8, 8))):
        report = flexflow_torch.verify(model.eval(), example_inputs=x)
        assert report.ok, str(report)
        assert report.outputs[0].max_abs < 1e-5


def test_verify_finds_first_diverging_node():
    original = registry.get_converter(aten.tanh.default)

    def broken_tanh(ctx, self):
        return ctx.emit("sigmoid", {"input": ctx.tensor(self)})

    registry.register(aten.tanh.default, override=True)(broken_tanh)
    try:
        torch.manual_seed(0)
        report = flexflow_torch.verify(MLP().eval(), example_inputs=_inputs(6, 10))
    finally:
        registry.register(aten.tanh.default, override=True)(original)
    assert not report.ok
    assert report.first_divergence_node.startswith("tanh")
    assert "first diverging node: tanh" in str(report)


def test_accepts_an_fx_graph_module():
    torch.manual_seed(0)
    gm = torch.fx.symbolic_trace(MLP().eval())
    assert isinstance(gm, torch.fx.GraphModule)
    report = flexflow_torch.verify(PyTorchModel(gm, example_inputs=_inputs(6, 10)))
    assert report.ok, str(report)


def test_verify_on_other_inputs_of_the_same_shape():
    torch.manual_seed(0)
    model = MLP().eval()
    ptm = PyTorchModel(model, example_inputs={"x": _inputs(6, 10)[0]})
    report = flexflow_torch.verify(ptm, inputs={"x": torch.randn(6, 10) * 3})
    assert report.ok, str(report)
