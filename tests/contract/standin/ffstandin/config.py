"""C++ ``FFConfig`` (``src/runtime/model.cc``: ``DefaultConfig``, ``FFConfig::FFConfig``,
``FFConfig::parse_args``): defaults, the command-line flags FlexFlow reads from Legion's
input arguments, then Realm's machine overwriting nodes, GPUs and CPUs."""

import copy
import re

from .errors import AssertionAbort, UndefinedBehaviourAbort
from .realm import PROCESS

# flag -> (field, parser). Parsers follow the C calls: atoi/atof/atoll accept a numeric
# prefix (else 0); std::stoi throws on a non-number (std::terminate, an abort).
_INT, _FLOAT, _LL, _STOI, _STR = "atoi", "atof", "atoll", "stoi", "str"
_VALUE_FLAGS = {
    "-e": ("epochs", _INT), "--epochs": ("epochs", _INT),
    "-b": ("batchSize", _INT), "--batch-size": ("batchSize", _INT),
    "--lr": ("learningRate", _FLOAT), "--learning-rate": ("learningRate", _FLOAT),
    "--wd": ("weightDecay", _FLOAT), "--weight-decay": ("weightDecay", _FLOAT),
    "-p": ("printFreq", _INT), "--print-freq": ("printFreq", _INT),
    "-d": ("dataset_path", _STR), "--dataset": ("dataset_path", _STR),
    "--budget": ("search_budget", _LL), "--search-budget": ("search_budget", _LL),
    "--alpha": ("search_alpha", _FLOAT), "--search-alpha": ("search_alpha", _FLOAT),
    "--simulator-workspace-size": ("simulator_work_space_size", _LL),
    "--import": ("import_strategy_file", _STR), "--import-strategy": ("import_strategy_file", _STR),
    "--export": ("export_strategy_file", _STR), "--export-strategy": ("export_strategy_file", _STR),
    "-offload-reserve-space-size": ("offload_reserve_space_size", _LL),
    "-peft-activation-reserve-space-size": ("peft_activation_reserve_space_size", _LL),
    "-peft-weight-reserve-space-size": ("peft_weight_reserve_space_size", _LL),
    "-data-parallelism-degree": ("data_parallelism_degree", _STOI),
    "-tensor-parallelism-degree": ("tensor_parallelism_degree", _STOI),
    "-pipeline-parallelism-degree": ("pipeline_parallelism_degree", _STOI),
    "-ll:gpu": ("workersPerNode", _INT),
    "-ll:cpu": ("cpusPerNode", _INT),
    "--nodes": ("numNodes", _INT),
    "--taskgraph": ("export_strategy_task_graph_file", _STR),
    "--compgraph": ("export_strategy_computation_graph_file", _STR),
    "--machine-model-version": ("machine_model_version", _INT),
    "--machine-model-file": ("machine_model_file", _STR),
    "--simulator-segment-size": ("simulator_segment_size", _INT),
    "--simulator-max-num-segments": ("simulator_max_num_segments", _INT),
    "--search-num-nodes": ("search_num_nodes", _INT),
    "--search-num-workers": ("search_num_workers", _INT),
    "--base-optimize-threshold": ("base_optimize_threshold", _INT),
    "--python-data-loader-type": ("python_data_loader_type", _INT),
    "--substitution-json": ("substitution_json_path", _STR),
}
# flag -> (field, value) for flags without an argument.
_SWITCHES = {
    "-offload": ("cpu_offload", True),
    "--4bit-quantization": ("quantization_type", "DT_INT4"),
    "--8bit-quantization": ("quantization_type", "DT_INT8"),
    "-enable-peft": ("enable_peft", True),
    "--only-data-parallel": ("only_data_parallel", True),
    "--enable-parameter-parallel": ("enable_parameter_parallel", True),
    "--enable-attribute-parallel": ("enable_parameter_parallel", True),   # sic, model.cc
    "--profiling": ("profiling", True),
    "--benchmarking": ("benchmarking", True),
    "--inference-debugging": ("inference_debugging", True),
    "--allow-tensor-op-math-conversion": ("allow_tensor_op_math_conversion", True),
    "--fusion": ("perform_fusion", True),
    "--overlap": ("search_overlap_backward_update", True),
    "--include-costs-dot-graph": ("include_costs_dot_graph", True),
    "--enable-propagation": ("enable_propagation", True),
    "--enable-inplace-optimizations": ("enable_inplace_optimizations", True),
    "--disable-control-replication": ("enable_control_replication", False),
    "--memory-search": ("perform_memory_search", True),
}
_MEMORY_FLAGS = ("-ll:fsize", "-ll:msize")      # device_mem += atoi(...)


class ConfigRecord:
    """The fields of a C++ FFConfig that the Python layer or the stand-in reads."""

    def __init__(self):
        self.epochs = 1
        self.batchSize = 64
        self.learningRate = 0.01
        self.weightDecay = 0.0001
        self.printFreq = None                   # not initialised by the constructor
        self.dataset_path = ""
        self.numNodes = 1
        self.workersPerNode = 0
        self.cpusPerNode = 0
        self.device_mem = 0
        self.search_budget = -1
        self.search_alpha = 1.2
        self.simulator_work_space_size = 2 * 1024 ** 3
        self.cpu_offload = False
        self.offload_reserve_space_size = 8 * 1024 ** 3
        self.enable_peft = False
        self.peft_activation_reserve_space_size = 1024 ** 3
        self.peft_weight_reserve_space_size = 1024 ** 3
        self.quantization_type = "DT_NONE"
        self.only_data_parallel = True
        self.data_parallelism_degree = 1
        self.tensor_parallelism_degree = 1
        self.pipeline_parallelism_degree = 1
        self.enable_parameter_parallel = False
        self.enable_control_replication = True
        self.python_data_loader_type = 2
        self.enable_inplace_optimizations = False
        self.perform_fusion = False
        self.profiling = False
        self.benchmarking = False
        self.inference_debugging = False
        self.allow_tensor_op_math_conversion = False
        self.search_overlap_backward_update = False
        self.include_costs_dot_graph = False
        self.enable_propagation = False
        self.perform_memory_search = False
        self.machine_model_version = 0
        self.simulator_segment_size = 16777216
        self.simulator_max_num_segments = 1
        self.base_optimize_threshold = 10
        self.import_strategy_file = ""
        self.export_strategy_file = ""

    @classmethod
    def create(cls, function):
        """``new FFConfig()``: defaults, Legion's input arguments, then the machine."""
        config = cls()
        config.parse_args(function, PROCESS.input_args)
        config.numNodes = PROCESS.nodes
        config.workersPerNode = PROCESS.gpus
        config.cpusPerNode = PROCESS.cpus
        return config

    def copy(self):
        """FFModel keeps its own copy (``FFConfig config;`` member of FFModel)."""
        return copy.copy(self)

    def parse_args(self, function, argv):
        i = 1
        while i < len(argv):
            arg = argv[i]
            if arg in _VALUE_FLAGS or arg in _MEMORY_FLAGS:
                i += 1
                if i >= len(argv):
                    raise UndefinedBehaviourAbort(function, f"{arg} is the last argument: FFConfig::"
                                                            "parse_args reads argv[argc] (NULL)")
                if arg in _MEMORY_FLAGS:
                    self.device_mem += _convert(function, arg, argv[i], _INT)
                else:
                    field, kind = _VALUE_FLAGS[arg]
                    setattr(self, field, _convert(function, arg, argv[i], kind))
            elif arg in _SWITCHES:
                field, value = _SWITCHES[arg]
                setattr(self, field, value)
            i += 1


def _convert(function, flag, text, kind):
    if kind == _STR:
        return text
    if kind == _STOI:
        if not re.match(r"\s*[+-]?\d", text):
            raise AssertionAbort(function, f"{flag} {text!r}: std::stoi throws std::invalid_argument "
                                           "(uncaught: std::terminate)")
        kind = _INT
    match = re.match(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?" if kind == _FLOAT else r"\s*[+-]?\d+", text)
    if not match:
        return 0.0 if kind == _FLOAT else 0
    return float(match.group(0)) if kind == _FLOAT else int(match.group(0))
