"""Stand-in for ``flexflow_python`` (FlexFlow's wrapper, python/flexflow/flexflow_python:
``legion_python "$@" -ll:py 1``) and Legion's ``legion_python`` interpreter
(deps/legion/bindings/python/main.cc, which filters Legion/Realm flags before recording
the input arguments, then runs legion_top.legion_python_main).

    python tests/contract/standin/flexflow_python.py script.py [flags...]

FlexFlow's package must be importable (../real_flexflow.py sets PYTHONPATH)."""

import os
import sys

import legion_top
from ffstandin.realm import PROCESS

if __name__ == "__main__":
    PROCESS.start([os.path.join(os.path.dirname(sys.executable), "legion_python")] + sys.argv[1:] + ["-ll:py", "1"],
                  "legion_python")
    sys.exit(legion_top.legion_python_main())
