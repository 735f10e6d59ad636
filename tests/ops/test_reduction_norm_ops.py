"""Norms beyond the op table: fusion of hand-written RMS and layer norms, one table per
norm weight."""

import torch

from flexflow_torch.testing import check_module

from test_elementwise_ops import _x


class Norms(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = torch.nn.LayerNorm(8)
        self.ln2 = torch.nn.LayerNorm((3, 8))
        self.rms_weight = torch.nn.Parameter(torch.rand(8) + 0.5)
        with torch.no_grad():
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.bias.uniform_(-0.5, 0.5)

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        rms = self.rms_weight * (x * torch.rsqrt(var + 1e-6))
        return self.ln(x) + self.ln2(x) + rms


def test_layer_norm_axes_and_rms_norm_fusion():
    """Norms are composed (FlexFlow's layer_norm/rms_norm overwrite the residual's gradient
    and cannot train with data parallelism); each weight is one table read per sample."""
    torch.manual_seed(0)
    ptm = check_module(Norms(), (_x(2, 3, 8),), expect_ops=["reduce_sum"] * 5 + ["pow"] * 3 + ["embedding"] * 5,
                       forbid_ops=["rsqrt", "mean", "layer_norm", "rms_norm"])
    assert ptm.prepared.fusions["rms_norm"] == 1
    tables = [op for op in ptm.eval_program.ops if op.method == "embedding"]
    assert sorted(w["key"] for op in tables for w in op.weights) == [
        "ln.bias", "ln.weight", "ln2.bias", "ln2.weight", "rms_weight"]


class ManualLayerNorms(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.rand(8) + 0.5)
        self.b = torch.nn.Parameter(torch.rand(8) - 0.5)

    def forward(self, x):
        u = x.mean(-1, keepdim=True)
        s = (x - u).pow(2).mean(-1, keepdim=True)
        a = self.w * ((x - u) / torch.sqrt(s + 1e-5)) + self.b              # BERT-TF / ConvNeXt style
        v = torch.var(x, dim=-1, keepdim=True, correction=0)
        c = (x - x.mean(-1, keepdim=True)) * torch.rsqrt(v + 1e-6)          # no affine
        return a + c


def test_hand_written_layer_norm_is_fused():
    torch.manual_seed(0)
    ptm = check_module(ManualLayerNorms(), (_x(2, 3, 8) * 3 + 1,), expect_ops=["pow"] * 2,
                       forbid_ops=["rsqrt", "layer_norm"])
    assert ptm.prepared.fusions["layer_norm"] == 2
