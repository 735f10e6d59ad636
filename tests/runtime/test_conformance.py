"""The embedded runtime's API against FlexFlow's real one
(tests/contract/ffmodel_signatures.json, extracted from FlexFlow's source at 89f10f4;
tests/contract/test_flexflow_api_facts.py checks it against the released source):
parameter names, order, kinds and defaults of every method, properties, op wrapper
classes and enums."""

import dataclasses
import enum
import inspect
import sys
from pathlib import Path

import pytest

import flexflow_torch.runtime as rt
from flexflow_torch.runtime import enums as rt_enums

# The facts and the signature comparison live with the contract tests (tests/contract).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from flexflow_facts import default_matches, signature_problems, vendored_signatures  # noqa: E402

SIGS = vendored_signatures()
CLASSES = SIGS["classes"]


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
        problems += signature_problems(f"{class_name}.{mname}", func, minfo["params"], rt)
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
            elif not default_matches(pinfo["default"], fields[pname].default, rt):
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
            problems += signature_problems(f"{class_name}.{pname}.setter", prop.fset,
                                           pinfo["setter_params"], rt)
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
