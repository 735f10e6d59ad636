"""`FFConfig` and `init_flexflow_runtime`, reading the command line as FlexFlow does.

FlexFlow's C++ parser walks the whole command line, takes the flags it knows and
skips everything else, so a script's own options (`--model DIR`) and Legion/Realm
options (`-ll:gpu 4`, `-lg:prof 1`) may be mixed freely with FlexFlow's.
"""

import os
import sys
import time
import warnings

import torch

from ..errors import ConfigError, RuntimeNotInitializedError

_state = {"initialized": False}

# flag -> (field, type); FlexFlow's FFConfig::parse_args names and defaults.
_VALUE_FLAGS = {
    "-e": ("epochs", int), "--epochs": ("epochs", int),
    "-b": ("batch_size", int), "--batch-size": ("batch_size", int),
    "--lr": ("learning_rate", float), "--learning-rate": ("learning_rate", float),
    "--wd": ("weight_decay", float), "--weight-decay": ("weight_decay", float),
    "-p": ("print_frequency", int), "--print-freq": ("print_frequency", int),
    "-d": ("dataset_path", str), "--dataset": ("dataset_path", str),
    "--budget": ("search_budget", int), "--search-budget": ("search_budget", int),
    "--alpha": ("search_alpha", float), "--search-alpha": ("search_alpha", float),
    "--simulator-workspace-size": ("simulator_workspace_size", int),
    "--import": ("import_strategy_file", str), "--import-strategy": ("import_strategy_file", str),
    "--export": ("export_strategy_file", str), "--export-strategy": ("export_strategy_file", str),
    "-data-parallelism-degree": ("data_parallelism_degree", int),
    "-tensor-parallelism-degree": ("tensor_parallelism_degree", int),
    "-pipeline-parallelism-degree": ("pipeline_parallelism_degree", int),
    "-offload-reserve-space-size": ("offload_reserve_space_size", int),
    "-peft-activation-reserve-space-size": ("peft_activation_reserve_space_size", int),
    "-peft-weight-reserve-space-size": ("peft_weight_reserve_space_size", int),
    "--taskgraph": ("export_strategy_task_graph_file", str),
    "--compgraph": ("export_strategy_computation_graph_file", str),
    "--machine-model-version": ("machine_model_version", int),
    "--machine-model-file": ("machine_model_file", str),
    "--simulator-segment-size": ("simulator_segment_size", int),
    "--simulator-max-num-segments": ("simulator_max_num_segments", int),
    "--search-num-nodes": ("search_num_nodes", int),
    "--search-num-workers": ("search_num_workers", int),
    "--base-optimize-threshold": ("base_optimize_threshold", int),
    "--substitution-json": ("substitution_json_path", str),
    "--python-data-loader-type": ("python_data_loader_type", int),
    "--nodes": ("num_nodes", int),
    "-ll:gpu": ("workers_per_node", int), "-ll:cpu": ("cpus_per_node", int),
    "-ll:fsize": ("device_mem", int), "-ll:msize": ("device_mem", int),
    "-ll:zsize": ("zero_copy_mem", int), "-ll:py": ("python_processors", int),
    "-ll:util": ("utility_processors", int),
}
_BOOL_FLAGS = {
    "--only-data-parallel": "only_data_parallel",
    "--enable-parameter-parallel": "enable_parameter_parallel",
    # FlexFlow's parser sets enable_parameter_parallel for this flag too (as read).
    "--enable-attribute-parallel": "enable_parameter_parallel",
    "--profiling": "profiling", "--benchmarking": "benchmarking",
    "--inference-debugging": "inference_debugging",
    "--allow-tensor-op-math-conversion": "allow_tensor_op_math_conversion",
    "--fusion": "perform_fusion", "--overlap": "search_overlap_backward_update",
    "--include-costs-dot-graph": "include_costs_dot_graph",
    "--enable-propagation": "enable_propagation",
    "--enable-inplace-optimizations": "enable_inplace_optimizations",
    "--memory-search": "perform_memory_search",
    "-offload": "cpu_offload", "--4bit-quantization": "quantization_4bit",
    "--8bit-quantization": "quantization_8bit", "-enable-peft": "enable_peft",
}
_DEFAULTS = {
    "epochs": 1, "batch_size": 64, "learning_rate": 0.01, "weight_decay": 0.0001,
    "print_frequency": 0, "dataset_path": "", "search_budget": -1, "search_alpha": 1.2,
    "simulator_workspace_size": 2 << 30, "only_data_parallel": True,
    "enable_parameter_parallel": False, "data_parallelism_degree": 1,
    "tensor_parallelism_degree": 1, "pipeline_parallelism_degree": 1,
    "python_data_loader_type": 2, "cpu_offload": False, "num_nodes": 1,
    "workers_per_node": 1, "cpus_per_node": 1, "enable_control_replication": True,
}
# Legion/Realm option prefixes: consumed by Legion, each followed by one value.
_LEGION_PREFIXES = ("-ll:", "-lg:", "-hl:", "-realm:", "-cuda:", "-numa:", "-dm:", "-bishop:")
_LEGION_VALUE_FLAGS = ("-level", "-logfile")

# init_flexflow_runtime key -> flag (FlexFlow's ff_arg_to_sysarg).
_KEY_TO_FLAG = {
    "num_gpus": "-ll:gpu", "memory_per_gpu": "-ll:fsize",
    "zero_copy_memory_per_node": "-ll:zsize", "num_cpus": "-ll:cpu",
    "legion_utility_processors": "-ll:util", "profiling": "--profiling",
    "benchmarking": "--benchmarking", "inference_debugging": "--inference-debugging",
    "fusion": "--fusion", "disable_control_replication": "--disable-control-replication",
    "epochs": "--epochs", "batch_size": "--batch-size", "learning_rate": "--learning-rate",
    "weight_decay": "--weight-decay", "print_frequency": "--print-freq",
    "dataset": "--dataset", "budget": "--budget", "search_budget": "--search-budget",
    "alpha": "--alpha", "search_alpha": "--search-alpha",
    "simulator_workspace_size": "--simulator-workspace-size",
    "import": "--import", "import_strategy": "--import-strategy", "export": "--export",
    "export_strategy": "--export-strategy", "only_data_parallel": "--only-data-parallel",
    "enable_parameter_parallel": "--enable-parameter-parallel",
    "enable_attribute_parallel": "--enable-attribute-parallel",
    "allow_tensor_op_math_conversion": "--allow-tensor-op-math-conversion",
    "search_overlap_backward_update": "--overlap",
    "export_strategy_task_graph_file": "--taskgraph",
    "include_costs_dot_graph": "--include-costs-dot-graph",
    "export_strategy_computation_graph_file": "--compgraph",
    "machine_model_version": "--machine-model-version",
    "machine_model_file": "--machine-model-file",
    "simulator_segment_size": "--simulator-segment-size",
    "simulator_max_num_segments": "--simulator-max-num-segments",
    "enable_propagation": "--enable-propagation",
    "enable_inplace_optimizations": "--enable-inplace-optimization",
    "search_num_nodes": "--search-num-nodes", "search_num_workers": "--search-num-workers",
    "base_optimize_threshold": "--base-optimize-threshold",
    "python_data_loader_type": "--python-data-loader-type",
    "perform_memory_search": "--memory-search", "substitution_json_path": "--substitution-json",
    "data_parallelism_degree": "-data-parallelism-degree",
    "tensor_parallelism_degree": "-tensor-parallelism-degree",
    "pipeline_parallelism_degree": "-pipeline-parallelism-degree",
    "offload": "-offload", "offload_reserve_space_size": "-offload-reserve-space-size",
    "use_4bit_quantization": "--4bit-quantization", "use_8bit_quantization": "--8bit-quantization",
    "enable_peft": "-enable-peft",
    "peft_activation_reserve_space_size": "-peft-activation-reserve-space-size",
    "peft_weight_reserve_space_size": "-peft-weight-reserve-space-size",
}


REQUIRED_KEYS = ("num_gpus", "memory_per_gpu", "zero_copy_memory_per_node")


def init_flexflow_runtime(configs_dict=None, **kwargs):
    """Start the (embedded) runtime as FlexFlow does under plain `python`
    (python/flexflow/core/__init__.py:98-153): the keys `num_gpus`, `memory_per_gpu`
    and `zero_copy_memory_per_node` are required, and `sys.argv` is replaced by the
    script name and the flags the keys translate to (FlexFlow's ff_arg_to_sysarg),
    which every later FFConfig() reads. A second call warns and does nothing.
    `flexflow_torch.init_runtime()` passes the keys from the command line."""
    if _state["initialized"]:
        warnings.warn("Attempting to initialize FlexFlow more than once")
        return
    if configs_dict is not None and kwargs:
        raise ValueError("Cannot pass both configs_dict and individual args")
    configs = dict(configs_dict if configs_dict is not None else kwargs)
    if any(key not in configs for key in REQUIRED_KEYS):
        raise ValueError("Missing one of the following required configs: num_gpus, memory_per_gpu, "
                         "zero_copy_memory_per_node (FlexFlow requires them under plain python; "
                         "flexflow_torch.init_runtime() passes them from the command line)")
    argv = [sys.argv[0] if sys.argv else "python"]
    for key, value in configs.items():
        flag = _KEY_TO_FLAG.get(key)
        if flag is None:
            continue                      # FlexFlow silently drops unknown keys
        if isinstance(value, bool):
            if value:
                argv.append(flag)
        else:
            argv += [flag, str(value)]
    sys.argv = argv
    _state["initialized"] = True


def ensure_runtime():
    """Mark the embedded runtime initialised for library helpers (verify, tests) without
    changing what a later FFConfig() reads."""
    _state["initialized"] = True


def _require_runtime():
    if not _state["initialized"]:
        raise RuntimeNotInitializedError(
            "Cannot use FlexFlow library before initializing FlexFlow: call "
            "init_flexflow_runtime() first (real FlexFlow requires it too)")


def parse_flexflow_args(argv):
    """FlexFlow's command-line reading: a dict of fields, defaults filled in."""
    fields = dict(_DEFAULTS)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUE_FLAGS:
            field, kind = _VALUE_FLAGS[arg]
            if i + 1 >= len(argv):
                raise ConfigError(f"flag {arg} needs a value")
            try:
                fields[field] = kind(argv[i + 1])
            except ValueError:
                raise ConfigError(f"flag {arg} needs a {kind.__name__} value, "
                                  f"got {argv[i + 1]!r}") from None
            i += 2
            continue
        if arg in _BOOL_FLAGS:
            fields[_BOOL_FLAGS[arg]] = True
        elif arg == "--disable-control-replication":
            fields["enable_control_replication"] = False
        elif arg.startswith(_LEGION_PREFIXES) or arg in _LEGION_VALUE_FLAGS:
            i += 1                        # Legion option: skip its value too
        i += 1
    for field in ("batch_size", "epochs", "workers_per_node", "num_nodes"):
        if fields[field] < 1:
            raise ConfigError(f"{field} must be at least 1, got {fields[field]}")
    return fields


class FFConfig:
    """FlexFlow's run configuration, read from the command line."""

    __slots__ = ["handle", "_handle", "enable_tracing"]

    def __init__(self):
        _require_runtime()
        self.enable_tracing = False
        self.parse_args()

    @classmethod
    def _from_flags(cls, argv):
        """A configuration from `argv` alone (library helpers: never the process's own
        command line, never the global runtime state)."""
        config = cls.__new__(cls)
        config.enable_tracing = False
        config.handle = config._handle = parse_flexflow_args(list(argv))
        return config

    def parse_args(self):
        self.handle = parse_flexflow_args(sys.argv[1:])
        self._handle = self.handle

    @property
    def batch_size(self):
        return self.handle["batch_size"]

    @property
    def workers_per_node(self):
        return self.handle["workers_per_node"]

    @property
    def num_nodes(self):
        return self.handle["num_nodes"]

    @property
    def epochs(self):
        return self.handle["epochs"]

    @property
    def enable_control_replication(self):
        return self.handle["enable_control_replication"]

    def _degree(self, name, value):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        self.handle[name] = value

    @property
    def data_parallelism_degree(self):
        return self.handle["data_parallelism_degree"]

    @data_parallelism_degree.setter
    def data_parallelism_degree(self, value):
        self._degree("data_parallelism_degree", value)

    @property
    def tensor_parallelism_degree(self):
        return self.handle["tensor_parallelism_degree"]

    @tensor_parallelism_degree.setter
    def tensor_parallelism_degree(self, value):
        self._degree("tensor_parallelism_degree", value)

    @property
    def pipeline_parallelism_degree(self):
        return self.handle["pipeline_parallelism_degree"]

    @pipeline_parallelism_degree.setter
    def pipeline_parallelism_degree(self, value):
        self._degree("pipeline_parallelism_degree", value)

    @property
    def python_data_loader_type(self):
        return self.handle["python_data_loader_type"]

    @property
    def cpu_offload(self):
        return self.handle["cpu_offload"]

    def get_current_time(self):
        """A barrier, then the time in microseconds (FlexFlow's execution fence)."""
        if torch.cuda.is_available() and runtime_device().startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() * 1e6

    def begin_trace(self, trace_id):
        pass

    def end_trace(self, trace_id):
        pass


def runtime_device():
    """Where the embedded runtime computes: FLEXFLOW_TORCH_DEVICE (default cpu)."""
    return os.environ.get("FLEXFLOW_TORCH_DEVICE", "cpu")
