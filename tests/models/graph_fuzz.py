"""Seeded mutations of a graph file, and how loading each one ends.

Used by test_graph_file_fuzz.py and by scripts/fuzz_graph_files.py (the larger
campaign, which also runs against older versions of the package: only the public API
is used here). A mutation edits the raw bytes, the program JSON or the tensors of a
file written by `torch_to_file`; JSON and tensor edits come `signed` (the checksum
recomputed, as a writer that made the change on purpose would) or not."""

from __future__ import annotations

import copy
import json
import random
import struct

import numpy as np
import torch

META_KEY = "flexflow_torch.program"
CHECKSUM_KEY = "flexflow_torch.sha256"

#: FFModel methods that are no operators, other operators, and names that are nothing
METHODS = ["compile", "fit", "eval", "init_layers", "forward", "backward", "update", "get_layers",
           "create_data_loader", "create_tensor", "__init__", "__class__", "__getattribute__", "os.system",
           "", "dense", "relu", "softmax", "embedding", "multihead_attention", "transpose", "reverse", "mean",
           "batch_norm", "flat", "identity", "concat", "split", "gather", "conv2d"]
ENUMS = ["ActiMode.AC_MODE_RELU", "ActiMode.AC_MODE_NONE", "DataType.DT_INT64", "DataType.DT_FLOAT",
         "DataType.DT_DOUBLE", "DataType.DT_NONE", "PoolType.POOL_AVG", "AggrMode.AGGR_MODE_SUM", "Nope.X",
         "ActiMode.NOPE", "os.system", "ActiMode", "", "DataType.__class__"]


class Tiny(torch.nn.Module):
    """Embedding, layer norm (table weights), dense layers, a masked composed softmax
    (constants, gathers, pool2d) and a batch_matmul: most record kinds in a few ops."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(11, 8)
        self.ln = torch.nn.LayerNorm(8)
        self.fc = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 5)
        with torch.no_grad():
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.bias.uniform_(-0.5, 0.5)

    def forward(self, input_ids, attention_mask):
        h = self.ln(self.emb(input_ids))
        scores = h @ h.transpose(1, 2) + (1.0 - attention_mask[:, None, :].float()) * -1e4
        return self.head(torch.relu(torch.softmax(scores, -1) @ self.fc(h)))


def tiny_inputs():
    g = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(0, 11, (2, 6), generator=g),
            "attention_mask": torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])}


# --------------------------------------------------------------------------- file access
def read_file(path):
    from safetensors import safe_open
    with safe_open(str(path), framework="numpy") as f:
        return dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}


def write_file(path, meta, tensors, signed):
    from safetensors.numpy import save_file
    meta = dict(meta)
    if signed:
        from flexflow_torch.serialization import checksum
        meta[CHECKSUM_KEY] = checksum(meta[META_KEY], tensors)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=meta)


# --------------------------------------------------------------------------- mutations
def _paths(obj, path=()):
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, path + (i,))


def _get(obj, path):
    for k in path:
        obj = obj[k]
    return obj


def _random_value(rng, old):
    choices = [
        lambda: rng.choice([0, 1, -1, 2, 3, 7]), lambda: rng.randint(-10, 1000), lambda: 2 ** rng.randint(31, 70),
        lambda: -(2 ** 40), lambda: (old + rng.choice([-1, 1])) if isinstance(old, int) and not isinstance(
            old, bool) else 1, lambda: rng.choice([0.5, -0.0, 1e300, float("nan"), float("inf")]),
        lambda: rng.choice(["", "x", "DT_FLOAT", "weight", "fc1", "x" * 3000]), lambda: None,
        lambda: rng.choice([True, False]), lambda: [], lambda: {}, lambda: [old],
        lambda: {"$v": rng.randint(-1, 60)}, lambda: {"$enum": rng.choice(ENUMS)},
        lambda: [rng.randint(0, 9) for _ in range(rng.randint(0, 5))], lambda: {"$v": 0, "x": 1},
    ]
    return rng.choice(choices)()


def mutate_program(data, rng):
    """Edit the parsed program in place; returns a short description."""
    ops = data.get("ops") if isinstance(data, dict) else None
    kind = rng.choice(["replace"] * 4 + ["delete", "duplicate_op", "drop_op", "swap_ops", "method", "ref", "enum",
                                         "shape", "version", "name"])
    if ops and kind == "duplicate_op":
        i = rng.randrange(len(ops))
        ops.insert(rng.randrange(len(ops) + 1), copy.deepcopy(ops[i]))
        return f"duplicate op {i}"
    if ops and kind == "drop_op":
        return f"drop op {ops.pop(rng.randrange(len(ops)))['method']}"
    if ops and kind == "swap_ops" and len(ops) > 1:
        i, j = rng.sample(range(len(ops)), 2)
        ops[i], ops[j] = ops[j], ops[i]
        return f"swap ops {i} {j}"
    if ops and kind == "method":
        op = rng.choice(ops)
        op["method"] = rng.choice(METHODS)
        return f"method -> {op['method']}"
    if ops and kind == "name":
        op = rng.choice(ops)
        op["name"] = rng.choice([o["name"] for o in ops] + [None, "", "a" * 200])
        return "name"
    if kind == "version":
        data["version"] = rng.choice([0, 1, 2, 4, "3", 3.0, None, -1])
        return f"version -> {data['version']!r}"
    special = {"ref": lambda v: isinstance(v, dict) and "$v" in v, "enum": lambda v: isinstance(v, dict) and "$enum" in v,
               "shape": lambda v: isinstance(v, list) and v and all(isinstance(x, int) for x in v)}
    paths = [p for p, v in _paths(data) if p and (kind not in special or special[kind](v))]
    if not paths:
        paths = [p for p, _ in _paths(data) if p]
    path = rng.choice(paths)
    parent, key, old = _get(data, path[:-1]), path[-1], _get(data, path)
    if kind == "ref" and isinstance(old, dict):
        old["$v"] = rng.choice([-1, 0, 1, old["$v"] + 1, old["$v"] - 1, 10 ** 6, "0", None])
    elif kind == "enum" and isinstance(old, dict):
        old["$enum"] = rng.choice(ENUMS)
    elif kind == "shape" and isinstance(old, list) and old:
        i = rng.randrange(len(old))
        old[i] = rng.choice([0, -1, old[i] + 1, old[i] * 2, 2 ** 33, 1])
    elif kind == "delete":
        del parent[key]
    else:
        parent[key] = _random_value(rng, old)
    return f"{kind} {'/'.join(map(str, path))}"


def mutate_tensors(tensors, rng):
    name = rng.choice(sorted(tensors))
    t = tensors[name]
    kind = rng.choice(["bitflip", "bitflip", "bitflip", "nan", "dtype", "reshape", "truncate", "drop", "add",
                       "rename"])
    if kind == "bitflip":
        raw = bytearray(np.ascontiguousarray(t).tobytes())
        i = rng.randrange(len(raw))
        raw[i] ^= 1 << rng.randrange(8)
        tensors[name] = np.frombuffer(bytes(raw), dtype=t.dtype).reshape(t.shape)
    elif kind == "nan" and t.dtype == np.float32:
        t = t.copy()
        t.flat[rng.randrange(t.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e38])
        tensors[name] = t
    elif kind == "dtype":
        tensors[name] = t.astype(rng.choice([np.float64, np.int64, np.float16, np.int32, np.uint8, np.float32]))
    elif kind == "reshape" and t.ndim >= 1:
        tensors[name] = np.ascontiguousarray(t.T) if t.ndim == 2 and rng.random() < 0.5 else t.reshape(-1)
    elif kind == "truncate" and t.shape[0] > 1:
        tensors[name] = t[:-1]
    elif kind == "drop":
        del tensors[name]
    elif kind == "add":
        tensors[rng.choice(["weight/extra", "const/9999", "evil", f"{name}x"])] = np.zeros((2, 2), np.float32)
    else:
        tensors[rng.choice(["weight/other", "const/0", name.upper()])] = tensors.pop(name)
    return f"{kind} {name}"


def mutate_bytes(raw: bytes, rng):
    header = 8 + struct.unpack("<Q", raw[:8])[0] if len(raw) >= 8 else len(raw)
    pos = rng.randrange(header) if rng.random() < 0.5 else rng.randrange(header, max(header + 1, len(raw)))
    pos = min(pos, len(raw) - 1)
    kind = rng.choice(["bitflip", "bitflip", "byte", "truncate", "append", "zero", "insert"])
    b = bytearray(raw)
    if kind == "bitflip":
        b[pos] ^= 1 << rng.randrange(8)
    elif kind == "byte":
        b[pos] = rng.randrange(256)
    elif kind == "truncate":
        b = b[:pos]
    elif kind == "append":
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == "zero":
        n = rng.randint(1, 64)
        b[pos:pos + n] = bytes(len(b[pos:pos + n]))
    else:
        b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(b), f"{kind} at {pos} ({'header' if pos < header else 'data'})"


def make_mutation(src, dst, family, seed, signed=False):
    """Write one mutated copy of `src` to `dst`; returns its description."""
    rng = random.Random(seed)
    if family == "bytes":
        raw, what = mutate_bytes(open(src, "rb").read(), rng)
        open(dst, "wb").write(raw)
        return what
    meta, tensors = read_file(src)
    if family == "program":
        data = json.loads(meta[META_KEY])
        what = mutate_program(data, rng)
        meta[META_KEY] = json.dumps(data)
    else:
        what = mutate_tensors(tensors, rng)
    write_file(dst, meta, tensors, signed)
    return what


# --------------------------------------------------------------------------- outcomes
def program_state(program):
    """Everything a loaded program holds, for comparison."""
    return (json.dumps(program.to_json(), sort_keys=True),
            {k: np.asarray(v).tobytes() + str(np.asarray(v).dtype).encode() for k, v in program.weights.items()},
            {k: np.asarray(v).tobytes() + str(np.asarray(v).dtype).encode() for k, v in program.constants.items()})


def run_file(path, inputs):
    """Rebuild the saved graph on an embedded-runtime FFModel and run one forward: the
    documented flow without the PyTorch model (file_to_ff creates the input tensors;
    create_data_loaders feeds them and writes the program's constants)."""
    import flexflow_torch
    from flexflow_torch.verify import compile_for_inference, embedded_model
    ffmodel = embedded_model(batch_size=2)
    outputs = flexflow_torch.file_to_ff(path, ffmodel)
    compile_for_inference(ffmodel)
    loaders = flexflow_torch.create_data_loaders(ffmodel, dict(inputs))
    ffmodel.init_layers()
    for loader in loaders:
        loader.reset()
        loader.next_batch(ffmodel)
    ffmodel.forward()
    return [np.asarray(o.get_tensor(ffmodel)) for o in outputs]


def outcome(path, reference_state, reference_outputs, inputs, run=True):
    """("clear" | "unhelpful" | "identical" | "harmless" | "silent", detail).

    clear: a typed error (GraphFileError at load, or another flexflow-torch error);
    unhelpful: any other exception; identical: the loaded program equals the original;
    harmless: it differs but computes the same outputs; silent: it loads, runs and
    computes something else."""
    import flexflow_torch
    from flexflow_torch.errors import FlexFlowTorchError
    try:
        program = flexflow_torch.load_program(path)
        if program_state(program) == reference_state:
            return "identical", ""
        if not run:
            return "loaded", ""
        outputs = run_file(path, inputs)
    except FlexFlowTorchError as exc:
        return "clear", f"{type(exc).__name__}: {exc}"[:200]
    except (Exception, RecursionError) as exc:  # noqa: BLE001 - what the campaign counts
        return "unhelpful", f"{type(exc).__name__}: {exc}"[:200]
    same = len(outputs) == len(reference_outputs) and all(
        a.shape == b.shape and np.array_equal(a, b, equal_nan=True) for a, b in zip(outputs, reference_outputs))
    return ("harmless", "") if same else ("silent", "outputs differ")
