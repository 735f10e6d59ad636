"""Operator families added for HuggingFace coverage: grouped/depthwise and computed-kernel
convolutions, GroupNorm, weight norm, max/min/topk over an axis, mixture-of-experts
routing, the padding FlexFlow recomputes, products across samples, zero-size pieces,
typed capture errors. Forward values against PyTorch (assert_close defaults) and the
FlexFlow ops emitted; training in test_new_families_training.py."""

import pytest
import torch

from flexflow_torch import PyTorchModel
from flexflow_torch.errors import CaptureError, UnsupportedOperatorsError
from flexflow_torch.testing import check_module

torch.manual_seed(0)


class Lambda(torch.nn.Module):
    def __init__(self, fn, *modules):
        super().__init__()
        self.fn, self.mods = fn, torch.nn.ModuleList(modules)

    def forward(self, *xs):
        return self.fn(self.mods, *xs)


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _perturbed(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return module


def test_depthwise_conv_is_one_conv2d_per_channel():
    conv = _perturbed(torch.nn.Conv2d(4, 4, 3, padding=1, groups=4))
    ptm = check_module(Lambda(lambda m, x: m[0](x), conv), (_x(2, 4, 6, 6),), expect_ops=["conv2d"] * 4 + ["split"])
    keys = sorted(ptm.program.weight_sources)
    assert keys[0] == "mods.0.bias[0:1]" and len(keys) == 8


def test_grouped_conv_with_two_groups():
    conv = _perturbed(torch.nn.Conv2d(4, 6, 3, stride=2, groups=2))
    check_module(Lambda(lambda m, x: m[0](x), conv), (_x(2, 4, 7, 7),), expect_ops=["conv2d", "conv2d", "concat"])


def test_conv_padding_flexflow_would_recompute():
    """7x7 stride 4 padding 3 on 32x32: FlexFlow would run padding 2; pad and crop instead."""
    conv = _perturbed(torch.nn.Conv2d(3, 4, 7, stride=4, padding=3))
    ptm = check_module(Lambda(lambda m, x: m[0](x), conv), (_x(2, 3, 32, 32),), expect_ops=["gather", "conv2d"])
    convs = [op for op in ptm.program.ops if op.method == "conv2d"]
    assert convs[0].args["padding_h"] == 0


def test_group_norm():
    gn = _perturbed(torch.nn.GroupNorm(2, 6))
    check_module(Lambda(lambda m, x: m[0](x), gn), (_x(2, 6, 5),), expect_ops=["reduce_sum", "pow"],
                 forbid_ops=["layer_norm"])


def test_weight_norm_conv1d_uses_the_computed_kernel():
    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(4, 6, 5, padding=2, groups=2), dim=2)
    _perturbed(conv)
    check_module(Lambda(lambda m, x: m[0](x), conv), (_x(2, 4, 9),), expect_ops=["gather", "batch_matmul"],
                 forbid_ops=["conv2d"])


@pytest.mark.parametrize("fn", [lambda m, x: x.max(dim=1).values, lambda m, x: x.min(dim=-1, keepdim=True).values,
                                lambda m, x: x.amax(dim=2), lambda m, x: torch.topk(x, 2, dim=-1).values * 2])
def test_selection_over_an_axis(fn):
    check_module(Lambda(fn), (_x(2, 3, 5),), expect_ops=["pool2d"])


def test_topk_indices_as_one_hot():
    """A router: the chosen experts' weights as a dense (tokens, experts) matrix."""
    def route(m, x):
        p = torch.softmax(m[0](x), dim=-1)
        w, idx = torch.topk(p, 2, dim=-1)
        return (torch.nn.functional.one_hot(idx, 4) * (w / w.sum(-1, keepdim=True)).unsqueeze(-1)).sum(-2)
    check_module(Lambda(route, _perturbed(torch.nn.Linear(6, 4))), (_x(2, 5, 6),), expect_ops=["pool2d", "min"])


def test_product_across_samples_is_single_gpu():
    """CLIP's text x image logits: rows of one batch against another."""
    ptm = check_module(Lambda(lambda m, a, b: a @ b.t()), (_x(3, 4), _x(3, 4, seed=1)), expect_ops=["batch_matmul"])
    assert ptm.program.single_gpu


def test_zero_size_pieces_of_a_cat_are_dropped():
    class Tokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.none = torch.nn.Parameter(torch.zeros(1, 0, 4))
            self.cls = torch.nn.Parameter(torch.randn(1, 1, 4))

        def forward(self, x):
            B = x.shape[0]
            return torch.cat([self.cls.expand(B, -1, -1), self.none.expand(B, -1, -1), x], dim=1)
    check_module(Tokens(), (_x(2, 3, 4),))


def test_mask_indexing_is_reported_with_module_line_and_what_to_do():
    class Select(torch.nn.Module):
        def forward(self, x, ids):
            return x[ids == 2]
    with pytest.raises(UnsupportedOperatorsError, match=r"(?s)depends on the input values.*select with an index.*"
                                                         r"test_new_families.py\", line \d+"):
        PyTorchModel(Select(), example_inputs=(_x(2, 3), torch.tensor([[2, 0, 2], [1, 2, 0]]))).program


def test_a_branch_on_a_tensor_is_a_typed_capture_error():
    class Branch(torch.nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x * 2
            return x
    with pytest.raises(CaptureError, match=r"What to do"):
        PyTorchModel(Branch(), example_inputs=(_x(2, 3),)).program


@pytest.mark.parametrize("kwargs", [dict(size=(7, 9), align_corners=False), dict(scale_factor=2.0, align_corners=True),
                                    dict(scale_factor=1.5, align_corners=False)])
def test_bilinear_upsampling(kwargs):
    fn = Lambda(lambda m, x: torch.nn.functional.interpolate(x, mode="bilinear", **kwargs))
    check_module(fn, (_x(2, 3, 4, 6),), expect_ops=["batch_matmul", "batch_matmul"])
