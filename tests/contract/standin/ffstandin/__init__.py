"""A stand-in for FlexFlow's C library (libflexflow) and Legion's runtime, under
FlexFlow's own Python package. See ../README.md for what is replaced and how."""

from .errors import (AssertionAbort, FlexFlowAbort, InvalidHandleAbort, LaunchError, MissingSymbolError,
                     NotEmulatedError, StandinError, UndefinedBehaviourAbort)
from .report import REPORT

__all__ = ["AssertionAbort", "FlexFlowAbort", "InvalidHandleAbort", "LaunchError", "MissingSymbolError",
           "NotEmulatedError", "REPORT", "StandinError", "UndefinedBehaviourAbort"]
