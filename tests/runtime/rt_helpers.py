"""Helpers for the embedded-runtime tests.

`align` checks one operator (or a small graph) the way FlexFlow's tests/align suite
does -- compile with LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE, then one forward,
zero_gradients, backward on a random float label -- against a reference written in
the test:

* every float input x is fed through an `identity` (FlexFlow never writes the gradient
  of a graph input; identity's backward accumulates exactly), so the gradient the
  operator writes into its input is read from the identity's output;
* the reference forward is a PyTorch function of the inputs; the reference gradients
  are either PyTorch autograd of it (exact mode, and flexflow mode for kernels FlexFlow
  computes exactly) or `vjp(out_grad, *inputs)`, FlexFlow's backward formula written
  out in the test;
* the output gradient must be MSE-avg's 2 (y - label) / numel, and every comparison
  uses torch.testing.assert_close defaults.
"""

import numpy as np
import torch

from flexflow_torch.runtime import (DataType, LossType, MetricsType, ParameterSyncType,
                                    SGDOptimizer)

BATCH = 4
MODES = ("flexflow", "exact")
PS = ParameterSyncType.PS
NUMPY_TO_DT = {np.dtype("float32"): DataType.DT_FLOAT, np.dtype("int32"): DataType.DT_INT32,
               np.dtype("int64"): DataType.DT_INT64}


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def compile_mse(ffmodel, optimizer=None):
    ffmodel.compile(optimizer=optimizer or SGDOptimizer(ffmodel, 0.01),
                    loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR])


def feed(ffmodel, tensor, array):
    """float32/int32 through set_tensor, int64 through a data loader (FlexFlow's
    set_tensor rejects int64). Call after init_layers(), which zero-fills inputs."""
    if array.dtype == np.int64:
        loader = ffmodel.create_data_loader(tensor, array)
        loader.next_batch(ffmodel)
    else:
        tensor.set_tensor(ffmodel, np.ascontiguousarray(array))


def layer_types(ffmodel):
    return [type(op).__name__ for op in ffmodel.get_layers().values()]


def grad(tensor, ffmodel):
    return torch.from_numpy(tensor.get_gradients(ffmodel, PS))


def value(tensor, ffmodel):
    return torch.from_numpy(tensor.get_tensor(ffmodel))


def mse_grad(y, label):
    """What FlexFlow's MSE-avg loss writes into the final output
    (loss_functions.cu: logit - label, scaled by 2 / volume)."""
    return 2.0 * (y - label) / y.numel()


def step(ffmodel, feeds, label):
    """init_layers, then feed (inputs and label), forward, zero_gradients, backward."""
    ffmodel.init_layers()
    for tensor, array in feeds:
        feed(ffmodel, tensor, array)
    ffmodel.label_tensor.set_tensor(ffmodel, np.ascontiguousarray(label))
    ffmodel.forward()
    ffmodel.zero_gradients()
    ffmodel.backward()


def set_params(ffmodel, params):
    """params: [(layer name, parameter index, torch tensor)] copied into FlexFlow."""
    for name, index, t in params:
        ffmodel.get_layer_by_name(name).get_parameter_by_id(index).set_weights(
            ffmodel, np.ascontiguousarray(t.detach().numpy(), dtype=np.float32))


def param_grads(ffmodel, params):
    return [grad(ffmodel.get_layer_by_name(name).get_parameter_by_id(index), ffmodel)
            for name, index, _ in params]


def expected(arrays, forward, label, params=(), vjp=None):
    """The reference: (output, output gradient, [input grads] + [param grads]).
    Input gradients are listed for float inputs only."""
    inputs = [torch.from_numpy(a.copy()) for a in arrays]
    for t in inputs:
        if t.is_floating_point():
            t.requires_grad_(True)
    y = forward(*inputs)
    g = mse_grad(y.detach(), torch.from_numpy(label))
    if vjp is not None:
        grads = list(vjp(g, *[t.detach() for t in inputs]))
    else:
        leaves = [t for t in inputs if t.requires_grad] + [p for _, _, p in params]
        grads = torch.autograd.grad(y, leaves, g, allow_unused=True)
        grads = [torch.zeros_like(leaf) if d is None else d for leaf, d in zip(leaves, grads)]
    return y.detach(), g, grads


class Aligned:
    def __init__(self, out, out_grad, grads, ref_out, ref_out_grad, ref_grads, label):
        self.out, self.out_grad, self.grads = out, out_grad, grads
        self.ref_out, self.ref_out_grad, self.ref_grads = ref_out, ref_out_grad, ref_grads
        self.label = label


def align(ffmodel, arrays, build, forward, vjp=None, params=(), layers=None, seed=0, check=None,
          stored=None):
    """Build `build(ffmodel, *tensors)` on `arrays` (float ones behind an identity),
    run one training step and compare with the reference (see `expected`).

    params: [(layer name, parameter index, torch nn.Parameter)]: FlexFlow's weights are
            set from them and their gradients compared.
    layers: the expected Op wrapper names of the layers after the identities.
    check:  per gradient (inputs, then params), whether to compare it (default: all);
            only for gradients FlexFlow leaves undetermined.
    stored: stored(g, y) -> the output gradient as FlexFlow's buffer holds it after the
            op's backward, when that rewrites it (default: g itself)."""
    tensors, probes, feeds = [], [], []
    for a in arrays:
        t = ffmodel.create_tensor(a.shape, NUMPY_TO_DT[a.dtype])
        feeds.append((t, a))
        if a.dtype == np.float32:
            t = ffmodel.identity(t)
            probes.append(t)
        tensors.append(t)
    out = build(ffmodel, *tensors)
    if layers is not None:
        assert layer_types(ffmodel)[len(probes):] == layers
    compile_mse(ffmodel)
    set_params(ffmodel, params)
    label = np.random.default_rng(seed + 99).standard_normal(out.dims).astype(np.float32)
    step(ffmodel, feeds, label)

    ref_out, ref_out_grad, ref_grads = expected(arrays, forward, label, params, vjp)
    result = Aligned(value(out, ffmodel), grad(out, ffmodel),
                     [grad(p, ffmodel) for p in probes] + param_grads(ffmodel, params),
                     ref_out, ref_out_grad, ref_grads, label)
    assert tuple(result.out.shape) == tuple(ref_out.shape) == out.dims
    torch.testing.assert_close(result.out, ref_out)
    torch.testing.assert_close(result.out_grad, ref_out_grad if stored is None else
                               stored(ref_out_grad, ref_out))
    assert len(result.grads) == len(ref_grads)
    for k, (got, want) in enumerate(zip(result.grads, ref_grads)):
        if check is None or check[k]:
            torch.testing.assert_close(got, want)
    return result
