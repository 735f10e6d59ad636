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


def _grads(params):
    """FlexFlow updates every parameter; one that no gradient reached has a zeroed
    gradient (weight decay, momentum and Adam's moments still act on it)."""
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


class SGDOptimizer(_Optimizer):
    """g = grad + wd*w; v = m*v + g (momentum); w -= lr * (g + m*v if nesterov else v).
    One multi-tensor (foreach) operation per rule for all parameters."""

    __slots__ = ["handle", "_handle", "lr", "momentum", "nesterov", "weight_decay", "_velocity"]

    def __init__(self, ffmodel, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        self._check_model(ffmodel)
        self.handle = self._handle = self
        self.lr, self.momentum = float(lr), float(momentum)
        self.nesterov, self.weight_decay = bool(nesterov), float(weight_decay)
        self._velocity = {}

    @torch.no_grad()
    def step(self, params):
        if not self.momentum and not self.weight_decay:      # a zero gradient changes nothing
            params = [p for p in params if p.grad is not None]
            if params:
                torch._foreach_add_(params, [p.grad for p in params], alpha=-self.lr)
            return
        if not params:
            return
        g = _grads(params)
        if self.weight_decay:
            g = torch._foreach_add(g, params, alpha=self.weight_decay)
        if self.momentum > 0:
            fresh = [id(p) not in self._velocity for p in params]
            for p, grad, new in zip(params, g, fresh):
                if new:
                    self._velocity[id(p)] = grad.clone()
            v = [self._velocity[id(p)] for p in params]
            old = [x for x, new in zip(v, fresh) if not new]
            if old:
                torch._foreach_mul_(old, self.momentum)
                torch._foreach_add_(old, [grad for grad, new in zip(g, fresh) if not new])
            g = torch._foreach_add(g, v, alpha=self.momentum) if self.nesterov else v
        torch._foreach_add_(params, g, alpha=-self.lr)

    def _tensor_state(self):
        return {"velocity": self._velocity}

    def _load_state(self, tensors, scalars):
        self._velocity = dict(tensors.get("velocity", {}))


CHUNK = 1 << 22        # elements updated at once (16 MB of float32 scratch, not a table's 512 MB)


def _chunks(*tensors):
    """Equal flat slices of same-shaped tensors (whole tensors when not contiguous): an
    element-wise update over them computes the same bits as over the whole tensors."""
    if not all(t.is_contiguous() for t in tensors) or tensors[0].numel() <= CHUNK:
        yield tensors
        return
    flat = [t.view(-1) for t in tensors]
    for i in range(0, flat[0].numel(), CHUNK):
        yield tuple(f[i:i + CHUNK] for f in flat)


class AdamOptimizer(_Optimizer):
    """FlexFlow's Adam: L2 weight decay added to the gradient, alpha_t bias correction
    and eps added to sqrt(v) before correction. Multi-tensor (foreach) operations for
    the moments, one parameter at a time for the update."""

    __slots__ = ["handle", "_handle", "lr", "beta1", "beta2", "weight_decay", "epsilon",
                 "_state", "_beta1_t", "_beta2_t", "_scratch"]

    def __init__(self, ffmodel, alpha=0.001, beta1=0.9, beta2=0.999, weight_decay=0.0,
                 epsilon=1e-8):
        self._check_model(ffmodel)
        self.handle = self._handle = self
        self.lr, self.beta1, self.beta2 = float(alpha), float(beta1), float(beta2)
        self.weight_decay, self.epsilon = float(weight_decay), float(epsilon)
        self._state, self._beta1_t, self._beta2_t = {}, 1.0, 1.0
        self._scratch = {}

    @torch.no_grad()
    def step(self, params):
        self._beta1_t *= self.beta1
        self._beta2_t *= self.beta2
        alpha_t = self.lr * math.sqrt(1 - self._beta2_t) / (1 - self._beta1_t)
        if not params:
            return
        g = _grads(params)
        if self.weight_decay:
            g = torch._foreach_add(g, params, alpha=self.weight_decay)
        for p in params:            # moments made once (not setdefault: its default is built every step)
            if id(p) not in self._state:
                self._state[id(p)] = (torch.zeros_like(p), torch.zeros_like(p))
        m, v = [self._state[id(p)][0] for p in params], [self._state[id(p)][1] for p in params]
        torch._foreach_mul_(m, self.beta1)
        torch._foreach_add_(m, g, alpha=1 - self.beta1)
        torch._foreach_mul_(v, self.beta2)
        torch._foreach_addcmul_(v, g, g, value=1 - self.beta2)
        for p, m_p, v_p in zip(params, m, v):
            for p_c, m_c, v_c in _chunks(p, m_p, v_p):
                denom = torch.sqrt(v_c, out=self._buffer(v_c)).add_(self.epsilon)
                p_c.addcdiv_(m_c, denom, value=-alpha_t)

    def _buffer(self, like):
        """Room for sqrt(v) + eps of one chunk, reused every step: a fresh tensor the size
        of the parameters costs a page fault per page each step (the allocator hands large
        blocks back to the system), more than the update itself."""
        key = (like.dtype, like.device)
        buf = self._scratch.get(key)
        if buf is None or buf.numel() < like.numel():
            buf = self._scratch[key] = torch.empty(like.numel(), dtype=like.dtype, device=like.device)
        return buf[:like.numel()].view(like.shape)

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
