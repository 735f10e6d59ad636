"""Start FlexFlow the same way under `python script.py ...` and `flexflow_python
script.py ...`.

FlexFlow's `init_flexflow_runtime` (python/flexflow/core/__init__.py:98-153) behaves
differently in its two launch modes:
- plain `python`: it requires the keys `num_gpus`, `memory_per_gpu` and
  `zero_copy_memory_per_node`, then replaces `sys.argv` with the flags its keys
  translate to, so a script's `-b 8 -e 1` would be lost;
- `flexflow_python` (Legion's interpreter): its arguments are ignored with a warning,
  and Legion has already taken its own flags (`-ll:gpu 4`) out of `sys.argv`.

`init_runtime()` reads the command line once, passes every FlexFlow flag on it (and the
GPU/memory flags, with defaults) as keys in plain-python mode, and calls
`init_flexflow_runtime` without arguments under `flexflow_python`. Parse the script's
own options before calling it."""

from __future__ import annotations

import sys

from .runtime.config import _BOOL_FLAGS, _KEY_TO_FLAG, _VALUE_FLAGS

#: plain-python defaults (FlexFlow's mT5 example: -ll:gpu 1 -ll:fsize 14000 -ll:zsize 4096)
DEFAULTS = {"num_gpus": 1, "memory_per_gpu": 14000, "zero_copy_memory_per_node": 4096}
_SHORT = {"-b": "batch_size", "-e": "epochs", "--lr": "learning_rate", "--wd": "weight_decay",
          "-p": "print_frequency", "-d": "dataset"}
_FLAG_TO_KEY = {**{flag: key for key, flag in _KEY_TO_FLAG.items()}, **_SHORT}


def runtime_configs(argv=None) -> dict:
    """The init_flexflow_runtime keys for a command line (default: sys.argv[1:])."""
    argv = list(sys.argv[1:] if argv is None else argv)
    configs = dict(DEFAULTS)
    i = 0
    while i < len(argv):
        flag = argv[i]
        key = _FLAG_TO_KEY.get(flag)
        if flag in _BOOL_FLAGS and key is not None:
            configs[key] = True
        elif key is not None and (flag in _VALUE_FLAGS or flag.startswith("-ll:")) and i + 1 < len(argv):
            value = argv[i + 1]
            kind = _VALUE_FLAGS.get(flag, ("", int))[1]
            configs[key] = kind(value) if kind in (int, float) else value
            i += 1
        i += 1
    return configs


def is_legion_python() -> bool:
    """Whether this process runs under flexflow_python (Legion's Python interpreter)."""
    try:
        from legion_cffi import is_legion_python as legion
    except ImportError:
        return False
    return bool(legion)


def init_runtime(argv=None) -> dict:
    """Start FlexFlow (real or embedded, as `flexflow_torch.core` chose) for this script's
    command line; returns the keys passed (empty under flexflow_python). The embedded
    runtime also chooses its CPU threads here and prints how many (threads.py)."""
    from . import core
    if core.BACKEND == "embedded":
        from .threads import configure_threads
        configure_threads()
    if is_legion_python():
        core.init_flexflow_runtime()
        return {}
    configs = runtime_configs(argv)
    core.init_flexflow_runtime(configs)
    return configs
