"""Stand-in for Legion's ``legion_top`` (deps/legion/bindings/python/legion_top.py).

Kept from the real module: ``input_args`` (the same filter), how ``legion_python_main``
sets ``sys.argv`` and runs the script as ``__main__``, and the reference counting of
``legion_canonical_python_main`` / ``legion_canonical_python_cleanup``. Replaced: the
Legion runtime itself (ffstandin.realm records the arguments and the machine); Legion's
cleanup items, import_global and the REPL are left out (FlexFlow uses none of them)."""

import os
import sys
import traceback
import types

from ffstandin.errors import LaunchError
from ffstandin.realm import PROCESS

# The real input_args(True) removes these (Legion/Realm have already removed their own).
FILTERED_PREFIXES = ['-cuda:', '-numa:', '-ucx:', '-gex:', '-dm:', '-bishop:']
FILTERED_FLAGS = ['-level', '-logfile']

_top_level_counter = 0
return_code = 0


def input_args(filter_runtime_options=False):
    args = list(PROCESS.input_args)
    if filter_runtime_options:
        i = 1
        while i < len(args):
            if args[i].startswith(tuple(FILTERED_PREFIXES)) or args[i] in FILTERED_FLAGS:
                args.pop(i)
                if i < len(args) and not args[i].startswith('-'):
                    args.pop(i)
                continue
            i += 1
    return args


def legion_python_main():
    """The top-level task of ``legion_python``: run the script named after the flags."""
    global return_code
    args = input_args(True)
    start = 2 if len(args) > 1 and args[1] == '--nocr' else 1
    if start >= len(args) or args[start].startswith('-'):
        raise LaunchError("the stand-in flexflow_python runs a script file only (no REPL, -c or -m)")
    sys.argv = list(args[start:])
    run_path(args[start], '__main__')
    return return_code


def run_path(filename, run_name):
    """As legion_top.run_path: a fresh module, the script's folder appended to sys.path,
    SystemExit turned into the process return code."""
    global return_code
    module = types.ModuleType(run_name)
    module.__file__ = filename
    module.__loader__ = None
    module.__package__ = run_name.rpartition('.')[0]
    old_module = sys.modules.get(run_name)
    sys.modules[run_name] = module
    sys.path.append(os.path.dirname(filename))
    try:
        with open(filename) as f:
            code = compile(f.read(), filename, 'exec')
        exec(code, module.__dict__, module.__dict__)
    except SyntaxError as ex:
        traceback.print_exception(SyntaxError, ex, sys.exc_info()[2], 0)
        return_code = 1
    except SystemExit as ex:
        if ex.code is not None:
            return_code = ex.code if isinstance(ex.code, int) else 1
    finally:
        if old_module is not None:
            sys.modules[run_name] = old_module


def legion_canonical_python_main(sys_argv=None):
    """Start Legion inside this plain Python process (only the first call does)."""
    global _top_level_counter
    _top_level_counter += 1
    if _top_level_counter > 1:
        return
    argv = list(sys.argv if sys_argv is None else sys_argv)
    if '-ll:py' in argv[1:]:
        raise LaunchError("-ll:py is not supported when using canonical python (canonical_python.cc aborts)")
    PROCESS.start(argv, "canonical")


def legion_canonical_python_cleanup():
    global _top_level_counter
    _top_level_counter -= 1
