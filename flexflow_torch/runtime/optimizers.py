"""SGD and Adam with FlexFlow's update rules (fact sheet §8)."""

import math

import torch

from ..errors import ModelStateError


class _Optimizer:
    def _check_model(self, ffmodel):
        from .model import FFModel
        if not isinstance(ffmodel, FFModel):
            raise TypeError(f"{type(self).__name__} needs the FFModel it optimises, "
                            f"got {type(ffmodel).__name__}")

    def set_learning_rate(self, learning_rate):
        self.lr = float(learning_rate)

    # State for checkpoints: {name: {id(param): tensor}} plus the scalar step state.
    # FlexFlow keeps the same in C++ (include/flexflow/optimizer.h: SGDOptimizer::v_values,
    # AdamOptimizer::m_values, v_values, alpha_t, beta1_t, beta2_t) with no API to read it.
    def _tensor_state(self):
        return {}

    def _scalar_state(self):
        return {}

    def _load_state(self, tensors, scalars):
        """`tensors`: {name: {id(param): tensor}} as `_tensor_state` gives them."""


def _grad(p):
    """FlexFlow updates every parameter; one that no gradient reached has a zeroed
    gradient (weight decay, momentum and Adam's moments still act on it)."""
    return p.grad if p.grad is not None else torch.zeros_like(p)


class SGDOptimizer(_Optimizer):
    """g = grad + wd*w; v = m*v + g (momentum); w -= lr * (g + m*v if nesterov else v)."""

    __slots__ = ["handle", "_handle", "lr", "momentum", "nesterov", "weight_decay", "_velocity"]

    def __init__(self, ffmodel, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        self._check_model(ffmodel)
        self.handle = self._handle = self
        self.lr, self.momentum = float(lr), float(momentum)
        self.nesterov, self.weight_decay = bool(nesterov), float(weight_decay)
        self._velocity = {}

    @torch.no_grad()
    def step(self, params):
        for p in params:
            grad = _grad(p)
            g = grad.add(p, alpha=self.weight_decay) if self.weight_decay else grad
            if self.momentum > 0:
                v = self._velocity.get(id(p))
                v = g.clone() if v is None else v.mul_(self.momentum).add_(g)
                self._velocity[id(p)] = v
                g = g.add(v, alpha=self.momentum) if self.nesterov else v
            p.sub_(g, alpha=self.lr)

    def _tensor_state(self):
        return {"velocity": self._velocity}

    def _load_state(self, tensors, scalars):
        self._velocity = dict(tensors.get("velocity", {}))


class AdamOptimizer(_Optimizer):
    """FlexFlow's Adam: L2 weight decay added to the gradient, alpha_t bias correction
    and eps added to sqrt(v) before correction."""

    __slots__ = ["handle", "_handle", "lr", "beta1", "beta2", "weight_decay", "epsilon",
                 "_state", "_beta1_t", "_beta2_t"]

    def __init__(self, ffmodel, alpha=0.001, beta1=0.9, beta2=0.999, weight_decay=0.0,
                 epsilon=1e-8):
        self._check_model(ffmodel)
        self.handle = self._handle = self
        self.lr, self.beta1, self.beta2 = float(alpha), float(beta1), float(beta2)
        self.weight_decay, self.epsilon = float(weight_decay), float(epsilon)
        self._state, self._beta1_t, self._beta2_t = {}, 1.0, 1.0

    @torch.no_grad()
    def step(self, params):
        self._beta1_t *= self.beta1
        self._beta2_t *= self.beta2
        alpha_t = self.lr * math.sqrt(1 - self._beta2_t) / (1 - self._beta1_t)
        for p in params:
            grad = _grad(p)
            g = grad.add(p, alpha=self.weight_decay) if self.weight_decay else grad
            m, v = self._state.setdefault(id(p), (torch.zeros_like(p), torch.zeros_like(p)))
            m.mul_(self.beta1).add_(g, alpha=1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            p.addcdiv_(m, v.sqrt().add_(self.epsilon), value=-alpha_t)

    def _tensor_state(self):
        return {"m": {k: m for k, (m, _) in self._state.items()},
                "v": {k: v for k, (_, v) in self._state.items()}}

    def _scalar_state(self):
        return {"beta1_t": self._beta1_t, "beta2_t": self._beta2_t}

    def _load_state(self, tensors, scalars):
        m, v = tensors.get("m", {}), tensors.get("v", {})
        self._state = {k: (m[k], v[k]) for k in m}
        self._beta1_t, self._beta2_t = float(scalars["beta1_t"]), float(scalars["beta2_t"])


def check_optimizer(optimizer):
    if optimizer is not None and not isinstance(optimizer, (SGDOptimizer, AdamOptimizer)):
        raise ModelStateError(f"unknown optimizer {type(optimizer).__name__}: FlexFlow "
                              "accepts SGDOptimizer, AdamOptimizer or None")
