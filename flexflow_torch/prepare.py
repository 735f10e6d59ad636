"""From a model to a prepared FX graph: capture, strip assertions, canonicalise
tied parameters, fold constants, fuse patterns. Everything the analysis and
the converters need is in one `PreparedGraph`."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch.export.graph_signature import InputKind, TensorArgument

from .capture import KEEP_WHOLE, check_no_mutation, export_model
from .decompose import ASSERTS, decompose_all, decompose_missing, missing_converter
from .context import Param
from .errors import CaptureError, ConversionError, FlexFlowTorchError
from . import passes

aten = torch.ops.aten


@dataclass
class PreparedGraph:
    ep: object
    graph: torch.fx.Graph
    user_inputs: "OrderedDict"          # placeholder -> FlexFlow input name (the user's, then host-side ones)
    params: dict                        # placeholder -> Param (canonical ones are used)
    folded: dict                        # node -> constant value
    output_names: list
    output_nodes: list
    batch_size: int                     # the leading size of activations (samples, or sample x choice rows)
    example_inputs: "OrderedDict"
    training: bool = False
    ties: dict = field(default_factory=dict)
    fusions: dict = field(default_factory=dict)
    host: object = None                 # host_program.HostProgram: the user's arrays -> FlexFlow inputs

    def ff_inputs(self, inputs) -> "OrderedDict":
        """The FlexFlow inputs (name -> tensor) for the user's `inputs` (one batch)."""
        return self.host(inputs) if self.host is not None else OrderedDict((k, inputs[k]) for k in self.user_inputs.values())


def prepare(model, inputs: OrderedDict, positional: bool, is_hf_model: bool, training=False) -> PreparedGraph:
    ep, out_names = export_model(model, inputs, positional, is_hf_model, training)
    graph, state = _signature(ep, inputs)
    if not _decompose_missing(graph, state):
        ep = decompose_all(ep)
        check_no_mutation(ep)
        graph, state = _signature(ep, inputs)
    params, constants, user_inputs = state
    _run_pass(passes.drop_empty_cat_inputs, graph)
    ties = _run_pass(passes.canonicalize_tied_parameters, graph, params)
    params = {n: p for n, p in params.items() if n.users or n in ties_first(ties, params)}
    folded = _run_pass(passes.fold_constants, graph, constants, set(user_inputs) | set(params))
    batch = int(next(iter(inputs.values())).shape[0])
    rows = _run_pass(passes.rows_per_batch, graph, user_inputs, batch)        # batch * choices for multiple choice
    host, user_inputs = _run_pass(passes.split_host_inputs, graph, user_inputs, folded, inputs, batch, rows)
    graph.eliminate_dead_code()             # the fusions count users: no dead ones among them
    fusions = {"rms_norm": _run_pass(passes.fuse_rms_norm, graph, params, folded),
               "layer_norm": _run_pass(passes.fuse_layer_norm, graph, params, folded),
               "dense_activation": _run_pass(passes.fuse_dense_activation, graph, params),
               "batch_merge": _run_pass(passes.unmerge_batch_views, graph, rows),
               "high_rank_views": _run_pass(passes.collapse_high_rank_views, graph)}
    graph.eliminate_dead_code()
    output_node = next(n for n in graph.nodes if n.op == "output")
    outs = list(output_node.args[0])
    return PreparedGraph(ep=ep, graph=graph, user_inputs=user_inputs, params=params, folded=folded,
                         output_names=out_names, output_nodes=outs, batch_size=rows,
                         example_inputs=inputs, training=training, ties=ties, fusions=fusions, host=host)


def _decompose_missing(graph, state) -> bool:
    """Decompose the ops without a converter that constant folding will not remove, each
    on its own (decompose.decompose_missing); False if the whole program must be."""
    params, constants, user_inputs = state
    if not any(missing_converter(n) for n in graph.nodes):
        return True
    folded = _run_pass(passes.fold_constants, graph, constants, set(user_inputs) | set(params))
    reads_params = set(params)
    for n in graph.nodes:
        if any(a in reads_params for a in n.all_input_nodes):
            reads_params.add(n)
    return decompose_missing(graph, [n for n in graph.nodes
                                     if missing_converter(n) and n not in folded and n.target not in KEEP_WHOLE],
                             host={n for n in graph.nodes if n not in reads_params})


def _signature(ep, inputs):
    """The graph without its assertions, and (params, constants, user inputs) by placeholder."""
    graph = ep.graph_module.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target in ASSERTS:
            graph.erase_node(node)
    by_name = {n.name: n for n in graph.nodes if n.op == "placeholder"}
    params, constants, user_specs = {}, {}, []
    state = ep.state_dict
    for spec in ep.graph_signature.input_specs:
        node = by_name.get(spec.arg.name) if hasattr(spec.arg, "name") else None
        if node is None:
            continue
        if spec.kind == InputKind.PARAMETER:
            params[node] = Param(node, spec.target, state[spec.target])
        elif spec.kind == InputKind.BUFFER:
            constants[node] = state[spec.target] if spec.target in state else ep.constants[spec.target]
        elif spec.kind in (InputKind.CONSTANT_TENSOR, InputKind.CUSTOM_OBJ):
            constants[node] = ep.constants[spec.target]
        elif spec.kind == InputKind.USER_INPUT and isinstance(spec.arg, TensorArgument):
            user_specs.append(node)
    user_inputs = OrderedDict()
    names = list(inputs)
    spec_names = [n.name for n in user_specs]
    if set(names) <= set(spec_names):
        for name in names:
            user_inputs[by_name[name]] = name
    elif len(names) == len(user_specs):
        for node, name in zip(user_specs, names):
            user_inputs[node] = name
    else:
        raise ConversionError(f"cannot match the inputs {names} to the captured graph's inputs {spec_names}")
    return graph, (params, constants, user_inputs)


def _run_pass(fn, *args):
    """Run one pass; anything it raises becomes a CaptureError naming the pass."""
    try:
        return fn(*args)
    except FlexFlowTorchError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CaptureError(f"the graph pass {fn.__name__} failed ({type(exc).__name__}: {exc}). What to do: "
                           "please report this with the model; flexflow_torch.analyze lists what converts") from exc


def ties_first(ties, params):
    fqns = set(ties)
    return {n for n, p in params.items() if p.fqn in fqns}
