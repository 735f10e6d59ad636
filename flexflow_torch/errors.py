"""Typed exceptions. Every user-facing problem raises one of these, naming what is
wrong and what to do; each also derives from the built-in exception a Python user
would catch for that kind of mistake."""


class FlexFlowTorchError(Exception):
    """Base class of every error raised by flexflow-torch."""


class RuntimeNotInitializedError(FlexFlowTorchError, RuntimeError):
    """A FlexFlow object was created before `init_flexflow_runtime()`."""


class BackendUnavailableError(FlexFlowTorchError, ImportError):
    """The requested backend (real `flexflow`) cannot be imported."""


class ShapeError(FlexFlowTorchError, ValueError):
    """Tensor shapes that do not fit the operator or the data."""


class DTypeError(FlexFlowTorchError, TypeError):
    """A tensor or array of the wrong data type."""


class LabelRangeError(FlexFlowTorchError, ValueError):
    """Class labels outside [0, num_classes): FlexFlow has no ignore index."""


class UnsupportedByFlexFlowError(FlexFlowTorchError, NotImplementedError):
    """Real FlexFlow rejects or aborts on this; the embedded runtime refuses it too
    rather than compute something FlexFlow would not (see runtime/LIMITS.md)."""


class ModelStateError(FlexFlowTorchError, RuntimeError):
    """An API call made in the wrong order (e.g. `init_layers` before `compile`)."""


class DataLoaderError(FlexFlowTorchError, ValueError):
    """A data loader given an unusable array, or read past its end."""


class ConversionError(FlexFlowTorchError, ValueError):
    """A PyTorch model or graph that cannot be converted as asked."""


class UnsupportedOperatorsError(ConversionError):
    """One report of every ATen operator that has no converter."""

    def __init__(self, report):
        self.report = report
        super().__init__(str(report))


class GraphFileError(FlexFlowTorchError, ValueError):
    """A saved graph file that cannot be read back."""


class InvalidModelError(ConversionError, TypeError):
    """The object to convert is not a torch.nn.Module (or fx.GraphModule)."""


class ConfigError(FlexFlowTorchError, ValueError):
    """A command-line flag or setting with an unusable value."""


class ArgumentError(FlexFlowTorchError, ValueError):
    """An operator argument outside its valid range (a zero divisor, a dropout rate >= 1)."""


class CaptureError(ConversionError):
    """torch.export or a graph pass could not capture the model: says what failed, in
    which module and source line, and what to do."""


class NonFiniteError(FlexFlowTorchError, FloatingPointError):
    """NaN or infinity in a training batch or in the model's output: training on it would
    turn every weight into NaN (FLEXFLOW_TORCH_CHECK_FINITE=0 turns the check off)."""


class RegistryError(FlexFlowTorchError, TypeError, ValueError):
    """A converter registration that cannot be made (not an operator overload, or an
    overload another converter already holds)."""


class CheckpointError(FlexFlowTorchError, ValueError):
    """A checkpoint that does not fit the model, the data or the run resuming from it."""


class WeightsChangedError(FlexFlowTorchError, RuntimeError):
    """A PyTorch parameter was written between conversion and the compile() or save that
    reads it (the converted program views the model's weights)."""
