"""Checkpoint and resume on FlexFlow's API: `flexflow_torch.fit` trains a converted
GPT-2 with checkpoints every step, a second FFModel with other weights loads the
checkpoint. Prints one JSON line: what the file says and whether the weights came back.

    flexflow_python checkpoint_resume.py -ll:gpu 2 -b 2 OUT_FOLDER
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))

import tiny_models  # noqa: E402

import flexflow_torch  # noqa: E402
from flexflow_torch import CrossEntropyHead, PyTorchModel, init_runtime  # noqa: E402
from flexflow_torch.checkpoint import FORMAT  # noqa: E402
from flexflow_torch.core import *  # noqa: E402,F403


def build(ptm, ids):
    ffmodel = FFModel(FFConfig())
    head = CrossEntropyHead(ffmodel, ptm.torch_to_ff(ffmodel)[0])
    ffmodel.compile(optimizer=SGDOptimizer(ffmodel, 0.01), loss_type=head.loss_type, metrics=head.metrics)
    x = ptm.create_data_loaders(ffmodel, [ids, np.ones_like(ids)])
    y = head.create_label_loader(ffmodel, np.roll(ids, -1, axis=1))
    ffmodel.init_layers()
    return ffmodel, x, y


def weights(ffmodel):
    return [op.get_parameter_by_id(j).get_weights(ffmodel)
            for op in ffmodel.get_layers().values() for j in range(op.get_number_parameters())]


def main(out):
    model, kwargs = tiny_models.gpt2()
    kwargs["batch_size"] = batch = FFConfig().batch_size
    ptm = PyTorchModel(model, is_hf_model=True, **kwargs)
    ids = np.random.default_rng(0).integers(1, 100, (3 * batch, 7)).astype(np.int64)
    path = Path(out) / "ckpt.safetensors"
    trained, x, y = build(ptm, ids)
    end = flexflow_torch.fit(trained, x, y, epochs=2, checkpoint=path, every=1)
    saved = weights(trained)
    other, x, y = build(ptm, ids)
    for op in other.get_layers().values():                         # other weights, to be replaced
        for j in range(op.get_number_parameters()):
            p = op.get_parameter_by_id(j)
            p.set_weights(other, np.full(p.dims, 7.0, np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        position = flexflow_torch.load_checkpoint(other, path)
    from safetensors import safe_open
    with safe_open(str(path), framework="numpy") as f:
        meta = json.loads(f.metadata()[FORMAT])
    print("CHECKPOINT " + json.dumps({
        "end": [end.epoch, end.batch], "position": [position.epoch, position.batch],
        "runtime": meta["runtime"], "state": meta["state"], "layers": len(meta["layers"]),
        "restored": all(np.array_equal(a, b) for a, b in zip(weights(other), saved, strict=True)),
        "warnings": [str(w.message) for w in caught]}), flush=True)


if __name__ == "__main__":
    init_runtime()
    main(sys.argv[-1])
