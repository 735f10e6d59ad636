"""Helpers for the embedded-runtime tests.

`align` runs one FlexFlow model the way FlexFlow's tests/align suite does (compile
with LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE, one forward/zero_gradients/backward on a
random float label) and the same computation in PyTorch with
`nn.MSELoss(reduction="mean")`, then compares outputs, input gradients and weight
gradients with float32 `assert_close` defaults.
"""

import numpy as np
import torch

from flexflow_torch.runtime import (LossType, MetricsType, ParameterSyncType, SGDOptimizer)

BATCH = 4


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def compile_mse(ffmodel, optimizer=None):
    ffmodel.compile(optimizer=optimizer or SGDOptimizer(ffmodel, 0.01),
                    loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR])


def feed(ffmodel, tensor, array):
    """float32/int32 through set_tensor, int64 through a data loader (FlexFlow's
    set_tensor rejects int64)."""
    if array.dtype == np.int64:
        loader = ffmodel.create_data_loader(tensor, array)
        loader.next_batch(ffmodel)
    else:
        tensor.set_tensor(ffmodel, np.ascontiguousarray(array))


def layer_types(ffmodel):
    return [type(op).__name__ for op in ffmodel.get_layers().values()]


class AlignResult:
    def __init__(self, ff_out, torch_out, torch_inputs, label):
        self.ff_out, self.torch_out = ff_out, torch_out
        self.torch_inputs, self.label = torch_inputs, label


def align(ffmodel, feeds, out, torch_fn, layers, params=(), seed=0, check_inputs=True):
    """Run FlexFlow and PyTorch on the same data and compare everything.

    feeds:  [(ff input tensor, numpy array)]; float arrays also get an input-gradient check.
    out:    the FlexFlow output tensor (the model's last operator).
    torch_fn(*torch_inputs) -> torch output, using the torch parameters in `params`.
    layers: the expected Op wrapper class names of ffmodel.get_layers(), in order.
    params: [(ff Parameter, torch nn.Parameter)]: weights copied FlexFlow <- PyTorch,
            gradients compared.
    """
    assert layer_types(ffmodel) == layers
    compile_mse(ffmodel)
    for ff_param, t_param in params:
        ff_param.set_weights(ffmodel, np.ascontiguousarray(t_param.detach().numpy(),
                                                           dtype=np.float32))
    for tensor, array in feeds:
        feed(ffmodel, tensor, array)
    label = np.random.default_rng(seed + 99).standard_normal(out.dims).astype(np.float32)
    ffmodel.label_tensor.set_tensor(ffmodel, label)
    ffmodel.init_layers()
    ffmodel.forward()
    ffmodel.zero_gradients()
    ffmodel.backward()

    t_inputs = []
    for _, array in feeds:
        t = torch.from_numpy(array.copy())
        if t.is_floating_point():
            t.requires_grad_(True)
        t_inputs.append(t)
    t_out = torch_fn(*t_inputs)
    loss = torch.nn.MSELoss(reduction="mean")(t_out, torch.from_numpy(label))
    loss.backward()

    ff_out = out.get_tensor(ffmodel)
    assert ff_out.shape == tuple(t_out.shape)
    torch.testing.assert_close(torch.from_numpy(ff_out), t_out.detach())
    torch.testing.assert_close(torch.from_numpy(out.get_gradients(ffmodel, ParameterSyncType.PS)),
                               2.0 * (t_out.detach() - torch.from_numpy(label)) / label.size)
    if check_inputs:
        for (tensor, _), t in zip(feeds, t_inputs):
            if t.is_floating_point():
                torch.testing.assert_close(
                    torch.from_numpy(tensor.get_gradients(ffmodel, ParameterSyncType.PS)),
                    t.grad)
    for ff_param, t_param in params:
        torch.testing.assert_close(
            torch.from_numpy(ff_param.get_gradients(ffmodel, ParameterSyncType.PS)),
            t_param.grad)
    return AlignResult(ff_out, t_out, t_inputs, label)
