"""Stand-in for the ``peft`` package, which FlexFlow's ``flexflow_cffi.py`` imports at
module level (``from peft import LoraConfig``) for its LoRA serving configuration only.

The real package imports most of transformers (about 4 s per process); the training API
never touches it. The name exists; building a LoraConfig raises NotEmulatedError."""

from ffstandin.errors import NotEmulatedError


class LoraConfig:
    def __init__(self, *args, **kwargs):
        raise NotEmulatedError("peft.LoraConfig (FlexFlow's LoRA serving)")
