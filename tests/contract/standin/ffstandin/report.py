"""What the stand-in saw, for the harness: written as JSON at exit to the path in
FLEXFLOW_STANDIN_REPORT."""

import atexit
import collections
import json
import os
import sys


class Report:
    def __init__(self):
        self.calls = collections.Counter()
        self.errors = []            # stand-in errors raised to the program
        self.models = []            # every Model record created

    def as_dict(self):
        from .realm import PROCESS
        return {
            "launch_mode": PROCESS.mode,
            "command_line": PROCESS.command_line,
            "input_args": PROCESS.input_args,
            "sys_argv": list(sys.argv),
            "machine": {"nodes": PROCESS.nodes, "gpus": PROCESS.gpus, "cpus": PROCESS.cpus},
            "calls": dict(self.calls),
            "errors": self.errors,
            "models": [_model_summary(m) for m in self.models],
        }


def _model_summary(model):
    weights = [{"layer": layer.full_name, "op": layer.op, "index": i, "dims": list(w.dims),
                "set": w.value is not None, "set_in_compile": w.set_in_compile}
               for layer in model.layers for i, w in enumerate(layer.weights) if w is not None]
    return {
        "batch_size": model.config.batchSize,
        "epochs": model.config.epochs,
        "workers_per_node": model.config.workersPerNode,
        "num_nodes": model.config.numNodes,
        "compiled": model.compiled,
        "initialized": model.initialized,
        "layers": [{"op": layer.op, "name": layer.name, "inputs": [list(t.dims) for t in layer.inputs],
                    "outputs": [list(t.dims) for t in layer.outputs]} for layer in model.layers],
        "label": list(model.label.dims) if model.label is not None else None,
        "weights": weights,
        "zeroed_at_init": model.zeroed_at_init,
    }


REPORT = Report()


def _write():
    path = os.environ.get("FLEXFLOW_STANDIN_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(REPORT.as_dict(), f, indent=1, default=str)


atexit.register(_write)
