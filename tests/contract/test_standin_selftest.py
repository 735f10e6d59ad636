"""The check cannot pass vacuously: known-bad calls through FlexFlow's own Python
package are caught by the stand-in (or by cffi / FlexFlow's Python, as on the real
library), a valid program passes, a failing program fails the harness, and the stand-in
emulates every C function of the training API."""

import json
import re
from pathlib import Path

import pytest

import flexflow_facts as facts
from ffstandin import csource
from ffstandin.library import IMPLEMENTATIONS  # importing the library registers every emulation
from real_flexflow import run_once

PROGRAM = Path(__file__).resolve().parent / "programs" / "standin_selftest.py"

# case -> (error class, words of the message)
EXPECTED = {
    "wrong_argument_type": ("TypeError", "flexflow_model_add_dense(): an integer is required"),
    "wrong_argument_count": ("TypeError", "expects 1 arguments, got 0"),
    "wrong_handle_struct": ("TypeError", "ctype 'flexflow_config_t'"),
    "missing_c_function": ("MissingSymbolError", "flexflow_model_add_layernorm"),
    "missing_python_method": ("AttributeError", "layernorm"),
    "destroyed_handle": ("InvalidHandleAbort", "destroyed"),
    "unknown_handle": ("InvalidHandleAbort", "never returned"),
    "wrong_type_handle": ("InvalidHandleAbort", "not a flexflow_tensor_t"),
    "unknown_enum_python": ("AssertionError", "unknown enum type 99"),
    "unknown_enum_c": ("UndefinedBehaviourAbort", "not a value of enum DataType"),
    "assert_false_function": ("AssertionAbort", "flexflow_model_get_parameter_by_id"),
    "weights_before_compile": ("AssertionAbort", "has no parallel tensor"),
    "builder_assert": ("AssertionAbort", "axes must be the first"),
}


@pytest.fixture(scope="session")
def selftest(flexflow_source, shared_dir):
    return run_once(shared_dir, "standin_selftest", PROGRAM, ["-ll:gpu", "1", "-b", "4"], source=flexflow_source)


def _results(run):
    line = next((line for line in run.stdout.splitlines() if line.startswith("SELFTEST ")), None)
    assert line is not None, run.describe()
    return json.loads(line[len("SELFTEST "):])


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_call_is_caught(selftest, case):
    error, words = EXPECTED[case]
    result = _results(selftest)[case]
    assert result.get("error") == error and words in result["message"], result


def test_valid_calls_pass(selftest):
    results = _results(selftest)
    assert results["valid_training"] == {"ok": [[4, 1], True]}         # label (4, 1); weights round trip
    assert results["dims_order"] == {"ok": [[4, 5, 6], [6, 5, 4]]}      # NumPy order over Legion order


def test_a_failing_program_fails_the_harness(selftest):
    assert selftest.returncode != 0
    assert selftest.errors[-1]["error"] == "AssertionAbort"
    with pytest.raises(AssertionError, match="program failed on real FlexFlow"):
        selftest.check()


# Not emulated: serving, DLRM/NetConfig and LoRA functions, and the attach data loader
# (FlexFlow's own path to it calls map_tensor, which aborts first).
_NOT_EMULATED = re.compile(r"_(batch_config|dlrm_config|net_config|lora|peft_model_id|request_manager|"
                           r"inference_manager|file_data_loader)_|_model_(add_(arg_top_k|argmax|beam_top_k|sampling|"
                           r"lora_layer|(spec_)?inc_multi\w+)|generate|set_position_offset|set_transformer_layer_id)$")
_ATTACH_PATH = {"flexflow_single_dataloader_create", "flexflow_tensor_attach_raw_ptr",
                "flexflow_tensor_detach_raw_ptr"}


def test_standin_emulates_the_training_c_api(flexflow_source):
    header = facts.module_literal(flexflow_source.path("python/flexflow/core/flexflow_cffi_header.py"),
                                  "flexflow_header")
    declared = set(csource.declared_functions(header))
    aborting = set(csource.aborting_functions(flexflow_source.c_source.read_text()))
    assert set(IMPLEMENTATIONS) <= declared
    missing = declared - set(IMPLEMENTATIONS) - aborting - _ATTACH_PATH
    assert sorted(name for name in missing if not _NOT_EMULATED.search(name)) == []


def test_c_source_parser():
    source = """
    // flexflow_commented(int x) { }
    /* bool flexflow_block_commented(void) { return true; } */
    #define WRAP(T) static T wrap(T t) { return t; }
    class Wrapper { public: static int inside(int a) { return a; } };
    flexflow_tensor_t *
        flexflow_two_lines(flexflow_model_t handle_, char const *name) {
      printf("}{");
      return NULL;
    }
    bool flexflow_deprecated(flexflow_tensor_t handle_) {
      assert(false && "Deprecated API");
    }
    void flexflow_asserts_later(int n) {
      if (n) { assert(0); }
    }
    """
    assert set(csource.defined_functions(source)) == {"flexflow_two_lines", "flexflow_deprecated",
                                                      "flexflow_asserts_later"}
    assert csource.aborting_functions(source) == ["flexflow_deprecated"]


def test_legion_filter_is_legions(flexflow_source):
    """The stand-in legion_top filters what Legion 24.06.0's legion_top.input_args does."""
    import legion_top
    assert legion_top.FILTERED_PREFIXES == facts.function_literal(flexflow_source.legion_top_py, "input_args",
                                                                  "prefixes")


def test_ffconfig_reads_the_command_line_as_cpp_does():
    from ffstandin.config import ConfigRecord
    from ffstandin.errors import UndefinedBehaviourAbort
    config = ConfigRecord()
    config.parse_args("test", ["prog", "-b", "32x", "--epochs", "3", "-ll:gpu", "2", "--lr", "0.5e-1",
                               "--disable-control-replication", "--unknown", "-ll:fsize", "100", "-ll:msize", "20"])
    assert (config.batchSize, config.epochs, config.workersPerNode, config.learningRate) == (32, 3, 2, 0.05)
    assert not config.enable_control_replication and config.device_mem == 120
    with pytest.raises(UndefinedBehaviourAbort):
        config.parse_args("test", ["prog", "-b"])
