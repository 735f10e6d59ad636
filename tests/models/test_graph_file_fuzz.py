"""1,200 seeded mutations of a graph file (raw bytes, program JSON, tensors): each
either raises GraphFileError or loads a program identical to the one saved. Program
and tensor edits whose checksum was recomputed (a deliberate edit) must also raise
GraphFileError unless the program they load replays, compiles and runs. The larger
campaign with counts is scripts/fuzz_graph_files.py."""

import pytest

from flexflow_torch import PyTorchModel

import graph_fuzz

CHUNKS = 4
#: (family, signed, count) per chunk
PLAN = [("bytes", False, 75), ("program", False, 75), ("program", True, 75), ("tensors", False, 40),
        ("tensors", True, 35)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    ptm = PyTorchModel(graph_fuzz.Tiny().eval(), example_inputs=graph_fuzz.tiny_inputs())
    path = tmp_path_factory.mktemp("fuzz") / "tiny.safetensors"
    ptm.torch_to_file(path)
    import flexflow_torch
    return path, graph_fuzz.program_state(flexflow_torch.load_program(path))


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_mutated_graph_files_raise_or_load_identical(saved, tmp_path, chunk):
    path, state = saved
    inputs = graph_fuzz.tiny_inputs()
    wrong = []
    for family, signed, count in PLAN:
        for i in range(count):
            seed = (chunk * 1000 + i) * 7 + len(family) + signed
            dst = tmp_path / f"{family}{int(signed)}_{i}.safetensors"
            what = graph_fuzz.make_mutation(path, dst, family, seed, signed)
            result, detail = graph_fuzz.outcome(dst, state, None, inputs, run=False)
            if result == "loaded" and signed:            # a deliberate, valid edit: it must run
                try:
                    graph_fuzz.run_file(dst, inputs)
                    result = "ran"
                except Exception as exc:  # noqa: BLE001
                    result, detail = "fails after loading", f"{type(exc).__name__}: {exc}"
            ok = result in ("identical", "ran") or (result == "clear" and detail.startswith("GraphFileError"))
            if not ok:
                wrong.append((family, signed, seed, what, result, detail))
    assert not wrong, "\n".join(map(str, wrong[:10]))
