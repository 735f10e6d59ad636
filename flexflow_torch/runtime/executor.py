"""How `FFModel.forward` runs the recorded layers: a step plan built once per model.

At the first forward after `init_layers` the layers (FlexFlow's order) become steps:
- a `LayerStep` per layer, its forward bound to its arguments and the inputs whose
  gradient FlexFlow scales (`FFModel._plan_gradients`) listed once;
- a `GroupStep` per fused group (`runtime/fusion.py`): a composition that converted
  programs use for softmax, the loss head and permutations, run as PyTorch's fused
  kernels with the same values and gradients up to float rounding. The group's inner
  tensors are recomputed, unfused, when something reads them (`materialize`).

Activation gradients are captured by the backward pass itself (`GradStore`): no hook
per tensor, no copy (`retain_grad` would copy every one of them on every backward).
"""

from __future__ import annotations

import functools

import torch
from torch.autograd.graph import GradientEdge, get_gradient_edge

from ..semantics.grad import scale_grad

# What torch.autograd.grad calls once it has normalised its arguments (ours are already a
# tensor, its gradient and a list of inputs): about 10 µs a step less on small models.
_engine_run_backward = getattr(torch.autograd.graph, "_engine_run_backward", None)


class GradStore:
    """The gradient of each activation in the last backward.

    `watch` records the tensor's gradient edge as the forward made it (an in-place op
    later moves the tensor onto a new node; the edge keeps the value's own gradient);
    `backward` asks autograd for the weights' gradients and these in one
    `torch.autograd.grad` call, which captures them in C++: no Python hook per tensor."""

    def __init__(self):
        self.clear()

    def clear(self):
        self.grads, self.ids, self.edges = {}, [], []

    def watch(self, value):
        self.ids.append(id(value))
        self.edges.append(GradientEdge(value.grad_fn, value.output_nr) if value.grad_fn is not None
                          else get_gradient_edge(value))

    def backward(self, target, grad, leaves):
        """Backpropagate `grad` from `target`: `leaves` (weights, graph inputs) accumulate
        into `.grad` as `Tensor.backward` would; watched activations keep theirs here."""
        leaves = list({id(t): t for t in leaves}.values())
        inputs = leaves + self.edges
        if not inputs:
            return
        if _engine_run_backward is not None:
            grads = _engine_run_backward((target,), (grad,), False, False, tuple(inputs), True,
                                         accumulate_grad=False)
        else:
            grads = torch.autograd.grad(target, inputs, grad, allow_unused=True)
        for leaf, g in zip(leaves, grads):
            if g is not None:
                leaf.grad = g if leaf.grad is None else leaf.grad + g
        self.grads = dict(zip(self.ids, grads[len(leaves):]))

    def of(self, value):
        """The gradient of `value` from the last backward, or None."""
        if id(value) in self.grads:
            return self.grads[id(value)]
        return value.grad if value.is_leaf else None


def _trained(model, h, value):
    """An output `value` of handle `h` in a training forward: with a gradient kept for
    every float output (FlexFlow runs every operator's backward, so an activation has a
    gradient even when no weight lies upstream of it; the final output's is the loss
    gradient)."""
    if not value.requires_grad and value.is_floating_point():
        value = value.detach().requires_grad_(True)
    if value.requires_grad and h is not model._final_out:
        model._grad_store.watch(value)
    return value


def bind_outputs(model, layer, outs, training):
    """Store a layer's output values (see `_trained`), in-place outputs aliased."""
    for k, (h, value) in enumerate(zip(layer.outputs, outs)):
        if layer.weights and value._base is not None and value._base is layer.weights[0].value:
            h.grad_value = value._base      # a view of the weight: it has the weight's gradient
        elif training:
            value = outs[k] = _trained(model, h, value)
        h.value = value
        h.pending = None
    if layer.inplace_input is not None:
        model._alias(layer.inplace_input, layer.outputs[0], outs[0])


def _scaled(values, scaled):
    for i, c in scaled:
        if values[i].requires_grad:
            values[i] = scale_grad(values[i], c)
    return values


class LayerStep:
    """One layer's forward; `grad = False` when backward never passes through the layer
    (the final softmax whose input the loss gradient is seeded into)."""

    __slots__ = ("layer", "forward", "scaled", "grad")

    def __init__(self, layer):
        self.layer = layer
        self.forward = functools.partial(layer.spec.forward, layer.run, **layer.attrs)
        self.scaled = [(i, c) for i, c in enumerate(layer.grad_coefficients) if c != 1.0]
        self.grad = True

    def run(self, model, training):
        layer = self.layer
        values = [h.value for h in layer.inputs]
        weights = [w.value for w in layer.weights]
        if not self.grad:
            with torch.no_grad():
                outs = self.forward(values, weights)
        else:
            outs = self.forward(_scaled(values, self.scaled) if training and self.scaled else values, weights)
        bind_outputs(model, layer, outs, training)


class GroupStep:
    """A fused group (see fusion.FusedGroup): its fused computation when the group's
    run-time conditions hold, else its layers one by one."""

    __slots__ = ("group", "steps", "saved", "model", "values_ready", "weighted")

    def __init__(self, group, model):
        self.group, self.model = group, model
        self.steps = [LayerStep(layer) for layer in group.layers]
        self.saved, self.values_ready = None, False
        self.weighted = any(layer.weights for layer in group.layers)

    def run(self, model, training):
        group = self.group
        values = [h.value for h in group.inputs]
        self.saved = None
        if not group.applies(values):
            for step in self.steps:
                step.run(model, training)
            return
        ins = _scaled(list(values), group.scaled) if training and group.scaled else values
        outs, known = group.fused(ins, training)
        # the weights as this forward read them: the optimizer may update them in place
        # before an inner tensor is read (the norms' affine rows: one row each, small)
        weights = {id(w): w.value.detach().clone() for layer in group.layers for w in layer.weights} \
            if self.weighted else {}
        self.saved, self.values_ready = (values, training, weights), False
        for h in group.interior:
            h.value, h.pending = known.get(h), self
        for h, value in zip(group.outputs, outs):
            h.value, h.pending = (_trained(model, h, value) if training else value), None

    def materialize(self, grads):
        """Give the group's inner tensors their values - and, once the step's backward
        has run, their gradients - by running its layers unfused on the values the fused
        run read."""
        if self.saved is None:
            return
        values, training, weights = self.saved
        with_grads = grads and training and self.model._backward_done
        if self.values_ready and not with_grads:
            return
        group, store = self.group, self.model._grad_store
        env = {}
        with torch.set_grad_enabled(with_grads):
            for h, v in zip(group.inputs, values):
                env[id(h)] = v.detach().requires_grad_(with_grads and v.is_floating_point())
            for step in self.steps:
                layer = step.layer
                ins = [env[id(h)] for h in layer.inputs]
                ws = [weights[id(w)].detach().requires_grad_(with_grads and w.value.requires_grad)
                      for w in layer.weights]
                outs = step.forward(_scaled(ins, step.scaled) if with_grads else ins, ws)
                for h, v in zip(layer.outputs, outs):
                    if v.requires_grad:
                        v.retain_grad()
                    env[id(h)] = v
            if with_grads:
                seeded = self.model._seeded_grads        # the final output's: the loss gradient
                pairs = [(env[id(h)], seeded[id(h)] if id(h) in seeded else store.of(h.value))
                         for h in group.outputs if h.value.requires_grad]
                pairs = [(v, g) for v, g in pairs if g is not None and v.requires_grad]
                if pairs:
                    torch.autograd.backward([v for v, _ in pairs], [g for _, g in pairs])
        for h in group.interior:
            v = env[id(h)]
            value = v.detach()
            if training:
                value.requires_grad_(v.is_floating_point())
                if with_grads and v.requires_grad:
                    value.grad = v.grad
            h.value = value
        self.values_ready = True
        if with_grads or not training:
            self.saved = None
            for h in group.interior:
                h.pending = None


def build_plan(model):
    """The model's steps, fused groups in place of their layers."""
    from .fusion import find_groups
    groups = find_groups(model._graph, model)
    first = {id(g.layers[0]): g for g in groups}
    inside = {id(layer) for g in groups for layer in g.layers}
    steps = []
    for layer in model._graph:
        if id(layer) in first:
            steps.append(GroupStep(first[id(layer)], model))
        elif id(layer) not in inside:
            steps.append(LayerStep(layer))
    return steps
