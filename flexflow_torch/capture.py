"""Capture: `torch.export` (non-strict) of the model in eval mode, example
inputs built from `input_names`/`batch_size`/`seq_length`, typed capture errors.
The ops that have no converter are decomposed by decompose.py."""

from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict

import torch
import torch.utils._pytree as pytree

from .errors import CaptureError, ConversionError, ShapeError

_MASK_NAMES = ("attention_mask", "decoder_attention_mask")
MAX_VOLUME = 2 ** 31 - 1          # elements per tensor (FlexFlow's int32 volumes)


def _config(model):
    return getattr(model, "config", None)


def _vocab_size(model):
    cfg = _config(model)
    if cfg is not None:
        for attr in ("vocab_size",):
            v = getattr(cfg, attr, None) or getattr(getattr(cfg, "get_text_config", lambda: None)(), attr, None)
            if v:
                return int(v)
    for m in model.modules():
        if isinstance(m, torch.nn.Embedding):
            return m.num_embeddings
    return 2


def _lengths(seq_length):
    """(encoder, decoder) lengths from an int or a pair, each a positive int."""
    if seq_length is None:
        return None, None
    pair = tuple(seq_length) if isinstance(seq_length, (tuple, list)) else (seq_length, seq_length)
    if len(pair) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in pair):
        raise ShapeError(f"seq_length must be a positive int or an (encoder, decoder) pair of them, "
                         f"got {seq_length!r}")
    return pair


def padding_mask(batch_size, length, generator=None):
    """Ones, with trailing padding in every other row (a realistic mix)."""
    mask = torch.ones(batch_size, length, dtype=torch.int64)
    for b in range(1, batch_size, 2):
        pad = 1 + int(torch.randint(0, max(1, length // 2), (1,), generator=generator))
        mask[b, length - min(pad, length - 1):] = 0
    return mask


def check_batch_size(batch_size):
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConversionError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size


def check_against_examples(inputs: OrderedDict, batch_size=None, seq_length=None):
    """`batch_size` / `seq_length` given together with example inputs must describe them."""
    first = next(iter(inputs.values()), None)
    if first is None or first.dim() == 0:
        raise ConversionError("example_inputs must hold tensors with the batch on axis 0")
    if batch_size is not None and check_batch_size(batch_size) != first.shape[0]:
        raise ConversionError(f"batch_size={batch_size} contradicts example_inputs, whose batch is "
                              f"{first.shape[0]}: give one or the other")
    if seq_length is not None:
        enc, dec = _lengths(seq_length)
        for name, t in inputs.items():
            if t.dim() >= 2 and not t.is_floating_point():
                want = dec if name.startswith("decoder_") else enc
                if t.shape[1] != want:
                    raise ConversionError(f"seq_length={seq_length} contradicts example input {name!r} of "
                                          f"shape {tuple(t.shape)}: give one or the other")


def make_example_inputs(model, input_names, batch_size=1, seq_length=None, seed=0):
    """An ordered dict name -> example tensor for `input_names`."""
    check_batch_size(batch_size)
    if not input_names:
        raise ConversionError("give input_names (with batch_size/seq_length) or example_inputs")
    enc_len, dec_len = _lengths(seq_length)
    longest = max(n for n in (enc_len, dec_len, 1) if n is not None)
    if batch_size * longest > MAX_VOLUME:
        raise ShapeError(f"batch_size {batch_size} x seq_length {longest} exceeds FlexFlow's {MAX_VOLUME} elements "
                         "per tensor")
    g = torch.Generator().manual_seed(seed)
    cfg = _config(model)
    inputs = OrderedDict()
    for name in input_names:
        length = dec_len if name.startswith("decoder_") else enc_len
        if name == "pixel_values":
            channels = getattr(cfg, "num_channels", 3)
            size = getattr(cfg, "image_size", 224)
            size = size if isinstance(size, (tuple, list)) else (size, size)
            inputs[name] = torch.randn(batch_size, channels, *size, generator=g)
            continue
        if length is None:
            raise ConversionError(f"input {name!r} needs seq_length (or pass example_inputs)")
        if name in _MASK_NAMES:
            inputs[name] = padding_mask(batch_size, length, g)
        elif name == "token_type_ids":
            n = getattr(cfg, "type_vocab_size", 2) or 2
            inputs[name] = torch.randint(0, n, (batch_size, length), generator=g)
        elif name == "position_ids":
            inputs[name] = torch.arange(length).expand(batch_size, length).clone()
        elif name.endswith("ids"):
            inputs[name] = torch.randint(0, _vocab_size(model), (batch_size, length), generator=g)
        else:
            raise ConversionError(f"cannot build an example for input {name!r}; pass example_inputs")
    return inputs


def normalize_example_inputs(model, example_inputs, input_names=None):
    """example_inputs (dict or tuple) -> (ordered dict, positional?)."""
    if isinstance(example_inputs, dict):
        if input_names:
            if set(input_names) != set(example_inputs):
                raise ConversionError(f"input_names {list(input_names)} do not match the example_inputs keys "
                                      f"{list(example_inputs)}")
            return OrderedDict((n, example_inputs[n]) for n in input_names), False
        return OrderedDict(example_inputs), False
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)):
        raise ConversionError("example_inputs must be a dict name -> tensor or a tuple of tensors")
    names = list(input_names or [])
    if not names:
        import inspect
        try:
            params = [p for p in inspect.signature(model.forward).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            names = [p.name for p in params[:len(example_inputs)]]
        except (TypeError, ValueError):
            names = []
    if len(names) < len(example_inputs):
        names = names + [f"input_{i}" for i in range(len(names), len(example_inputs))]
    return OrderedDict(zip(names, example_inputs)), True


@contextlib.contextmanager
def _hf_export_settings(model, is_hf_model):
    """No KV cache, dict outputs; restored afterwards."""
    cfg = _config(model)
    saved = {}
    if is_hf_model and cfg is not None:
        for attr, value in (("use_cache", False), ("return_dict", True)):
            if hasattr(cfg, attr):
                saved[attr] = getattr(cfg, attr)
                setattr(cfg, attr, value)
    try:
        yield
    finally:
        for attr, value in saved.items():
            setattr(cfg, attr, value)


def dense_experts_forward(self, hidden_states, top_k_index, top_k_weights):
    """Mixture-of-experts experts, dense: every expert on every token, weighted by the
    router's weight where it chose the expert and by 0 elsewhere. Exactly the sparse
    result (a zero weight times a finite output adds 0), with static shapes: the
    sparse forms (a loop over the experts hit, `index_add_`, grouped matmuls with
    offsets) have data-dependent shapes that neither torch.export nor FlexFlow can run.
    Registered in Transformers' ExpertsInterface as "flexflow_dense" during capture."""
    n = self.num_experts
    weights = (torch.nn.functional.one_hot(top_k_index, n) * top_k_weights.unsqueeze(-1)).sum(dim=1)
    out = None
    for e in range(n):
        up = self.gate_up_proj if self.has_gate else self.up_proj
        y = _expert_linear(self, hidden_states, up[e], getattr(self, f"{'gate_up' if self.has_gate else 'up'}"
                                                                   "_proj_bias")[e] if self.has_bias else None)
        y = self._apply_gate(y) if self.has_gate else self.act_fn(y)
        y = _expert_linear(self, y, self.down_proj[e], self.down_proj_bias[e] if self.has_bias else None)
        if self.has_post_expert_norm:
            y = self.post_expert_norm(y)
        y = y * weights[:, e:e + 1]
        out = y if out is None else out + y
    return out.to(hidden_states.dtype)


def _expert_linear(self, x, w, b):
    return x @ w + (0 if b is None else b) if self.is_transposed else torch.nn.functional.linear(x, w, b)


@contextlib.contextmanager
def _dense_experts(model):
    """Mixture-of-experts models (Transformers' `use_experts_implementation`) captured
    with `dense_experts_forward`; their implementation is restored afterwards."""
    if not hasattr(model, "set_experts_implementation") or not any(
            hasattr(m, "_apply_gate") and hasattr(m, "num_experts") for m in model.modules()):
        yield
        return
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS
    ALL_EXPERTS_FUNCTIONS["flexflow_dense"] = dense_experts_forward
    saved = model.get_experts_implementation()
    model.set_experts_implementation("flexflow_dense")
    try:
        yield
    finally:
        model.set_experts_implementation(saved)


def _hf_flags(model, is_hf_model):
    """`use_cache=False, return_dict=True` for HF forwards that take them."""
    if not is_hf_model:
        return {}
    import inspect
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    flags = {}
    if "use_cache" in params:
        flags["use_cache"] = False
    if "return_dict" in params:
        flags["return_dict"] = True
    return flags


def output_names(outputs):
    """Flattened output names in pytree order: `logits`, `0`, `hidden_states.1`..."""
    leaves, _ = pytree.tree_flatten_with_path(outputs)
    names = []
    for path, _leaf in leaves:
        parts = []
        for k in path:
            parts.append(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))))
        names.append(".".join(parts) or "output")
    return names


@contextlib.contextmanager
def capture_mode(model, training: bool):
    """The model in eval mode, or in training mode for dropout with batch norms kept in
    eval mode (FlexFlow cannot train batch norm; eval-mode ones fold into constants);
    every module's mode is restored afterwards."""
    saved = [(m, m.training) for m in model.modules()]
    model.train(training)
    if training:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    try:
        yield
    finally:
        for m, mode in saved:
            m.training = mode


def call_args(model, inputs: OrderedDict, positional: bool, is_hf_model: bool):
    """(args, kwargs) that call the model on `inputs` as the capture does."""
    if positional:
        return tuple(inputs.values()), dict(_hf_flags(model, is_hf_model))
    return (), {**inputs, **_hf_flags(model, is_hf_model)}


def eager_outputs(model, inputs: OrderedDict, positional: bool, is_hf_model: bool):
    """The model's own outputs in eval mode (verify's reference)."""
    args, kwargs = call_args(model, inputs, positional, is_hf_model)
    with capture_mode(model, False), _hf_export_settings(model, is_hf_model), torch.no_grad():
        return model(*args, **kwargs)


#: (pattern in torch's message, what it means, what to do)
_CAUSES = [
    (("SymIntArrayRef expected to contain only concrete integers", "data-dependent", "GuardOnDataDependent",
      "Could not extract specialized integer", "Dynamic control flow", "dynamic control flow"),
     "a shape or a branch decided by input values (boolean-mask indexing, nonzero, unique, `if tensor:`)",
     "FlexFlow runs a static graph: let shapes and branches depend on the configuration only, select with an "
     "index instead of a mask (x[arange(B), idx]), or pass the selected values as an input"),
]


def _model_frame(exc):
    """The innermost traceback frame in the model's own code (not torch, not this package)."""
    import os
    skip = (os.path.dirname(torch.__file__), os.path.dirname(os.path.abspath(__file__)), "<frozen", "contextlib")
    found, tb = None, exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if not any(part in name for part in skip):
            found = tb
        tb = tb.tb_next
    return found


def capture_error(model, exc, what="torch.export could not capture the model") -> CaptureError:
    """`exc` (raised while capturing) as a CaptureError saying what failed, in which module and
    source line, and what to do."""
    import linecache
    text = " ".join(str(exc).split()) or type(exc).__name__
    reason, advice = f"{type(exc).__name__}: {text[:300]}", ("rewrite that line so torch.export (non-strict) "
                                                             "can trace it, or convert the part before it")
    for patterns, meaning, todo in _CAUSES:
        if any(p in text for p in patterns):
            reason, advice = f"{meaning} ({text[:120]})", todo
            break
    frame = _model_frame(exc)
    where = ""
    if frame is not None:
        code = frame.tb_frame.f_code
        line = linecache.getline(code.co_filename, frame.tb_lineno).strip()
        owner = frame.tb_frame.f_locals.get("self")
        path = next((n or "<the model>" for n, m in model.named_modules() if m is owner), None) \
            if isinstance(owner, torch.nn.Module) else None
        module = f" in module {path} ({type(owner).__name__})" if path is not None else ""
        location = 'File "%s", line %d, in %s: %s' % (code.co_filename, frame.tb_lineno, code.co_name, line)
        where = f" at {_short(location)}{module}"
    return CaptureError(f"{what}: {reason}{where}. What to do: {advice}")


def _check_static_shapes(ep):
    """torch.export represents shapes computed from input values (boolean-mask indexing,
    nonzero, unique) by symbols; FlexFlow's shapes are fixed when the model is built. Every
    node where such a shape first appears is reported (module, source line, what to do)
    before any pass runs on the graph."""
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols
    from .analysis import AnalysisReport, UnsupportedCollector
    from .errors import UnsupportedOperatorsError
    collector = UnsupportedCollector()
    for node in ep.graph.nodes:
        vals = node.meta.get("val")
        if node.op != "call_function" or vals is None or not free_unbacked_symbols(vals):
            continue
        if not any(d.meta.get("val") is not None and free_unbacked_symbols(d.meta.get("val"))
                   for d in node.all_input_nodes):
            collector.add(node, reason="its output shape depends on the input values (FlexFlow's shapes are fixed "
                                       "when the model is built): " + _CAUSES[0][2])
    if collector.items:
        raise UnsupportedOperatorsError(AnalysisReport(unsupported=collector.report()))


def _short(location: str) -> str:
    """`File ".../site-packages/pkg/mod.py", line 12, in f: code` -> `pkg/mod.py:12: code`."""
    import re
    m = re.match(r'File "(?:.*/site-packages/)?([^"]*)", line (\d+), in [^:]*(?:: (.*))?$', location or "")
    return f"{m.group(1)}:{m.group(2)}: {m.group(3) or ''}".rstrip(": ") if m else (location or "")


#: ops kept whole although nothing converts them: their decomposition would convert into
#: something else (an LSTM unrolled into linears over a hidden state without the batch on
#: axis 0), so the report names them instead
KEEP_WHOLE = {torch.ops.aten.lstm.input, torch.ops.aten.lstm.data, torch.ops.aten.gru.input,
              torch.ops.aten.gru.data, torch.ops.aten.rnn_tanh.input, torch.ops.aten.rnn_relu.input}


def check_no_mutation(ep):
    """Refuse a forward that updates a buffer, a parameter or an input in place. A
    functionalized program (after `decompose_all`) lists them in its signature; in the
    program torch.export captures, an in-place op writes (maybe through views) into a
    placeholder."""
    sig = ep.graph_signature
    mutated = set(sig.buffers_to_mutate.values()) | set(sig.user_inputs_to_mutate.values())
    names = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    for node in ep.graph.nodes:
        if not in_place(node):
            continue
        for arg, value in zip(node.target._schema.arguments, node.args):
            if arg.alias_info is not None and arg.alias_info.is_write and isinstance(value, torch.fx.Node):
                root = _view_root(value)
                if root.op == "placeholder":
                    mutated.add(names.get(root.name, root.name))
    if mutated:
        raise ConversionError(f"the forward updates {', '.join(sorted(mutated))} in place; a FlexFlow model keeps "
                              "no state between batches, so the converted model could not reproduce it (update "
                              "such state outside forward)")


def _view_root(node):
    """The tensor `node` is a view of (itself if it is none)."""
    while (node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
           and node.target._schema.returns and node.target._schema.returns[0].alias_info is not None
           and not node.target._schema.returns[0].alias_info.is_write and node.args
           and isinstance(node.args[0], torch.fx.Node)):
        node = node.args[0]
    return node


def export_model(model, inputs: OrderedDict, positional: bool, is_hf_model: bool, training=False):
    """(ExportedProgram as torch.export captured it, output names).

    In training mode dropout is captured (as `aten.dropout` with train=True). Ops that
    have no converter are decomposed later (`decompose_missing`, or `decompose_all`)."""
    args, kwargs = call_args(model, inputs, positional, is_hf_model)
    with capture_mode(model, training):
        with _hf_export_settings(model, is_hf_model), _dense_experts(model), torch.no_grad():
            try:
                with warnings.catch_warnings():
                    # torch's own pytree deprecation notice, raised inside torch.export
                    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
                    ep = torch.export.export(model, args, kwargs, strict=False)
            except Exception as exc:  # noqa: BLE001 - surface torch.export's reason, typed
                raise capture_error(model, exc) from exc
    _check_static_shapes(ep)
    check_no_mutation(ep)
    spec = ep.call_spec.out_spec
    return ep, output_names(pytree.tree_unflatten(list(range(spec.num_leaves)), spec))


def in_place(node) -> bool:
    return (node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
            and node.target._schema.is_mutable)
