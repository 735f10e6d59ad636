"""Activations and softmax."""

import pytest
import torch

from flexflow_torch.testing import check_module

from test_elementwise_ops import Lambda, _x

#: softmax composed from operators whose FlexFlow backward is exact (FlexFlow's own
#: softmax copies its gradient through): max pool, subtract, exp, reduce_sum, pow, multiply
SOFTMAX = ["pool2d", "subtract", "exp", "reduce_sum", "pow", "multiply"]

CASES = [
    ("relu", torch.relu, ["relu"]),
    ("sigmoid", torch.sigmoid, ["sigmoid"]),
    ("tanh", torch.tanh, ["tanh"]),
    ("gelu_exact", torch.nn.functional.gelu, ["gelu"]),
    ("gelu_tanh", lambda x: torch.nn.functional.gelu(x, approximate="tanh"), ["pow", "tanh", "multiply"]),
    ("silu", torch.nn.functional.silu, ["sigmoid", "multiply"]),
    ("leaky_relu", lambda x: torch.nn.functional.leaky_relu(x, 0.2), ["relu", "subtract"]),
    ("softmax_last", lambda x: torch.softmax(x, -1), SOFTMAX),
    ("softmax_mid", lambda x: torch.softmax(x, 1), ["gather"] * 2 + SOFTMAX),
]


@pytest.mark.parametrize("name,fn,ops", CASES, ids=[c[0] for c in CASES])
def test_activation(name, fn, ops):
    check_module(Lambda(fn), (_x(2, 3, 5) * 2,), expect_ops=ops, forbid_ops=["elu", "softmax", "transpose"])
