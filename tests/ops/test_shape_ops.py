"""Shape and data movement: view, permute, expand, cat, split, slice, select, index."""

import pytest
import torch

from flexflow_torch.testing import check_module

from test_elementwise_ops import Lambda, _x

CASES = [
    ("view_permute", lambda x: x.view(2, 3, 2, 2).permute(0, 2, 3, 1) * 1.5, ["reshape", "gather"]),
    ("transpose", lambda x: x.transpose(1, 2) + 1, ["gather"]),
    ("unsqueeze_squeeze", lambda x: x.unsqueeze(1).squeeze(1) * x, ["multiply"]),
    ("flatten", lambda x: torch.flatten(x, 1) * 2, ["reshape"]),
    ("expand", lambda x: x[:, :1, :].expand(2, 3, 4) * x, ["split", "add", "multiply"]),
    ("cat", lambda x: torch.cat([x, x * 2], dim=-1), ["concat"]),
    ("split", lambda x: sum(t * (i + 1) for i, t in enumerate(torch.split(x, [1, 3], dim=2))).sum(-1),
     ["split", "reduce_sum"]),
    ("chunk", lambda x: torch.chunk(x, 2, dim=2)[1] - 1, ["split"]),
    ("slice", lambda x: x[:, 1:3, :] * 2, ["split"]),
    ("strided_slice", lambda x: x[:, :, ::2] * 2, ["gather"]),
    ("select", lambda x: x[:, 1] + 1, ["split", "reshape"]),
    ("index_const", lambda x: x[:, torch.tensor([2, 0])] + 1, ["gather"]),
    ("unbind", lambda x: torch.unbind(x, 1)[2] * 3, ["split"]),
]


@pytest.mark.parametrize("name,fn,ops", CASES, ids=[c[0] for c in CASES])
def test_shape(name, fn, ops):
    check_module(Lambda(fn), (_x(2, 3, 4),), expect_ops=ops)


MOVES = [
    ("flip", lambda x: torch.flip(x, [2]) + x),
    ("roll", lambda x: torch.roll(x, 1, 1) * 2),
    ("repeat", lambda x: x.repeat(1, 2, 1) + 1),
    ("index_select", lambda x: torch.index_select(x, 2, torch.tensor([3, 1])) * 2),
    ("pad", lambda x: torch.nn.functional.pad(x, (1, 2), value=0.5) * 2),
    ("ones_like_of_input", lambda x: x * 2 + torch.ones_like(x).cumsum(-1)),
]


@pytest.mark.parametrize("name,fn", MOVES, ids=[m[0] for m in MOVES])
def test_constant_index_data_movement(name, fn):
    check_module(Lambda(fn), (_x(2, 3, 4),), expect_ops=["gather"] if name != "ones_like_of_input" else [],
                 forbid_ops=["reverse"])


def test_grouped_query_attention_repeats_heads():
    fn = Lambda(lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True))
    check_module(fn, (_x(2, 4, 3, 8), _x(2, 2, 3, 8, seed=1), _x(2, 2, 3, 8, seed=2)),
                 expect_ops=["gather", "gather", "batch_matmul"])
