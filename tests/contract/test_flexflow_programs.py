"""The project's converted programs on FlexFlow's own Python package (stand-in C
library): the HF models of the test suite through the whole workflow
(programs/hf_workflow.py) and ``examples/mt5/mt5_ff.py -b 8 -e 1``.

Each program runs once per launch and session; tests on other pytest-xdist workers read
the recorded run (real_flexflow.run_once)."""

import json
import sys
from pathlib import Path

import pytest

from real_flexflow import REPO, exclusive, run_once, run_with_real_flexflow

PROGRAMS = Path(__file__).resolve().parent / "programs"
#: the models of tests/models/tiny_models.py that convert (OPT's position offset needs the host)
HF_MODELS = ("bert", "gpt2", "t5", "mt5", "llama", "vit", "llama_gqa", "vit_classifier", "albert", "albert_mlm",
             "gptj", "bloom")


@pytest.fixture(scope="session")
def hf_run(flexflow_source, shared_dir):
    return run_once(shared_dir, "hf_workflow", PROGRAMS / "hf_workflow.py", ["-ll:gpu", 1, "-b", 2, *HF_MODELS],
                    source=flexflow_source)


def _hf_results(run):
    return [json.loads(line[len("HF_WORKFLOW "):]) for line in run.stdout.splitlines()
            if line.startswith("HF_WORKFLOW ")]


def test_converted_hf_models_on_flexflow(hf_run):
    """convert -> compile with weights -> loaders -> init_layers -> fit -> eval -> copy back -> graph file."""
    hf_run.check()
    results = _hf_results(hf_run)
    assert [r["model"] for r in results] == list(HF_MODELS)
    failed = {r["model"]: r.get("error") for r in results if not r.get("copied_back") or not r.get("reloaded_layers")}
    assert not failed, failed
    assert len(hf_run.models) == 2 * len(HF_MODELS)                  # converted, then rebuilt from the file
    for model in hf_run.models:
        assert model["compiled"] and model["weights"]
        assert hf_run.weights_not_set_in_compile(model) == []


def test_converted_hf_models_keep_their_constants(hf_run):
    """Constants are written by the loaders after init_layers (which zero-fills inputs)."""
    zeroed = {i: m["zeroed_at_init"] for i, m in enumerate(hf_run.models) if m["zeroed_at_init"]}
    assert not zeroed, zeroed


@pytest.fixture(scope="session")
def mt5_data(shared_dir):
    """The shipped English-Sinhala data, prepared once per session with a small vocabulary."""
    out = shared_dir / "mt5data"
    with exclusive(out):
        if not out.exists():
            sys.path.insert(0, str(REPO / "examples" / "mt5"))
            import common
            common.mt5_data.prepare(data_dir=REPO / "data" / "eng-sin", out=out, vocab_size=400,
                                    log=lambda *a: None)
    return out


def _mt5_argv(mt5_data, out, gpus):
    return ["-ll:gpu", gpus, "-b", 8, "-e", 1, "--data", mt5_data, "--out", out]


@pytest.fixture(scope="session")
def mt5_run(flexflow_source, mt5_data, shared_dir):
    out = shared_dir / "mt5out"
    return run_once(shared_dir, "mt5_ff", "examples/mt5/mt5_ff.py", _mt5_argv(mt5_data, out, 1),
                    source=flexflow_source), out


def test_mt5_ff_on_flexflow(mt5_run):
    run, out = mt5_run
    run.check()
    model = run.model
    assert (model["batch_size"], model["epochs"], model["workers_per_node"]) == (8, 1, 1)
    assert model["initialized"] and model["layers"][-1]["op"] == "OP_EW_SUB"     # CrossEntropyHead's output
    assert model["weights"] and run.weights_not_set_in_compile() == []
    assert (out / "ff" / "scores.json").is_file()


def test_mt5_ff_keeps_its_constants(mt5_run):
    assert mt5_run[0].model["zeroed_at_init"] == []


def test_mt5_ff_on_flexflow_4gpu(flexflow_source, mt5_data, tmp_path):
    """Every data-parallel assert of FlexFlow's compile and init_layers accepts the program."""
    run_with_real_flexflow("examples/mt5/mt5_ff.py", _mt5_argv(mt5_data, tmp_path, 4), source=flexflow_source).check()


def test_mt5_ff_on_flexflow_plain_python(flexflow_source, mt5_data, tmp_path):
    run_with_real_flexflow("examples/mt5/mt5_ff.py", _mt5_argv(mt5_data, tmp_path, 1), "python",
                           source=flexflow_source).check()


def test_checkpoint_and_resume_on_flexflow(flexflow_source, tmp_path):
    """flexflow_torch.fit and the checkpoints on FlexFlow's own FFModel, loaders and
    Parameter API: the weights and the position come back; the optimizer state cannot
    (FlexFlow's API has no access to it) and load_checkpoint says so."""
    run = run_with_real_flexflow(PROGRAMS / "checkpoint_resume.py", ["-ll:gpu", 2, "-b", 2, tmp_path],
                                 source=flexflow_source)
    run.check()
    result = next(json.loads(line[len("CHECKPOINT "):]) for line in run.stdout.splitlines()
                  if line.startswith("CHECKPOINT "))
    assert result["end"] == result["position"] == [2, 0]
    assert result["runtime"] == "flexflow" and result["state"] is None and result["layers"] > 10
    assert result["restored"]
    assert any("optimizer state" in w and "starts afresh" in w for w in result["warnings"])
