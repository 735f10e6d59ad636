"""FFConfig command-line parsing, init_flexflow_runtime and backend selection."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flexflow_torch.runtime import FFConfig, FFModel, init_flexflow_runtime
from flexflow_torch.errors import (BackendUnavailableError, FlexFlowTorchError,
                                   RuntimeNotInitializedError)

REPO = Path(__file__).resolve().parents[2]


def test_defaults(argv):
    argv()
    cfg = FFConfig()
    assert cfg.batch_size == 64
    assert cfg.epochs == 1
    assert cfg.workers_per_node == 1 and cfg.num_nodes == 1
    assert cfg.enable_control_replication is True
    assert cfg.python_data_loader_type == 2
    assert cfg.cpu_offload is False
    assert (cfg.data_parallelism_degree, cfg.tensor_parallelism_degree,
            cfg.pipeline_parallelism_degree) == (1, 1, 1)
    assert cfg.enable_tracing is False


@pytest.mark.parametrize("flags,field,value", [
    (["-b", "8"], "batch_size", 8),
    (["--batch-size", "12"], "batch_size", 12),
    (["-e", "3"], "epochs", 3),
    (["--epochs", "5"], "epochs", 5),
    (["--lr", "0.5"], "learning_rate", 0.5),
    (["--learning-rate", "0.25"], "learning_rate", 0.25),
    (["--weight-decay", "0.001"], "weight_decay", 0.001),
    (["--wd", "0.002"], "weight_decay", 0.002),
    (["-p", "7"], "print_frequency", 7),
    (["--print-freq", "9"], "print_frequency", 9),
    (["-ll:gpu", "4"], "workers_per_node", 4),
    (["--nodes", "3"], "num_nodes", 3),
    (["-ll:cpu", "3"], "cpus_per_node", 3),
    (["-ll:fsize", "5000"], "device_mem", 5000),
    (["-ll:zsize", "4096"], "zero_copy_mem", 4096),
    (["-ll:py", "1"], "python_processors", 1),
    (["--only-data-parallel"], "only_data_parallel", True),
    (["--disable-control-replication"], "enable_control_replication", False),
    (["-data-parallelism-degree", "2"], "data_parallelism_degree", 2),
    (["-tensor-parallelism-degree", "3"], "tensor_parallelism_degree", 3),
    (["-pipeline-parallelism-degree", "4"], "pipeline_parallelism_degree", 4),
    (["--python-data-loader-type", "1"], "python_data_loader_type", 1),
    (["-offload"], "cpu_offload", True),
])
def test_flag(argv, flags, field, value):
    """Fields without a Python property in FlexFlow (e.g. learning rate, -ll:fsize)
    are read from the embedded FFConfig's handle, its C++ FFConfig stand-in."""
    argv(*flags)
    cfg = FFConfig()
    assert cfg.handle[field] == value
    if hasattr(type(cfg), field):
        assert getattr(cfg, field) == value


def test_flexflow_python_style_command_line(argv):
    """A typical FlexFlow launch: Legion flags, FlexFlow flags and script flags mixed."""
    argv("-ll:gpu", "2", "-ll:fsize", "14048", "-ll:zsize", "12192", "-ll:py", "1",
         "-ll:cpu", "4", "-lg:prof", "1", "-b", "16", "-e", "2", "--model", "x",
         "--only-data-parallel", "--lr", "0.1", "-level", "5")
    cfg = FFConfig()
    assert cfg.batch_size == 16 and cfg.epochs == 2 and cfg.workers_per_node == 2
    assert cfg.handle["learning_rate"] == 0.1
    assert cfg.handle["device_mem"] == 14048 and cfg.handle["zero_copy_mem"] == 12192


def test_unknown_script_flags_ignored(argv):
    argv("--model", "x", "--dataset-dir", "/tmp/y", "-b", "8", "--verbose")
    cfg = FFConfig()
    assert cfg.batch_size == 8 and cfg.epochs == 1


def test_parse_args_rereads_command_line(argv):
    argv("-b", "8")
    cfg = FFConfig()
    argv("-b", "32")
    assert cfg.batch_size == 8
    cfg.parse_args()
    assert cfg.batch_size == 32


@pytest.mark.parametrize("flags", [["-b", "x"], ["-e", "1.5"], ["--lr", "fast"], ["-b"],
                                   ["-b", "0"], ["-ll:gpu", "two"]])
def test_bad_values_raise_typed_error(argv, flags):
    argv(*flags)
    with pytest.raises(FlexFlowTorchError) as info:
        FFConfig()
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("prop", ["data_parallelism_degree", "tensor_parallelism_degree",
                                  "pipeline_parallelism_degree"])
def test_parallelism_setters(argv, prop):
    argv()
    cfg = FFConfig()
    setattr(cfg, prop, 2)
    assert getattr(cfg, prop) == 2
    for bad in (0, -1, 1.5, "2", True, None):
        with pytest.raises(ValueError):
            setattr(cfg, prop, bad)
    assert getattr(cfg, prop) == 2


@pytest.mark.parametrize("prop", ["batch_size", "epochs", "workers_per_node", "num_nodes",
                                  "enable_control_replication", "python_data_loader_type",
                                  "cpu_offload"])
def test_read_only_properties(argv, prop):
    argv()
    cfg = FFConfig()
    with pytest.raises(AttributeError):
        setattr(cfg, prop, 3)


def test_get_current_time_is_monotonic_microseconds(argv):
    argv()
    cfg = FFConfig()
    t0 = cfg.get_current_time()
    t1 = cfg.get_current_time()
    assert isinstance(t0, float) and t1 >= t0
    cfg.begin_trace(1)
    cfg.end_trace(1)


REQUIRED = {"num_gpus": 1, "memory_per_gpu": 1000, "zero_copy_memory_per_node": 1000}


def test_init_dict_keys_become_flags(argv, runtime_state):
    """Plain python: sys.argv becomes the script name and the translated flags."""
    argv("-b", "99", "--model", "x")
    runtime_state["initialized"] = False
    init_flexflow_runtime({"num_gpus": 2, "memory_per_gpu": 6000,
                           "zero_copy_memory_per_node": 3000, "num_cpus": 4,
                           "batch_size": 8, "epochs": 3, "learning_rate": 0.5,
                           "print_frequency": 10, "only_data_parallel": True,
                           "profiling": False, "disable_control_replication": True,
                           "not_a_flexflow_key": 123})
    assert "--profiling" not in sys.argv                  # False -> no flag
    assert "--model" not in sys.argv and "99" not in sys.argv   # the script's own flags are gone
    cfg = FFConfig()
    assert cfg.batch_size == 8 and cfg.epochs == 3 and cfg.workers_per_node == 2
    assert cfg.enable_control_replication is False
    assert cfg.handle["device_mem"] == 6000 and cfg.handle["zero_copy_mem"] == 3000
    assert cfg.handle["cpus_per_node"] == 4 and cfg.handle["learning_rate"] == 0.5
    assert cfg.handle["print_frequency"] == 10 and cfg.handle["only_data_parallel"] is True


def test_init_kwargs(argv, runtime_state):
    argv()
    runtime_state["initialized"] = False
    init_flexflow_runtime(num_gpus=1, memory_per_gpu=1000, zero_copy_memory_per_node=1000,
                          batch_size=16)
    assert FFConfig().batch_size == 16


def test_init_dict_and_kwargs_is_value_error(runtime_state):
    runtime_state["initialized"] = False
    with pytest.raises(ValueError):
        init_flexflow_runtime({"batch_size": 4}, epochs=2)


def test_init_requires_flexflows_keys(argv, runtime_state):
    """Under plain python FlexFlow raises ValueError without num_gpus, memory_per_gpu and
    zero_copy_memory_per_node (python/flexflow/core/__init__.py:117-124)."""
    runtime_state["initialized"] = False
    for configs in ({}, {"num_gpus": 1, "memory_per_gpu": 1000}, {"batch_size": 8}):
        with pytest.raises(ValueError, match="num_gpus, memory_per_gpu, zero_copy_memory_per_node"):
            init_flexflow_runtime(configs)
    assert runtime_state["initialized"] is False


def test_second_init_warns_and_changes_nothing(argv, runtime_state):
    argv("-b", "8")
    runtime_state["initialized"] = False
    init_flexflow_runtime({**REQUIRED, "batch_size": 4})
    with pytest.warns(UserWarning, match="more than once"):
        init_flexflow_runtime({**REQUIRED, "batch_size": 16})
    assert FFConfig().batch_size == 4


def test_ffconfig_before_init(argv, runtime_state):
    argv()
    runtime_state["initialized"] = False
    with pytest.raises(RuntimeNotInitializedError):
        FFConfig()


def test_ffmodel_before_init(argv, runtime_state):
    argv()
    cfg = FFConfig()
    runtime_state["initialized"] = False
    with pytest.raises(RuntimeNotInitializedError):
        FFModel(cfg)


def test_ffmodel_needs_ffconfig():
    with pytest.raises(TypeError):
        FFModel({"batch_size": 4})


def _run_python(code, backend):
    env = dict(os.environ, FLEXFLOW_TORCH_BACKEND=backend, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_backend_flexflow_without_flexflow_installed():
    import importlib.util
    if importlib.util.find_spec("flexflow") is not None:
        pytest.skip("real FlexFlow is installed here")
    proc = _run_python(
        "from flexflow_torch.errors import BackendUnavailableError\n"
        "try:\n"
        "    import flexflow_torch.core\n"
        "except BackendUnavailableError as e:\n"
        "    print('ERR', e)\n", "flexflow")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ERR")
    assert "FLEXFLOW_TORCH_BACKEND" in proc.stdout and "embedded" in proc.stdout


def test_backend_embedded_subprocess():
    proc = _run_python(
        "from flexflow_torch.core import *\n"
        "import flexflow_torch.core as c\n"
        "print(c.BACKEND, FFModel.__module__)\n", "embedded")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["embedded", "flexflow_torch.runtime.model"]


def test_backend_selection_in_process(monkeypatch):
    from flexflow_torch import backend
    monkeypatch.setenv("FLEXFLOW_TORCH_BACKEND", "embedded")
    assert backend.backend_name() == "embedded"
    assert backend.load_core().FFModel is FFModel
    monkeypatch.setenv("FLEXFLOW_TORCH_BACKEND", "bogus")
    with pytest.raises(BackendUnavailableError):
        backend.backend_name()


def test_init_keys_with_flexflow_quirks(argv, runtime_state):
    """As read in FlexFlow: the enable_inplace_optimizations key emits a singular flag
    the parser does not know (no effect); --enable-attribute-parallel sets
    enable_parameter_parallel."""
    argv()
    runtime_state["initialized"] = False
    init_flexflow_runtime({**REQUIRED, "enable_inplace_optimizations": True,
                           "enable_attribute_parallel": True})
    assert "--enable-inplace-optimization" in sys.argv
    cfg = FFConfig()
    assert cfg.handle.get("enable_inplace_optimizations", False) is False
    assert cfg.handle["enable_parameter_parallel"] is True


def test_init_runtime_keeps_the_scripts_flexflow_flags(argv, runtime_state):
    """flexflow_torch.init_runtime passes the command line's FlexFlow flags as keys, so
    they survive FlexFlow's replacement of sys.argv."""
    from flexflow_torch import init_runtime
    argv("-b", "8", "-e", "2", "-ll:gpu", "2", "--model", "dir")
    runtime_state["initialized"] = False
    init_runtime()
    cfg = FFConfig()
    assert cfg.batch_size == 8 and cfg.epochs == 2 and cfg.workers_per_node == 2


@pytest.mark.parametrize("flags,degree", [(["-ll:gpu", "4"], 4), (["--nodes", "2"], 2),
                                          (["--nodes", "2", "-ll:gpu", "3"], 6)])
def test_data_parallel_degree_is_nodes_times_gpus(argv, flags, degree):
    """numNodes x workersPerNode GPUs split every input's axis 0 (model.cc:3147-3151):
    compile() accepts an axis 0 of 2 * degree and rejects degree + 1."""
    from flexflow_torch.errors import ShapeError
    from flexflow_torch.runtime import DataType, LossType, MetricsType
    argv("-b", "4", *flags)
    for rows in (2 * degree, degree + 1):
        ffmodel = FFModel(FFConfig())
        ffmodel.relu(ffmodel.create_tensor((rows, 3), DataType.DT_FLOAT))
        args = dict(loss_type=LossType.LOSS_MEAN_SQUARED_ERROR_AVG_REDUCE,
                    metrics=[MetricsType.METRICS_MEAN_SQUARED_ERROR])
        if rows % degree == 0:
            ffmodel.compile(**args)
        else:
            with pytest.raises(ShapeError, match=f"{degree} GPUs"):
                ffmodel.compile(**args)
