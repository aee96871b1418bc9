import pytest

from specgrove import registry
from specgrove.registry import UnknownPolicyError, register


def test_every_kind_and_expected_names():
    assert set(registry.names("tree")) >= {"ar", "chain", "static", "sequoia", "dynamic", "dynamic-cost"}
    assert set(registry.names("batch-budget")) >= {"uniform", "greedy-global"}
    for e in registry.entries():
        assert e.description, f"{e.kind}/{e.name} has no one-line description"


def test_unknown_name_lists_valid():
    with pytest.raises(UnknownPolicyError, match="unknown tree policy 'bogus'; valid: .*dynamic"):
        registry.get("tree", "bogus")


def test_unknown_kind():
    with pytest.raises(UnknownPolicyError, match="unknown policy kind 'nope'"):
        registry.get("nope", "x")
    with pytest.raises(UnknownPolicyError):
        register("nope", "x")


def test_double_registration_rejected():
    @register("router", "test-only-router")
    def first():
        """A test router."""

    with pytest.raises(ValueError, match="registered twice"):

        @register("router", "test-only-router")
        def second():
            """Another."""

    assert registry.get("router", "test-only-router") is first
    registry._REGISTRY["router"].pop("test-only-router")
