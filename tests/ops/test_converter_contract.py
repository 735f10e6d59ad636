"""Contract of the built-in converters (ExecuTorch / onnxscript style): each one's
parameters are its overloads' schema arguments, its docstring starts with exactly their
schemas, and every registered overload has a row in the op table."""

import inspect

import pytest
import torch

from flexflow_torch import registry

from op_table import ROWS

ENTRIES = registry.builtin_entries()
FUNCTIONS = {}
for _target, _entry in ENTRIES.items():
    FUNCTIONS.setdefault(_entry.fn, []).append(_target)


def _name(fn):
    return f"{fn.__module__}.{fn.__name__}"


def _header_schemas(fn):
    """The schemas at the top of the docstring (up to the first blank line), parsed."""
    doc = inspect.getdoc(fn) or ""
    schemas = []
    for line in doc.split("\n\n")[0].splitlines():
        text = line.split("   ")[0].strip()
        if "::" not in text.split("(")[0]:
            text = "aten::" + text
        schemas.append(torch._C.parse_schema(text))
    return schemas


@pytest.mark.parametrize("fn", list(FUNCTIONS), ids=_name)
def test_parameters_are_the_schema_arguments(fn):
    params = [p for p in inspect.signature(fn).parameters][1:]
    for target in FUNCTIONS[fn]:
        names = [a.name for a in target._schema.arguments]
        assert params == names, f"{registry.target_name(target)}: parameters {params}, schema {names}"


@pytest.mark.parametrize("fn", list(FUNCTIONS), ids=_name)
def test_docstring_starts_with_the_schemas(fn):
    got = _header_schemas(fn)
    want = [t._schema for t in FUNCTIONS[fn]]
    assert sorted(map(str, got)) == sorted(map(str, want)), (
        f"docstring schemas {[str(s) for s in got]}, registered {[str(s) for s in want]}")


def test_every_registered_overload_has_a_test():
    tested = {registry.target_name(k) for case in ROWS for k in case.aten}
    missing = sorted(registry.target_name(t) for t in ENTRIES if registry.target_name(t) not in tested)
    assert not missing, f"overloads without a row in tests/ops/op_table.py: {missing}"


def test_every_registry_key_is_an_operator_with_a_schema():
    assert all(isinstance(t, torch._ops.OpOverload) for t in registry.registered_targets())
