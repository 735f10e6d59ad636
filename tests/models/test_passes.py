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


def test_unsupported_report_hints_at_position_ids():
    import flexflow_torch
    from tiny_models import opt
    model, kwargs = opt()
    kwargs["input_names"] = ["input_ids", "attention_mask"]          # positions from cumsum(mask)
    report = flexflow_torch.analyze(model, is_hf_model=True, **kwargs)
    # the cumsum itself converts (a float matmul), but float ids cannot feed the position embedding
    assert [u.target for u in report.unsupported] == ["aten::embedding"]
    assert "compute them on the host" in report.unsupported[0].reason
    assert "position_ids" in str(report) and "model.decoder.embed_positions" in str(report)
