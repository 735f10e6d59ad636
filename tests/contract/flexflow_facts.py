"""Facts read from FlexFlow's Python sources with ``ast`` (nothing of FlexFlow is
imported), in the schema of ``ffmodel_signatures.json``, and the comparison of a
FlexFlow signature with a Python callable (used by tests/runtime/test_conformance.py).

``ffmodel_signatures.json`` (beside this file) holds the facts of commit 89f10f4
(24.9.1+13), the revision the embedded runtime follows. The downloaded release 24.9.1
has the same training API; ``SERVING_DIFFERENCES`` lists the methods whose signatures
differ, all of them serving-only."""

import ast
import enum
import inspect
import json
import warnings
from pathlib import Path

SIGNATURES_JSON = Path(__file__).resolve().parent / "ffmodel_signatures.json"

# The classes of FlexFlow's training API (flexflow/core/flexflow_cffi.py).
TRAINING_CLASSES = ("FFConfig", "FFModel", "Tensor", "Parameter", "SGDOptimizer", "AdamOptimizer", "Initializer",
                    "GlorotUniformInitializer", "ZeroInitializer", "UniformInitializer", "NormInitializer", "Op",
                    "SingleDataLoader", "PerfMetrics")
# Where 24.9.1 differs from 89f10f4: the serving attention builders (89f10f4 replaced
# bias/add_bias_kv/apply_rotary_embedding by rotary_embedding_meta), generate_inf_only
# (89f10f4 takes max_length/max_new_tokens) and the RotaryEmbeddingMeta class (new in 89f10f4).
SERVING_DIFFERENCES = frozenset({
    "RotaryEmbeddingMeta",
    "FFModel.inc_multihead_self_attention", "FFModel.spec_inc_multihead_self_attention",
    "FFModel.inc_multihead_self_attention_verify", "FFModel.inc_multiquery_self_attention",
    "FFModel.spec_inc_multiquery_self_attention", "FFModel.inc_multiquery_self_attention_verify",
    "FFModel.generate_inf_only",
})

_KINDS = {"positional_or_keyword": inspect.Parameter.POSITIONAL_OR_KEYWORD,
          "positional_only": inspect.Parameter.POSITIONAL_ONLY,
          "keyword_only": inspect.Parameter.KEYWORD_ONLY,
          "var_positional": inspect.Parameter.VAR_POSITIONAL,
          "var_keyword": inspect.Parameter.VAR_KEYWORD}


def _parse(path):
    with warnings.catch_warnings():              # FlexFlow's docstrings hold invalid escapes
        warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
        return ast.parse(Path(path).read_text())


def vendored_signatures():
    return json.loads(SIGNATURES_JSON.read_text())


def extract_classes(path, names):
    """{class: {"methods": {name: params}, "properties": {name: (getter, setter)}}} for the
    named classes of a FlexFlow source file; ``params`` as in the JSON file."""
    tree = _parse(path)
    classes = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in names:
            classes[node.name] = _class_facts(node)
    return classes


def _class_facts(node):
    methods, properties = {}, {}
    for item in node.body:
        if isinstance(item, ast.FunctionDef):
            decorators = [ast.unparse(d) for d in item.decorator_list]
            if "property" in decorators:
                properties[item.name] = (True, properties.get(item.name, (False, False))[1])
            elif any(d.endswith(".setter") for d in decorators):
                properties[item.name] = (properties.get(item.name, (False, False))[0], True)
            elif not item.name.startswith("_") or item.name == "__init__":
                methods[item.name] = _params(item.args)
        elif isinstance(item, ast.Assign) and isinstance(item.value, ast.Call) \
                and ast.unparse(item.value.func) == "property":
            keywords = {k.arg for k in item.value.keywords} | ({"fget"} if item.value.args else set())
            properties[item.targets[0].id] = ("fget" in keywords, "fset" in keywords)
    return {"methods": methods, "properties": properties}


def _params(args):
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + args.defaults
    params = [_param(a, "positional_only" if i < len(args.posonlyargs) else "positional_or_keyword", d)
              for i, (a, d) in enumerate(zip(positional, defaults))]
    if args.vararg:
        params.append(_param(args.vararg, "var_positional", None))
    params += [_param(a, "keyword_only", d) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        params.append(_param(args.kwarg, "var_keyword", None))
    return params


def _param(arg, kind, default):
    param = {"name": arg.arg, "kind": kind}
    if default is not None:
        param["default"] = ast.unparse(default)
    return param


def json_class_facts(info):
    """The same facts from an entry of ffmodel_signatures.json."""
    methods = {name: [{k: p[k] for k in ("name", "kind", "default") if k in p} for p in m["params"]]
               for name, m in info["methods"].items()}
    properties = {name: (bool(p.get("getter")), bool(p.get("setter")))
                  for name, p in info["properties"].items() if not p.get("is_field")}
    return {"methods": methods, "properties": properties}


def same_params(a, b):
    """Parameter lists equal, defaults compared as expressions (quotes may differ)."""
    def norm(params):
        return [(p["name"], p["kind"], ast.dump(ast.parse(p["default"], mode="eval")) if "default" in p else None)
                for p in params]
    return norm(a) == norm(b)


def extract_enums(path):
    """{Enum subclass: [{"name", "value"}]} of flexflow/type.py."""
    tree = _parse(path)
    enums = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b) == "Enum" for b in node.bases):
            enums[node.name] = [{"name": t.id, "value": ast.literal_eval(item.value)}
                                for item in node.body if isinstance(item, ast.Assign) for t in item.targets]
    return enums


def module_literal(path, name):
    """The literal assigned to a module-level name (e.g. ff_arg_to_sysarg)."""
    for node in _parse(path).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{path} assigns no {name}")


def function_literal(path, function, name):
    """The literal assigned to ``name`` inside a module-level function."""
    for node in _parse(path).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for item in ast.walk(node):
                if isinstance(item, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name
                                                        for t in item.targets):
                    return ast.literal_eval(item.value)
    raise LookupError(f"{path}: {function}() assigns no {name}")


def default_matches(expected_src, actual, namespace):
    """Compare a default written in FlexFlow's source with a runtime value; names such
    as ``RotaryEmbeddingMeta`` are looked up in ``namespace``."""
    try:
        literal = ast.literal_eval(expected_src)
    except (ValueError, SyntaxError):
        literal = inspect.Parameter.empty
    if literal is not inspect.Parameter.empty:
        return type(literal) is type(actual) and literal == actual
    if isinstance(actual, enum.Enum):                # e.g. ActiMode.AC_MODE_NONE
        return expected_src == f"{type(actual).__name__}.{actual.name}"
    if expected_src.endswith("()"):                   # e.g. RotaryEmbeddingMeta()
        cls = getattr(namespace, expected_src[:-2])
        return isinstance(actual, cls) and actual == cls()
    return False


def signature_problems(qualname, func, expected_params, namespace):
    """Differences between ``func``'s signature and FlexFlow's parameter list."""
    actual = list(inspect.signature(func).parameters.values())
    names, expected_names = [p.name for p in actual], [p["name"] for p in expected_params]
    if names != expected_names:
        return [f"{qualname}: parameters {names} != FlexFlow's {expected_names}"]
    problems = []
    for exp, act in zip(expected_params, actual):
        if _KINDS[exp["kind"]] != act.kind:
            problems.append(f"{qualname}({act.name}): kind {act.kind} != {exp['kind']}")
        if "default" not in exp:
            if act.default is not inspect.Parameter.empty:
                problems.append(f"{qualname}({act.name}): has default {act.default!r}, "
                                "FlexFlow's parameter is required")
        elif act.default is inspect.Parameter.empty:
            problems.append(f"{qualname}({act.name}): required, FlexFlow defaults to {exp['default']}")
        elif not default_matches(exp["default"], act.default, namespace):
            problems.append(f"{qualname}({act.name}): default {act.default!r} != FlexFlow's {exp['default']}")
    return problems


def broken_python_methods(cffi_py, declared, defined, aborting):
    """{"Class.method": reason} for the methods of flexflow_cffi.py that cannot work on
    the real library: they call a C function that is missing, that aborts at once, or
    with the wrong number of arguments (directly or through a private method)."""
    tree = _parse(cffi_py)
    broken, private_calls = {}, {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for method in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            key = f"{cls.name}.{method.name}"
            for node in ast.walk(method):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    reason = _call_problem(node, declared, defined, aborting)
                    if reason:
                        broken.setdefault(key, reason)
                    if ast.unparse(node.func.value) == "self" and node.func.attr.startswith("__"):
                        private_calls.setdefault(key, set()).add(f"{cls.name}.{node.func.attr}")
    changed = True
    while changed:
        changed = False
        for key, callees in private_calls.items():
            for callee in callees:
                if callee in broken and key not in broken:
                    broken[key] = f"through {callee.split('.')[1]}: {broken[callee]}"
                    changed = True
    return broken


def _call_problem(node, declared, defined, aborting):
    func = node.func
    if not (isinstance(func.value, ast.Call) and ast.unparse(func.value.func) == "ffc"):
        return None
    name = func.attr
    if name not in declared or name not in defined:
        return f"{name} is not a function of libflexflow"
    if name in aborting:
        return f"{name}'s body is assert(false)"
    arity = len(declared[name][1])
    if not any(isinstance(a, ast.Starred) for a in node.args) and len(node.args) != arity:
        return f"{name} takes {arity} arguments, the call passes {len(node.args)}"
    return None
