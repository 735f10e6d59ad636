"""FlexFlow's weight initializers.

Real FlexFlow stores these on the layer but re-creates weights with hard-wired
initialisers when it rebuilds operators (see LIMITS.md); the embedded runtime honours
them, which only matters before `set_weights` is called."""

import math


class Initializer:
    __slots__ = ["handle", "p_handle"]

    def __init__(self, handle, p_handle=0):
        self.handle = handle
        self.p_handle = p_handle

    def fill(self, tensor, generator):
        raise NotImplementedError


def _fans(shape):
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


class GlorotUniformInitializer(Initializer):
    __slots__ = ["glorot_handle", "_glorot_handle"]

    def __init__(self, seed):
        super().__init__(self)
        self.glorot_handle = self._glorot_handle = seed

    def fill(self, tensor, generator):
        fan_in, fan_out = _fans(tuple(tensor.shape))
        scale = math.sqrt(6.0 / (fan_in + fan_out))
        tensor.uniform_(-scale, scale, generator=generator)


class ZeroInitializer(Initializer):
    __slots__ = ["zero_handle", "_zero_handle"]

    def __init__(self):
        super().__init__(self)
        self.zero_handle = self._zero_handle = None

    def fill(self, tensor, generator):
        tensor.zero_()


class ConstantInitializer(Initializer):
    """Used internally for layer_norm's gamma (ones)."""

    __slots__ = ["value"]

    def __init__(self, value):
        super().__init__(self)
        self.value = value

    def fill(self, tensor, generator):
        tensor.fill_(self.value)


class UniformInitializer(Initializer):
    __slots__ = ["uniform_handle", "_uniform_handle"]

    def __init__(self, seed, minv, maxv):
        super().__init__(self)
        self.uniform_handle = self._uniform_handle = (seed, minv, maxv)

    def fill(self, tensor, generator):
        _, minv, maxv = self.uniform_handle
        tensor.uniform_(minv, maxv, generator=generator)


class NormInitializer(Initializer):
    __slots__ = ["norm_handle", "_norm_handle"]

    def __init__(self, seed, mean, stddev):
        super().__init__(self)
        self.norm_handle = self._norm_handle = (seed, mean, stddev)

    def fill(self, tensor, generator):
        _, mean, stddev = self.norm_handle
        tensor.normal_(mean, stddev, generator=generator)
