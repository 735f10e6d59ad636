"""FFConfig, timer, tracing and registration functions (``flexflow_c.cc``)."""

import time

from .capi import C, c_function, destroy
from .config import ConfigRecord
from .errors import AssertionAbort
from .realm import PROCESS

_state = {"registered": False}


def require_runtime(function):
    """Every FlexFlow object lives in a running Legion runtime (``Runtime::get_runtime()``)."""
    if not PROCESS.started:
        raise AssertionAbort(function, "the Legion runtime is not running (neither flexflow_python "
                                       "nor legion_canonical_python_main started it)")
    if not _state["registered"]:
        raise AssertionAbort(function, "flexflow_perform_registration() was not called")


@c_function("flexflow_perform_registration")
def perform_registration(fn):
    if not PROCESS.started:
        raise AssertionAbort(fn, "the Legion runtime is not running")
    _state["registered"] = True


@c_function("flexflow_config_create")
def config_create(fn):
    require_runtime(fn)
    return ConfigRecord.create(fn)


@c_function("flexflow_config_destroy")
def config_destroy(fn, config):
    destroy(fn, config)


@c_function("flexflow_config_parse_args")
def config_parse_args(fn, config, argv, argc):
    config.parse_args(fn, [C.string(argv[i]).decode("utf-8") for i in range(argc)])


@c_function("flexflow_config_parse_args_default")
def config_parse_args_default(fn, config):
    config.parse_args(fn, PROCESS.input_args)


_GETTERS = {
    "flexflow_config_get_batch_size": "batchSize",
    "flexflow_config_get_workers_per_node": "workersPerNode",
    "flexflow_config_get_num_nodes": "numNodes",
    "flexflow_config_get_epochs": "epochs",
    "flexflow_config_get_enable_control_replication": "enable_control_replication",
    "flexflow_config_get_data_parallelism_degree": "data_parallelism_degree",
    "flexflow_config_get_tensor_parallelism_degree": "tensor_parallelism_degree",
    "flexflow_config_get_pipeline_parallelism_degree": "pipeline_parallelism_degree",
    "flexflow_config_get_python_data_loader_type": "python_data_loader_type",
    "flexflow_config_get_offload": "cpu_offload",
}
_SETTERS = {
    "flexflow_config_set_data_parallelism_degree": "data_parallelism_degree",
    "flexflow_config_set_tensor_parallelism_degree": "tensor_parallelism_degree",
    "flexflow_config_set_pipeline_parallelism_degree": "pipeline_parallelism_degree",
}


@c_function(*_GETTERS)
def config_get(fn, config):
    return getattr(config, _GETTERS[fn])


@c_function(*_SETTERS)
def config_set(fn, config, value):
    setattr(config, _SETTERS[fn], value)


@c_function("flexflow_get_current_time")
def get_current_time(fn, config):
    """An execution fence, then Realm's clock in microseconds."""
    return time.monotonic() * 1e6


@c_function("flexflow_begin_trace", "flexflow_end_trace")
def trace(fn, config, trace_id):
    """Legion tracing: no effect on what the program computes."""
