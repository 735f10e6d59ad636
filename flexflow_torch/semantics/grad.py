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
    """A whole embedding table read as a tensor (`w.unsqueeze(0)`, a view of the weight).

    Its lookups (`TableLookup`) hand it their gradients instead of giving them to
    autograd, and its backward scatter-adds them (gather's backward) into the gradient its
    other users gave: one dense (rows, cols) buffer in all, where each lookup would zero
    one and autograd would add them up. `owns_grad`: that gradient is a fresh tensor no
    one else holds (the table's other users are matrix products and gathers), so the
    lookups add into it in place; otherwise into a copy."""

    @staticmethod
    def forward(ctx, w, lookups, owns_grad):
        ctx.lookups, ctx.owns_grad, ctx.shape = lookups, owns_grad, (1,) + tuple(w.shape)
        return w.unsqueeze(0)

    @staticmethod
    def backward(ctx, g):
        parts = list(ctx.lookups)
        ctx.lookups.clear()
        if parts:
            if g is None:
                g = parts[0][1].new_zeros(ctx.shape)
            elif not ctx.owns_grad:
                g = g.clone(memory_format=torch.contiguous_format)
            else:
                g = g.contiguous()
            for index, part in parts:
                g.scatter_add_(2, index, part)
        return (None if g is None else g.squeeze(0)), None, None


class TableLookup(torch.autograd.Function):
    """torch.gather along the last axis of a `TableRead`, whose gradient goes to the
    table read's list (`sink`) rather than through autograd. The table's gradient gets
    the same terms, summed in another order (FlexFlow's gather backward adds with
    atomics, in no order either: gather_kernels.cu gather_backward)."""

    @staticmethod
    def forward(ctx, x, index, sink):
        ctx.save_for_backward(index)
        ctx.sink = sink
        return torch.gather(x, x.dim() - 1, index)

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        ctx.sink.append((index, g))
        return None, None, None


def read_table(w, owns_grad):
    """`w` as a (1, rows, cols) TableRead whose lookups `lookup_sink` finds."""
    lookups = []
    out = TableRead.apply(w, lookups, owns_grad)
    out._ff_lookups = lookups
    return out


def lookup_sink(x):
    """The list a TableRead output `x` collects its lookups' gradients in, or None."""
    return getattr(x, "_ff_lookups", None)
