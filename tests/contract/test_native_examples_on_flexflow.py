"""The native FlexFlow examples run on FlexFlow's own Python package (stand-in C
library) with FLEXFLOW_TORCH_BACKEND=flexflow: launched by ``flexflow_python`` with one
and four GPUs, and by plain ``python``."""

import pytest

from real_flexflow import run_with_real_flexflow

LAUNCHES = [
    pytest.param("flexflow_python", 1, id="flexflow_python-1gpu"),
    pytest.param("flexflow_python", 4, id="flexflow_python-4gpu"),
    pytest.param("python", 4, id="python-4gpu"),
]
EXAMPLES = {
    "digits_mlp": ["OP_INPUT", "OP_LINEAR", "OP_LINEAR", "OP_LINEAR", "OP_SOFTMAX"],
    "digits_cnn": ["OP_INPUT", "OP_CONV2D", "OP_CONV2D", "OP_POOL2D", "OP_FLAT", "OP_LINEAR", "OP_LINEAR",
                   "OP_SOFTMAX"],
}


@pytest.mark.parametrize("launch_mode, gpus", LAUNCHES)
@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_native_example(flexflow_source, example, launch_mode, gpus):
    run = run_with_real_flexflow(f"examples/native/{example}.py", ["-ll:gpu", gpus, "-b", 64, "-e", 1],
                                 launch_mode, source=flexflow_source).check()
    model = run.model
    assert (model["batch_size"], model["epochs"], model["workers_per_node"]) == (64, 1, gpus)
    assert f"workersPerNodes({gpus})" in run.stdout
    assert [layer["op"] for layer in model["layers"]] == EXAMPLES[example]
    assert model["compiled"] and model["initialized"] and model["label"] == [64, 1]
    assert run.report["calls"]["flexflow_model_update"] == 1797 // 64       # fit: whole batches only
    if launch_mode == "flexflow_python":
        assert "-ll:gpu" not in " ".join(run.report["sys_argv"])            # Legion took its flags
