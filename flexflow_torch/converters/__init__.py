"""Built-in converters, one module per op family. Importing registers them."""

from . import (elementwise, activation, linear, embedding, norm, shape, reduction,  # noqa: F401
               attention, conv_pool, logical, group_norm, routing)
