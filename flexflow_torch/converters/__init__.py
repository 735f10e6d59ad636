"""Built-in converters, one module per op family. Importing registers them (as the
built-ins: a user's converter for the same overload wins, see registry.py)."""

from .. import registry

with registry.builtin_registrations():
    from . import (elementwise, activation, linear, embedding, norm, shape, reduction,  # noqa: F401
                   attention, conv_pool, logical, group_norm, routing)
