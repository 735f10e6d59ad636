"""Autograd pieces for FlexFlow's backward kernels where they differ from PyTorch's.

Forward values are PyTorch's; only the gradient changes. Each function names the
FlexFlow kernel it reproduces."""

from __future__ import annotations

import torch


class ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by `coef`. Used for what a
    consumer's contribution becomes when a later backward overwrites (0) or doubles (2)
    the buffer it was added to (see runtime/autograd plan)."""

    @staticmethod
    def forward(ctx, x, coef):
        ctx.coef = coef
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.coef, None


def scale_grad(x, coef):
    if coef == 1.0:
        return x
    if coef == 0.0:
        return x.detach()
    return ScaleGrad.apply(x, coef)


class CopyGrad(torch.autograd.Function):
    """`fn(x)` forward, the incoming gradient copied through unchanged backward:
    FlexFlow's softmax (src/ops/kernels/softmax.cu, Internal::backward_kernel)."""

    @staticmethod
    def forward(ctx, x, fn):
        return fn(x)

    @staticmethod
    def backward(ctx, g):
        return g, None


class TieGrad(torch.autograd.Function):
    """max/min with FlexFlow's tie rule: each input whose value is >= (max) or <= (min)
    the other gets the full gradient (element_binary_kernels.cu,
    elewise_binary_backward_kernel)."""

    @staticmethod
    def forward(ctx, a, b, is_max):
        ctx.save_for_backward(a, b)
        ctx.is_max = is_max
        return torch.maximum(a, b) if is_max else torch.minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = (a >= b) if ctx.is_max else (a <= b)
        gb = (b >= a) if ctx.is_max else (b <= a)
        return g * ga, g * gb, None


class InplaceGrad(torch.autograd.Function):
    """An in-place element-wise op: input and output share one gradient buffer, so an
    accumulating backward adds its result to the incoming gradient (g + f(g)) and an
    overwriting one replaces it (element_unary.cc backward_task_with_type, which aliases
    output_grad_ptr = input_grad_ptr). `vjp(g, x, y)` is the op's own formula."""

    @staticmethod
    def forward(ctx, x, fn, vjp, accumulate):
        y = fn(x)
        ctx.save_for_backward(x, y)
        ctx.vjp, ctx.accumulate = vjp, accumulate
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        d = ctx.vjp(g, x, y)
        return (g + d if ctx.accumulate else d), None, None, None


class TableRead(torch.autograd.Function):
    """A whole embedding table read as a tensor (`w.unsqueeze(0)`, a view of the weight),
    whose incoming gradient may be sparse (`SparseGatherGrad`): it reaches the weight
    dense. Several sparse gradients meet here as sparse sums first, so a shared table's
    lookups cost no dense (rows, cols) buffer each."""

    @staticmethod
    def forward(ctx, w):
        return w.unsqueeze(0)

    @staticmethod
    def backward(ctx, g):
        return (g.to_dense() if g.is_sparse else g).squeeze(0)


class SparseGatherGrad(torch.autograd.Function):
    """torch.gather along the last axis of a `TableRead` with a sparse COO gradient: the
    same values as gather's dense scatter-add gradient, summed in another order (FlexFlow's
    gather backward adds with atomics: no order either, gather_kernels.cu
    gather_backward)."""

    @staticmethod
    def forward(ctx, x, index):
        ctx.save_for_backward(index)
        ctx.shape = x.shape
        return torch.gather(x, x.dim() - 1, index)

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        lead = [torch.arange(n, device=index.device).view([-1 if k == d else 1 for k in range(index.dim())])
                .expand(index.shape).reshape(-1) for d, n in enumerate(index.shape[:-1])]
        coords = torch.stack(lead + [index.reshape(-1)])
        return torch.sparse_coo_tensor(coords, g.reshape(-1), ctx.shape, check_invariants=False), None


def reads_table(x):
    """Whether `x` is a `TableRead` output (its gradient may come sparse)."""
    return x.grad_fn is not None and type(x.grad_fn) is TableRead._backward_cls
