"""The flexflow-torch command line on a saved HF folder and on module:factory."""

import pytest

from flexflow_torch import load_program
from flexflow_torch.cli import main

from tiny_models import gpt2


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    model, _ = gpt2()
    path = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(path)
    return str(path)


def test_cli_analyze_convert_verify_hf_folder(gpt2_folder, tmp_path, capsys):
    common = ["--batch-size", "2", "--seq-length", "6"]
    assert main(["analyze", gpt2_folder, *common]) == 0
    assert "every operator has a converter" in capsys.readouterr().out
    out = tmp_path / "gpt2.ff"
    assert main(["convert", gpt2_folder, *common, "-o", str(out), "--task", "causal-lm"]) == 0
    program = load_program(out)
    assert program.output_names == ["logits"] and program.user_input_names == ["input_ids", "attention_mask"]
    assert main(["verify", gpt2_folder, *common]) == 0
    assert "ok" in capsys.readouterr().out


def test_cli_module_factory_and_errors(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_factory.py").write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))\n"
        "    return m, (torch.randn(3, 4),)\n")
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "my_factory:make"]) == 0
    assert main(["analyze", "no_such_module:make"]) == 2
    assert "ConversionError" in capsys.readouterr().err
