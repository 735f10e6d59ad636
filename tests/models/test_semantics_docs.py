"""The documented rules are the rules: runtime/LIMITS.md is generated from
flexflow_torch/semantics and must match it."""

from flexflow_torch.semantics import limits


def test_limits_md_is_generated_from_the_rules():
    assert limits.LIMITS.read_text(encoding="utf-8") == limits.render(), (
        "regenerate: python -m flexflow_torch.semantics.limits > flexflow_torch/runtime/LIMITS.md")


def test_every_rule_names_its_flexflow_source():
    from flexflow_torch.semantics import dense, elementwise, lint, model, norm, reduction, shape
    for module in (dense, elementwise, lint, model, norm, reduction, shape):
        for owner, when, message, source in limits.rules_of(module):
            assert source.startswith(("src/", "python/", "config/", "include/")), (owner, message, source)
