"""Graph passes on real models: constant folding (T5 buckets, masks), tied
parameters by storage, fusions."""

import torch

from flexflow_torch import PyTorchModel

from tiny_models import t5, gpt2, llama


def test_t5_buckets_folded_bias_lookup_stays_trainable():
    model, kwargs = t5()
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    program = ptm.program
    bias_ops = [op for op in program.ops if op.name and op.name.endswith("relative_attention_bias")]
    assert len(bias_ops) == 2                                  # encoder and decoder block 0
    for op in bias_ops:
        assert op.method == "embedding" and op.weights     # trainable FlexFlow weight
        ids = program.values[op.args["input"]["$v"]]
        assert ids.dtype == "DT_INT32"
        assert ids.id in program.constants                   # bucket indices folded to an int constant
        assert ids.shape[0] == kwargs["batch_size"]          # one copy per sample (data parallelism)
    # nothing of the bucket arithmetic (abs, log, where, min...) reached FlexFlow
    assert not set(program.ff_ops()) & {"min", "max", "divide"}
    assert ptm.prepared.fusions["rms_norm"] == 12


def test_tied_parameters_canonicalised_by_storage():
    model, kwargs = t5()
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    ties = ptm.prepared.ties
    tied = next(v for v in ties.values() if "encoder.embed_tokens.weight" in v)
    assert "shared.weight" in tied
    shared = [op for op in ptm.program.ops if op.method == "embedding" and op.name == "shared"]
    assert len(shared) == 1                                  # encoder + decoder (+ LM head) lookups, one layer


def test_causal_mask_and_positions_are_constants():
    for builder in (gpt2, llama):
        model, kwargs = builder()
        ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
        targets = {str(n.target) for n in ptm.prepared.graph.nodes
                   if n.op == "call_function" and n not in ptm.prepared.folded}
        assert not any(t.startswith("aten.arange") or t.startswith("aten.le") for t in targets)
        assert len(ptm.program.constants) > 0


def test_layer_names_unique_and_short():
    model, kwargs = t5()
    program = PyTorchModel(model, is_hf_model=True, **kwargs).program
    names = [op.name for op in program.ops if op.kind == "op" and op.name is not None]
    assert len(names) == len(set(names))
    assert all(len(n) < 110 for n in names)
    weighted = {op.name for op in program.ops if op.weights}
    assert "encoder.block.0.layer.0.SelfAttention.q" in weighted
    assert "decoder.block.1.layer.2.DenseReluDense.wo" in weighted


def test_position_ids_from_the_mask_run_on_the_host():
    """OPT derives its positions from cumsum(mask) (+ 2): integer work FlexFlow cannot do,
    computed on the host and fed as an extra DT_INT32 input."""
    from flexflow_torch import PyTorchModel
    from tiny_models import opt
    model, kwargs = opt()
    kwargs["input_names"] = ["input_ids", "attention_mask"]          # positions from cumsum(mask)
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    assert ptm.analyze().ok
    ops = [s["op"] for s in ptm.program.host.steps]
    assert "aten::cumsum.default" in ops
    positions = [n for n in ptm.ff_input_names if n.startswith("host.")]
    assert any(ptm.program.values[v].dtype == "DT_INT32" for v, n in zip(ptm.program.inputs, ptm.ff_input_names)
               if n in positions)
