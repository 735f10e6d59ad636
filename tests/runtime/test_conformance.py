"""The embedded runtime's API against FlexFlow's real one
(/work/shared/flexflow-api/ffmodel_signatures.json, extracted from FlexFlow's source):
parameter names, order, kinds and defaults of every method, properties, op wrapper
classes and enums."""

import ast
import dataclasses
import enum
import inspect
import json
import os
from pathlib import Path

import pytest

import flexflow_torch.runtime as rt
from flexflow_torch.runtime import enums as rt_enums

_CANDIDATES = [os.environ.get("FLEXFLOW_API_JSON", ""),
               "/work/shared/flexflow-api/ffmodel_signatures.json",
               str(Path(__file__).resolve().parents[2] / "shared/flexflow-api/ffmodel_signatures.json")]
SIG_PATH = next((p for p in _CANDIDATES if p and os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(SIG_PATH is None, reason="FlexFlow signature file not found")
SIGS = json.load(open(SIG_PATH)) if SIG_PATH else {"classes": {}, "op_wrapper_classes": {},
                                                     "enums": {}}
CLASSES = SIGS["classes"]

_KINDS = {"positional_or_keyword": inspect.Parameter.POSITIONAL_OR_KEYWORD,
          "positional_only": inspect.Parameter.POSITIONAL_ONLY,
          "keyword_only": inspect.Parameter.KEYWORD_ONLY,
          "var_positional": inspect.Parameter.VAR_POSITIONAL,
          "var_keyword": inspect.Parameter.VAR_KEYWORD}


def _default_matches(expected_src, actual):
    """Compare a default written in FlexFlow's source with the runtime's value."""
    try:
        literal = ast.literal_eval(expected_src)
    except (ValueError, SyntaxError):
        literal = inspect.Parameter.empty
    if literal is not inspect.Parameter.empty:
        return type(literal) is type(actual) and literal == actual
    if isinstance(actual, enum.Enum):             # e.g. ActiMode.AC_MODE_NONE
        return expected_src == f"{type(actual).__name__}.{actual.name}"
    if expected_src.endswith("()"):                # e.g. RotaryEmbeddingMeta()
        cls = getattr(rt, expected_src[:-2])
        return isinstance(actual, cls) and actual == cls()
    return False


def _signature_problems(qualname, func, expected_params):
    sig = inspect.signature(func)
    actual = list(sig.parameters.values())
    problems = []
    names = [p.name for p in actual]
    expected_names = [p["name"] for p in expected_params]
    if names != expected_names:
        return [f"{qualname}: parameters {names} != FlexFlow's {expected_names}"]
    for exp, act in zip(expected_params, actual):
        if _KINDS[exp["kind"]] != act.kind:
            problems.append(f"{qualname}({act.name}): kind {act.kind} != {exp['kind']}")
        if "default" not in exp:
            if act.default is not inspect.Parameter.empty:
                problems.append(f"{qualname}({act.name}): has default {act.default!r}, "
                                "FlexFlow's parameter is required")
        elif act.default is inspect.Parameter.empty:
            problems.append(f"{qualname}({act.name}): required, FlexFlow defaults to "
                            f"{exp['default']}")
        elif not _default_matches(exp["default"], act.default):
            problems.append(f"{qualname}({act.name}): default {act.default!r} != "
                            f"FlexFlow's {exp['default']}")
    return problems


@pytest.mark.parametrize("class_name", sorted(CLASSES))
def test_class_exists(class_name):
    assert inspect.isclass(getattr(rt, class_name, None)), f"{class_name} missing from runtime"


@pytest.mark.parametrize("class_name", sorted(CLASSES))
def test_methods_present_with_flexflow_signatures(class_name):
    cls = getattr(rt, class_name)
    info = CLASSES[class_name]
    missing, problems = [], []
    for mname, minfo in info["methods"].items():
        if class_name == "RotaryEmbeddingMeta":
            continue
        func = cls.__dict__.get(mname) if mname == "__init__" else getattr(cls, mname, None)
        if func is None and mname == "__init__":
            func = cls.__init__
        if func is None or not callable(func):
            missing.append(mname)
            continue
        problems += _signature_problems(f"{class_name}.{mname}", func, minfo["params"])
    assert not missing, f"{class_name} lacks FlexFlow methods: {missing}"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("class_name", sorted(CLASSES))
def test_properties(class_name):
    cls = getattr(rt, class_name)
    problems = []
    for pname, pinfo in CLASSES[class_name]["properties"].items():
        if pinfo.get("is_field"):                       # dataclass field
            fields = {f.name: f for f in dataclasses.fields(cls)}
            if pname not in fields:
                problems.append(f"{pname}: not a field")
            elif not _default_matches(pinfo["default"], fields[pname].default):
                problems.append(f"{pname}: default {fields[pname].default!r} != {pinfo['default']}")
            continue
        prop = inspect.getattr_static(cls, pname, None)
        if not isinstance(prop, property):
            problems.append(f"{pname}: not a property")
            continue
        if bool(pinfo.get("getter")) != (prop.fget is not None):
            problems.append(f"{pname}: getter presence differs from FlexFlow")
        if bool(pinfo.get("setter")) != (prop.fset is not None):
            problems.append(f"{pname}: setter presence differs from FlexFlow")
        if pinfo.get("setter_params") and prop.fset is not None:
            problems += _signature_problems(f"{class_name}.{pname}.setter", prop.fset,
                                            pinfo["setter_params"])
    assert not problems, f"{class_name}: " + "; ".join(problems)


def test_all_core_methods_exist():
    """Every method of FFModel, Tensor and Parameter exists (serving ones raise)."""
    missing = [f"{c}.{m}" for c in ("FFModel", "Tensor", "Parameter", "FFConfig", "Op",
                                    "SingleDataLoader")
               for m in CLASSES[c]["methods"] if not hasattr(getattr(rt, c), m)]
    assert missing == []


@pytest.mark.parametrize("wrapper", sorted(SIGS["op_wrapper_classes"]))
def test_op_wrapper_class(wrapper):
    info = SIGS["op_wrapper_classes"][wrapper]
    cls = getattr(rt, wrapper, None)
    assert inspect.isclass(cls), f"op wrapper class {wrapper} missing from runtime"
    assert issubclass(cls, rt.Op)
    for m in info["extra_methods"]:
        func = getattr(cls, m, None)
        assert callable(func), f"{wrapper}.{m} missing"
        assert list(inspect.signature(func).parameters) == ["self"]


def test_op_type_to_wrapper_mapping():
    """Ops the runtime builds are wrapped in the class FlexFlow's mapper would pick."""
    from flexflow_torch.runtime.layers import WRAPPERS
    for op_type, cls in WRAPPERS.items():
        entry = SIGS["op_type_to_wrapper_class"].get(op_type.name)
        assert entry is not None, op_type
        assert cls.__name__ == entry["class"], op_type


@pytest.mark.parametrize("enum_name", sorted(SIGS["enums"]))
def test_enum_members(enum_name):
    cls = getattr(rt_enums, enum_name, None)
    assert cls is not None and issubclass(cls, enum.Enum)
    expected = {m["name"]: m["value"] for m in SIGS["enums"][enum_name]}
    actual = {m.name: m.value for m in cls}
    assert actual == expected
    assert getattr(rt, enum_name) is cls


def test_no_extra_enums():
    runtime_enums = {n for n, v in vars(rt_enums).items()
                     if inspect.isclass(v) and issubclass(v, enum.Enum) and v is not enum.Enum
                     and v.__module__ == rt_enums.__name__}
    assert runtime_enums == set(SIGS["enums"])


def test_enum_helpers():
    assert rt.enum_to_int(rt.ActiMode, rt.ActiMode.AC_MODE_RELU) == 11
    assert rt.int_to_enum(rt.DataType, 44) is rt.DataType.DT_FLOAT
    assert rt.enum_to_str(rt.LossType, rt.LossType.LOSS_IDENTITY) == "LOSS_IDENTITY"
    assert rt.str_to_enum(rt.PoolType, "POOL_AVG") is rt.PoolType.POOL_AVG
    with pytest.raises(TypeError):
        rt.enum_to_int(rt.ActiMode, 11)       # raw ints are not enum members


def test_star_import_exposes_api():
    ns = {}
    exec("from flexflow_torch.core import *", ns)
    for name in ("FFConfig", "FFModel", "Tensor", "Parameter", "SGDOptimizer",
                 "AdamOptimizer", "init_flexflow_runtime", "ActiMode", "DataType",
                 "LossType", "MetricsType", "ParameterSyncType", "PoolType", "AggrMode",
                 "GlorotUniformInitializer", "SingleDataLoader", "Op"):
        assert name in ns, name
