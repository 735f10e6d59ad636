"""The converted HF models of the test suite (tests/models/tiny_models.py) through the
whole workflow on FlexFlow's API: convert, compile (weights loaded by FFModel.compile),
data loaders, init_layers, fit, eval, copy the weights back into PyTorch, and rebuild
the saved graph file on a second FFModel. Prints one JSON line per model.

    flexflow_python hf_workflow.py -ll:gpu 1 -b 2 bert gpt2 ...    (builders of tiny_models.py)
"""

import json
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))

import tiny_models  # noqa: E402

from flexflow_torch import (CrossEntropyHead, PyTorchModel, create_data_loaders, file_to_ff,  # noqa: E402
                            init_runtime)
from flexflow_torch.core import *  # noqa: E402,F403

def build(convert):
    """A compiled FFModel: the converted model (`convert(ffmodel)` adds it, creating its
    input tensors) under a CrossEntropyHead over its first output."""
    ffmodel = FFModel(FFConfig())
    head = CrossEntropyHead(ffmodel, convert(ffmodel)[0])
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.01), loss_type=head.loss_type, metrics=head.metrics)
    return ffmodel, head


def workflow(name, folder):
    model, kwargs = getattr(tiny_models, name)()
    kwargs["batch_size"] = FFConfig().batch_size                 # -b: one batch size per FlexFlow process
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    inputs = ptm.example_inputs
    ffmodel, head = build(ptm.torch_to_ff)
    loaders = ptm.create_data_loaders(ffmodel, dict(inputs))
    classes = head.classes
    labels = head.create_label_loader(ffmodel, np.zeros((len(next(iter(inputs.values()))),) + head.positions[1:],
                                                        np.int64) % classes)
    ffmodel.init_layers()
    ffmodel.fit(x=list(loaders), y=labels, epochs=1)
    ffmodel.eval(x=list(loaders), y=labels)
    trained = ptm.copy_weights_to_torch(ffmodel)
    copied_back = all(torch.equal(p, initial[n]) for n, p in trained.named_parameters())   # no numerics
    path = Path(folder) / f"{name}.safetensors"
    ptm.torch_to_file(path)
    reloaded, _ = build(lambda m: file_to_ff(path, m))
    file_loaders = create_data_loaders(reloaded, dict(inputs))
    reloaded.init_layers()
    for loader in file_loaders:
        loader.reset()
        loader.next_batch(reloaded)
    reloaded.forward()
    return {"copied_back": copied_back, "reloaded_layers": len(reloaded.get_layers())}


def main(names):
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            try:
                result = workflow(name, folder)
            except Exception:                       # aborts (BaseException) end the process, as on FlexFlow
                result = {"error": traceback.format_exc(limit=-3)}
            print("HF_WORKFLOW " + json.dumps({"model": name, **result}), flush=True)


if __name__ == "__main__":
    init_runtime()
    main([a for a in sys.argv[1:] if callable(getattr(tiny_models, a, None))])
