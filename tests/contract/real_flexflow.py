"""Run a program on FlexFlow's own Python package over the stand-in libflexflow, in a
fresh process launched the way FlexFlow programs are launched.

    run = run_with_real_flexflow("examples/native/digits_mlp.py", ["-ll:gpu", "1", "-b", "64"])
    run.check()                      # exit status 0 and no stand-in error
    run.model["label"]               # what the stand-in saw (report.py)

``launch_mode``: ``"flexflow_python"`` (FlexFlow's interpreter: Legion flags are taken off
``sys.argv`` and configure the machine) or ``"python"`` (plain Python: the program must
pass ``num_gpus`` etc. to ``init_flexflow_runtime``, which replaces ``sys.argv``)."""

import contextlib
import dataclasses
import fcntl
import inspect
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from flexflow_source import ensure_flexflow_source

REPO = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).resolve().parent / "standin"
LAUNCH_MODES = ("flexflow_python", "python")


@dataclass
class ProgramRun:
    command: list
    returncode: int
    stdout: str
    stderr: str
    report: dict                 # the stand-in's report; {} if the process died before writing it

    @property
    def errors(self):
        """Stand-in errors and rejected calls the program saw (caught or not)."""
        return self.report.get("errors", [])

    @property
    def models(self):
        return self.report.get("models", [])

    @property
    def model(self):
        """The last FFModel the program created."""
        if not self.models:
            raise AssertionError(f"the program created no FFModel\n{self.describe()}")
        return self.models[-1]

    def weights_not_set_in_compile(self, model=None):
        """``layer[i]`` of every weight that FlexFlow's own ``FFModel.compile()`` did not set."""
        model = self.model if model is None else model
        return [f"{w['layer']}[{w['index']}]" for w in model["weights"] if not w["set_in_compile"]]

    def check(self):
        """Raise AssertionError unless the program exited 0 and FlexFlow accepted every call."""
        if self.returncode != 0 or self.errors:
            raise AssertionError(f"program failed on real FlexFlow\n{self.describe()}")
        return self

    def describe(self):
        errors = "\n".join(f"  {e['function']}: {e['error']}: {e['message']}" for e in self.errors)
        return (f"command: {' '.join(self.command)}\nexit status: {self.returncode}\n"
                f"stand-in errors:\n{errors or '  none'}\n--- stdout (tail) ---\n{self.stdout[-3000:]}\n"
                f"--- stderr (tail) ---\n{self.stderr[-6000:]}")


def run_with_real_flexflow(target, argv=(), launch_mode="flexflow_python", *, source=None, env=None, timeout=900,
                           cwd=REPO):
    """Run ``target`` (a script path, or a module-level function called without
    arguments) with ``argv`` as its command line, FLEXFLOW_TORCH_BACKEND=flexflow and
    FlexFlow's package from the downloaded source on the path."""
    if launch_mode not in LAUNCH_MODES:
        raise ValueError(f"launch_mode must be one of {LAUNCH_MODES}, got {launch_mode!r}")
    source = ensure_flexflow_source() if source is None else source
    with tempfile.TemporaryDirectory(prefix="ff-contract-") as tmp:
        script = Path(target) if not callable(target) else _driver(target, Path(tmp))
        report_path = Path(tmp) / "report.json"
        launcher = [str(STANDIN / "flexflow_python.py")] if launch_mode == "flexflow_python" else []
        command = [sys.executable] + launcher + [str(script)] + [str(a) for a in argv]
        paths = [STANDIN, source.python_dir, REPO] + _function_paths(target)
        full_env = dict(os.environ, **(env or {}))
        full_env.update(PYTHONPATH=os.pathsep.join(str(p) for p in paths), FLEXFLOW_TORCH_BACKEND="flexflow",
                        FLEXFLOW_STANDIN_REPORT=str(report_path), OMP_NUM_THREADS="1",
                        TRANSFORMERS_VERBOSITY="error")
        done = subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return ProgramRun(command, done.returncode, done.stdout, done.stderr, report)


def run_once(folder, key, target, argv=(), launch_mode="flexflow_python", **kwargs):
    """``run_with_real_flexflow`` once per ``folder`` and ``key``: processes sharing the
    folder (pytest-xdist workers) get the recorded run of the first one."""
    record = Path(folder) / f"{key}.run.json"
    with exclusive(record):
        if record.exists():
            return ProgramRun(**json.loads(record.read_text()))
        run = run_with_real_flexflow(target, argv, launch_mode, **kwargs)
        record.write_text(json.dumps(dataclasses.asdict(run)))
        return run


@contextlib.contextmanager
def exclusive(path):
    """Hold an exclusive lock on ``<path>.lock``."""
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _driver(function, folder):
    """A script calling ``function``: legion_python runs script files."""
    module, name = function.__module__, function.__qualname__
    if "<" in name or module == "__main__":
        raise ValueError(f"{function!r} must be a module-level function importable as {module}.{name}")
    path = folder / "driver.py"
    path.write_text(textwrap.dedent(f"""\
        import importlib
        importlib.import_module({module!r}).{name}()
        """))
    return path


def _function_paths(target):
    """The folder from which the target function's module imports under its name."""
    if not callable(target):
        return []
    file = Path(inspect.getfile(target)).resolve()
    return [file.parents[len(target.__module__.split(".")) - 1]]
