"""The flexflow-torch command line: HF folders, module:factory, its one-line errors and
its refusal to overwrite files it did not write."""

import pytest

from flexflow_torch import load_program
from flexflow_torch.cli import main

from tiny_models import bert_mlm, gpt2


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    model, _ = gpt2()
    path = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(path)
    return str(path)


def _error(capsys):
    """The one stderr line of a failed command."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("flexflow-torch: error: "), err
    return err[-1]


def test_cli_analyze_convert_verify_hf_folder(gpt2_folder, tmp_path, capsys):
    common = ["--batch-size", "2", "--seq-length", "6"]
    assert main(["analyze", gpt2_folder, *common]) == 0
    captured = capsys.readouterr()
    assert "every operator has a converter" in captured.out
    assert "GPT2LMHeadModel" in captured.err and "config.json architectures" in captured.err
    out = tmp_path / "gpt2.ff"
    assert main(["convert", gpt2_folder, *common, "-o", str(out), "--task", "causal-lm"]) == 0
    program = load_program(out)
    assert program.output_names == ["logits"] and program.user_input_names == ["input_ids", "attention_mask"]
    assert main(["convert", gpt2_folder, *common, "-o", str(out)]) == 0   # ours: replaced
    assert main(["verify", gpt2_folder, *common]) == 0
    assert "ok" in capsys.readouterr().out


def test_task_comes_from_config_architectures(tmp_path, capsys):
    """A BertForMaskedLM folder keeps its MLM head without --task (the base model's
    output would be hidden states of width 32, not vocabulary logits)."""
    model, _ = bert_mlm()
    model.save_pretrained(tmp_path / "bert")
    out = tmp_path / "bert.ff"
    assert main(["convert", str(tmp_path / "bert"), "--batch-size", "2", "--seq-length", "5",
                 "-o", str(out)]) == 0
    assert "BertForMaskedLM" in capsys.readouterr().err
    program = load_program(out)
    assert program.output_names == ["logits"]
    assert program.values[program.outputs[0]].shape[-1] == model.config.vocab_size
    assert main(["convert", str(tmp_path / "bert"), "--task", "base", "--seq-length", "5",
                 "-o", str(tmp_path / "base.ff")]) == 0
    base = load_program(tmp_path / "base.ff")
    assert base.values[base.outputs[0]].shape[-1] == model.config.hidden_size


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "my_factory.py").write_text(
        "import torch\n"
        "def plain():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))\n"
        "def with_inputs():\n"
        "    return plain(), (torch.randn(3, 16),)\n"
        "def broken():\n"
        "    raise RuntimeError('no weights here')\n"
        "class TwoInputs(torch.nn.Module):\n"
        "    def forward(self, a, b):\n"
        "        return a * b.float()\n"
        "def two():\n"
        "    return TwoInputs()\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_module_factory_inputs_from_the_command_line(factories, capsys):
    assert main(["verify", "my_factory:with_inputs"]) == 0
    assert main(["verify", "my_factory:plain", "--input", "x:4x16:float32"]) == 0
    assert main(["convert", "my_factory:two", "--input", "a:2x3", "--input", "b:2x3:int64",
                 "-o", "two.ff"]) == 0
    program = load_program(factories / "two.ff")
    assert program.user_input_names == ["a", "b"]      # b.float() is computed on the host
    assert [program.values[v].shape for v in program.inputs] == [(2, 3), (2, 3)]
    capsys.readouterr()


@pytest.mark.parametrize("argv,expected", [
    (["verify", "my_factory:plain"], "--input x:4x16:float32"),
    (["analyze", "no_such_module:make"], "cannot import 'no_such_module'"),
    (["analyze", "my_factory:missing"], "has no 'missing'"),
    (["analyze", "my_factory:broken"], "the factory raised RuntimeError: no weights here"),
    (["analyze", "gpt2"], "save_pretrained"),
    (["analyze", "my_factory.py"], "is a file"),
    (["analyze", "my_factory:plain", "--input", "x:4y16"], "sizes >= 1 joined by x"),
    (["analyze", "my_factory:plain", "--input", "x:4x16:complex"], "is not one of"),
    (["analyze", "my_factory:with_inputs", "--seq-length", "abc"], "ENC,DEC"),
    (["analyze", "my_factory:with_inputs", "--seq-length", "0"], ">= 1"),
    (["analyze", "my_factory:with_inputs", "--batch-size", "-2"], "whole number >= 1"),
    (["analyze", "my_factory:with_inputs", "--task", "nope"], "invalid choice"),
    (["analyze", "my_factory:with_inputs", "--input", "x:2x16"], "drop --input"),
    (["analyze", "my_factory:plain", "--input", "x:2x16", "--batch-size", "2"],
     "drop --batch-size"),
    (["translate", "x"], "invalid choice"),
    ([], "required"),
])
def test_user_errors_are_one_line_with_the_fix(factories, capsys, argv, expected):
    assert main(argv) == 2
    assert expected in _error(capsys)


def test_hf_folder_errors(gpt2_folder, tmp_path, capsys):
    assert main(["analyze", gpt2_folder, "--seq-length", "65"]) == 2
    assert "exceeds the model's 64 positions" in _error(capsys)
    assert main(["analyze", gpt2_folder, "--task", "seq2seq-lm"]) == 2
    assert "--task seq2seq-lm does not fit" in _error(capsys)
    (tmp_path / "empty").mkdir()
    assert main(["analyze", str(tmp_path / "empty")]) == 2
    assert "without config.json" in _error(capsys)


def test_convert_never_overwrites_what_it_did_not_write(gpt2_folder, factories, capsys):
    mine = factories / "notes.txt"
    mine.write_text("keep me\n")
    assert main(["convert", "my_factory:with_inputs", "-o", str(mine)]) == 2
    assert "pass --force" in _error(capsys)
    assert mine.read_text() == "keep me\n"
    weights = f"{gpt2_folder}/model.safetensors"
    before = open(weights, "rb").read()
    for force in ([], ["--force"]):        # the model's own files: never
        assert main(["convert", gpt2_folder, "-o", weights, *force]) == 2
        assert "file of the model folder" in _error(capsys)
    assert open(weights, "rb").read() == before
    assert main(["convert", "my_factory:with_inputs", "-o", str(mine), "--force"]) == 0
    assert load_program(mine).input_names
    assert not [p for p in factories.iterdir() if p.name.startswith(".")]    # no temp file left
    assert main(["convert", "my_factory:with_inputs", "-o", str(factories)]) == 2
    assert "is a folder" in _error(capsys)


def test_help_per_command(capsys):
    for command in ("analyze", "convert", "verify"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "(default:" in text and "module:factory" in text
