"""The facts behind the embedded runtime's FlexFlow semantics, read from FlexFlow's
downloaded source (release 24.9.1) and compared, so that they cannot drift:
signatures (through ffmodel_signatures.json, which test_conformance checks against the
runtime), enum values, ``init_flexflow_runtime``'s keys, and which API methods cannot
work because their C function aborts, is missing or is called with the wrong arity."""

import enum
import inspect

import pytest

import flexflow_torch.runtime as rt
from flexflow_torch.runtime.config import ensure_runtime
from flexflow_torch.errors import FlexFlowTorchError
from flexflow_torch.runtime import config as rt_config
from flexflow_torch.runtime import enums as rt_enums

import flexflow_facts as facts
from ffstandin import csource

VENDORED = facts.vendored_signatures()


@pytest.fixture(scope="module")
def source_classes(flexflow_source):
    return facts.extract_classes(flexflow_source.cffi_py, set(VENDORED["classes"]))


@pytest.fixture(scope="module")
def c_api(flexflow_source):
    header = facts.module_literal(flexflow_source.path("python/flexflow/core/flexflow_cffi_header.py"),
                                  "flexflow_header")
    cc = flexflow_source.c_source.read_text()
    return csource.declared_functions(header), csource.defined_functions(cc), csource.aborting_functions(cc)


def _differences(source_classes):
    found = set()
    for name, info in VENDORED["classes"].items():
        if name not in source_classes:
            found.add(name)
            continue
        vendored, downloaded = facts.json_class_facts(info), source_classes[name]
        for method in set(vendored["methods"]) | set(downloaded["methods"]):
            a, b = vendored["methods"].get(method), downloaded["methods"].get(method)
            if a is None or b is None or not facts.same_params(a, b):
                found.add(f"{name}.{method}")
        found |= {f"{name}.{p}" for p in set(vendored["properties"]) ^ set(downloaded["properties"])}
        found |= {f"{name}.{p}" for p in set(vendored["properties"]) & set(downloaded["properties"])
                  if vendored["properties"][p] != downloaded["properties"][p]}
    return found


def test_vendored_signatures_differ_from_the_release_only_in_serving(source_classes):
    """ffmodel_signatures.json (89f10f4) and release 24.9.1 agree on the training API."""
    assert _differences(source_classes) == facts.SERVING_DIFFERENCES


@pytest.mark.parametrize("class_name", facts.TRAINING_CLASSES)
def test_runtime_signatures_follow_the_release(source_classes, class_name):
    """Names, order, kinds and defaults of every method, straight from 24.9.1's source."""
    cls = getattr(rt, class_name)
    problems = []
    for method, params in source_classes[class_name]["methods"].items():
        if f"{class_name}.{method}" in facts.SERVING_DIFFERENCES:
            continue
        func = cls.__dict__.get(method) if method == "__init__" else getattr(cls, method, None)
        if func is None and method == "__init__":
            func = cls.__init__
        if not callable(func):
            problems.append(f"{class_name}.{method} missing")
            continue
        problems += facts.signature_problems(f"{class_name}.{method}", func, params, rt)
    for prop, (getter, setter) in source_classes[class_name]["properties"].items():
        attr = inspect.getattr_static(cls, prop, None)
        if not isinstance(attr, property) or (attr.fget is not None, attr.fset is not None) != (getter, setter):
            problems.append(f"{class_name}.{prop}: property with getter={getter}, setter={setter} expected")
    assert not problems, "\n".join(problems)


def test_enum_values_follow_the_release(flexflow_source):
    runtime = {name: [{"name": m.name, "value": m.value} for m in cls]
               for name, cls in vars(rt_enums).items()
               if inspect.isclass(cls) and issubclass(cls, enum.Enum) and cls.__module__ == rt_enums.__name__}
    assert runtime == facts.extract_enums(flexflow_source.type_py)


def test_init_keys_follow_the_release(flexflow_source):
    """init_flexflow_runtime's key -> flag table (flexflow/core/__init__.py ff_arg_to_sysarg)."""
    assert rt_config._KEY_TO_FLAG == facts.module_literal(flexflow_source.core_init_py, "ff_arg_to_sysarg")


def test_c_functions_that_abort(c_api):
    """Functions whose flexflow_c.cc body is assert(false) (helper: csource.aborting_functions)."""
    declared, defined, aborting = c_api
    assert set(declared) <= set(defined)
    assert aborting == ["flexflow_model_get_parameter_by_id", "flexflow_op_forward", "flexflow_op_init",
                        "flexflow_tensor_is_mapped", "flexflow_tensor_map"]


# How to call, on the embedded runtime, each training-API method that cannot work on
# real FlexFlow; a method missing here makes the next test fail.
_CALLS = {
    "FFModel.map_tensor": lambda m, t, op, cfg: m.map_tensor(t),
    "FFModel.get_tensor_by_id": lambda m, t, op, cfg: m.get_tensor_by_id(0),
    "FFModel.arg_top_k": lambda m, t, op, cfg: m.arg_top_k(t, 1, True, False),
    "Tensor.is_mapped": lambda m, t, op, cfg: t.is_mapped(),
    "Tensor.detach_numpy_array": lambda m, t, op, cfg: t.detach_numpy_array(cfg),
    "Op.init": lambda m, t, op, cfg: op.init(m),
    "Op.forward": lambda m, t, op, cfg: op.forward(m),
}
_RUNTIME_ACCEPTS = {}


def _broken_training_methods(flexflow_source, c_api):
    declared, defined, aborting = c_api
    broken = facts.broken_python_methods(flexflow_source.cffi_py, declared, defined, set(aborting))
    return {k: v for k, v in broken.items()
            if k.split(".")[0] in facts.TRAINING_CLASSES and not k.split(".")[1].startswith("_")}


def test_broken_methods_are_known(flexflow_source, c_api):
    assert set(_broken_training_methods(flexflow_source, c_api)) == set(_CALLS)


@pytest.mark.parametrize("method", [
    pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=_RUNTIME_ACCEPTS[m])) if m in _RUNTIME_ACCEPTS
    else m for m in sorted(_CALLS)])
def test_runtime_refuses_methods_that_cannot_work(method, flexflow_source, c_api, monkeypatch):
    """What aborts or fails on real FlexFlow raises a typed error on the embedded runtime."""
    reason = _broken_training_methods(flexflow_source, c_api)[method]
    monkeypatch.setattr("sys.argv", ["test", "-b", "2"])
    ensure_runtime()
    config = rt.FFConfig()
    model = rt.FFModel(config)
    tensor = model.create_tensor([2, 3], rt.DataType.DT_FLOAT)
    model.dense(tensor, 4, name="fc")
    with pytest.raises(FlexFlowTorchError):
        _CALLS[method](model, tensor, model.get_layer_by_name("fc"), config)
    assert reason
