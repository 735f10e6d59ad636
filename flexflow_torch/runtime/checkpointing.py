"""What a checkpoint of the embedded runtime holds besides the weights: the optimizer's
state, each layer's state carried between forwards (dropout's generator, transpose's
accumulating output) and the metrics accumulated so far in the epoch. With them a
resumed run takes exactly the steps the uninterrupted one takes."""

import torch

from ..errors import CheckpointError
from .enums import MetricsType


class TrainingState:
    """`_training_state()` / `_load_training_state()` (a mixin of FFModel). Tensors are
    keyed by FlexFlow's layer id and parameter id, as the weights of a checkpoint are."""

    def _weights_by_key(self):
        return {f"{layer.idx}/{i}": w.value for layer in self._graph
                for i, w in enumerate(layer.weights) if w.value is not None}

    def _training_state(self):
        """(tensors, scalars): all a training step reads besides weights and inputs."""
        key_of = {id(value): key for key, value in self._weights_by_key().items()}
        tensors, generators = {}, {}
        scalars = {"optimizer": None, "generators": generators, "metrics": {
            "correct": self._perf.correct, "total": self._perf.total,
            "sums": {m.name: float(v) for m, v in self._perf.sums.items()}}}
        if self._optimizer is not None:
            for name, per_param in self._optimizer._tensor_state().items():
                for pid, t in per_param.items():
                    tensors[f"optimizer/{name}/{key_of[pid]}"] = t.detach().cpu()
            scalars["optimizer"] = {"kind": type(self._optimizer).__name__, **self._optimizer._scalar_state()}
        for layer in self._graph:
            for name, value in layer.run.state.items():
                key = f"layer/{layer.idx}/{name}"
                if isinstance(value, torch.Generator):
                    generators[key] = str(value.device)
                    value = value.get_state()
                tensors[key] = value.detach().cpu()
        return tensors, scalars

    def _load_training_state(self, tensors, scalars):
        saved = scalars["optimizer"]
        here = None if self._optimizer is None else type(self._optimizer).__name__
        if (saved and saved["kind"]) != here:
            raise CheckpointError(f"the checkpoint holds {saved['kind'] if saved else 'no'} optimizer state but "
                                  f"the model was compiled with {here or 'no optimizer'}: resume with the "
                                  "optimizer the checkpoint was trained with")
        if saved:
            params = self._weights_by_key()
            state = {}
            for key, t in tensors.items():
                if key.startswith("optimizer/"):
                    _, name, pkey = key.split("/", 2)
                    state.setdefault(name, {})[id(params[pkey])] = t.to(params[pkey].device).clone()
            self._optimizer._load_state(state, saved)
        layers = {str(layer.idx): layer for layer in self._graph}
        for key, t in tensors.items():
            if key.startswith("layer/"):
                _, idx, name = key.split("/", 2)
                if key in scalars["generators"]:
                    g = torch.Generator(device=scalars["generators"][key])
                    g.set_state(t)
                    layers[idx].run.state[name] = g
                else:
                    layers[idx].run.state[name] = t.to(self._device).clone()
        metrics = scalars["metrics"]
        self._perf.correct, self._perf.total = metrics["correct"], metrics["total"]
        self._perf.sums = {MetricsType[m]: v for m, v in metrics["sums"].items()}
