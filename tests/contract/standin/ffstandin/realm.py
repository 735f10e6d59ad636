"""The Legion/Realm side of the process: how it was launched, its input arguments and
the machine Realm reports.

Launch modes (Legion 24.06.0, FlexFlow 24.9.1's ``deps/legion``):

* ``legion_python`` (what ``flexflow_python`` runs, with ``-ll:py 1`` appended):
  ``bindings/python/main.cc`` calls ``Runtime::initialize(&argc, &argv, true /*filter*/)``,
  so Legion and Realm remove the flags they consume before the input arguments are
  recorded; ``legion_top.legion_python_main`` then filters a few more prefixes and sets
  ``sys.argv = args[1:]`` (the script and its own flags).
* ``canonical`` (plain ``python``): ``legion_top.legion_canonical_python_main(sys.argv)``
  starts Legion with ``Runtime::start(argc, argv, true /*background*/)``, whose ``filter``
  defaults to false: every flag stays in the input arguments. ``-ll:py`` aborts
  (``canonical_python.cc``).

Model of Realm: the flags with the prefixes below are Realm's or Legion's; each takes
the following argument when it does not start with ``-``. The machine has one node,
``-ll:gpu`` GPUs (Realm's default 0) and ``-ll:cpu`` CPU processors (default 1)."""

from .errors import LaunchError

RUNTIME_PREFIXES = ("-ll:", "-lg:", "-hl:", "-realm:")


class LegionProcess:
    def __init__(self):
        self.mode = None            # "legion_python" or "canonical" once started
        self.command_line = []      # argv handed to Legion
        self.input_args = []        # Runtime::get_input_args()
        self.gpus = 0
        self.cpus = 1
        self.nodes = 1

    @property
    def started(self):
        return self.mode is not None

    def start(self, argv, mode):
        if self.started:
            raise LaunchError(f"Legion is already running ({self.mode})")
        if mode not in ("legion_python", "canonical"):
            raise LaunchError(f"unknown launch mode {mode!r}")
        runtime_flags, kept = split_runtime_flags(argv)
        for flag, value in runtime_flags:
            if flag in ("-ll:gpu", "-ll:cpu"):
                try:
                    count = int(value)
                except (TypeError, ValueError):
                    raise LaunchError(f"Realm: {flag} needs an integer, got {value!r}") from None
                if flag == "-ll:gpu":
                    self.gpus = count
                else:
                    self.cpus = count
        self.mode = mode
        self.command_line = list(argv)
        self.input_args = kept if mode == "legion_python" else list(argv)


def split_runtime_flags(argv):
    """([(flag, value or None)], remaining argv) for Realm/Legion flags in argv[1:]."""
    flags, kept, i = [], [argv[0]] if argv else [], 1
    while i < len(argv):
        arg = argv[i]
        if arg.startswith(RUNTIME_PREFIXES):
            value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else None
            flags.append((arg, value))
            i += 2 if value is not None else 1
        else:
            kept.append(arg)
            i += 1
    return flags, kept


PROCESS = LegionProcess()
