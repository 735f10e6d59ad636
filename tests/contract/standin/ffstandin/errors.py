"""What the stand-in raises.

Everything that would end or corrupt a real FlexFlow process (a failed C++ ``assert``,
a bad handle, undefined behaviour) derives from ``FlexFlowAbort``, a ``BaseException``:
like a real abort it passes through ``except Exception`` in the program under test.
A missing C symbol is an ``AttributeError``, as cffi raises for the real library."""


class StandinError(BaseException):
    """Base of the stand-in's own errors."""


class FlexFlowAbort(StandinError):
    """Real FlexFlow would abort here (or go on with corrupt state)."""

    def __init__(self, function, message):
        super().__init__(f"{function}: {message}")
        self.function = function
        self.message = message


class AssertionAbort(FlexFlowAbort):
    """A C/C++ ``assert`` of FlexFlow or Legion fails (asserts are live in every build:
    FlexFlow's CMakeLists.txt adds -UNDEBUG)."""


class InvalidHandleAbort(FlexFlowAbort):
    """A handle that FlexFlow never returned, that was destroyed, or of another type."""


class UndefinedBehaviourAbort(FlexFlowAbort):
    """The C++ code would read or write outside its data (no check in FlexFlow)."""


class NotEmulatedError(StandinError):
    """The stand-in has no model of this C function (serving API, DLRM config...)."""

    def __init__(self, function):
        super().__init__(f"{function}: the stand-in libflexflow does not emulate this function")
        self.function = function


class MissingSymbolError(AttributeError):
    """The name is not a function of libflexflow (not declared in flexflow_c.h, or
    declared but not defined in flexflow_c.cc)."""


class LaunchError(StandinError):
    """The emulated Legion launch cannot start (e.g. ``-ll:py`` under plain python)."""
