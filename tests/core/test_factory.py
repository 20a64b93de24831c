"""One factory builds every plugin: options validated at construction, the catalog where due."""

from __future__ import annotations

import pytest

from hybridrec.config import PluginRef
from hybridrec.errors import ConfigError, PluginError
from hybridrec.interfaces import KnowledgeStore, UpdatePolicy
from hybridrec.plugins import CATALOG_ROLES, build, registry
from hybridrec.types import ClusterCatalog

CATALOG = ClusterCatalog.from_descriptions(["a", "b", "c", "d"])


@pytest.mark.parametrize("ref", [
    PluginRef(plugin="hybrid", options={"rag_every_days": 3}),
    {"plugin": "hybrid", "options": {"rag_every_days": 3}},
])
def test_a_reference_builds_an_instance_with_its_options_model(ref: object) -> None:
    policy = build("update_policy", ref)  # type: ignore[arg-type]
    assert isinstance(policy, UpdatePolicy)
    assert isinstance(policy.options, type(policy).Options)
    assert policy.options.rag_every_days == 3


def test_a_name_alone_builds_with_the_defaults() -> None:
    assert build("update_policy", "static").options == registry().get("update_policy", "static").Options()


def test_a_bad_option_names_the_role_the_plugin_and_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        build("update_policy", {"plugin": "hybrid", "options": {"rag_every_days": "often"}}, source="here")
    message = str(info.value)
    assert message.startswith("here: ")
    assert "update_policy plugin 'hybrid'" in message and "[update_policy.options] rag_every_days" in message


def test_a_dict_passed_to_a_constructor_becomes_the_options_model() -> None:
    cls = registry().get("update_policy", "hybrid")
    assert cls({"rag_every_days": 5}).options.rag_every_days == 5
    with pytest.raises(ConfigError, match=r"update_policy plugin 'hybrid'.*\n.*no_such_field"):
        cls({"no_such_field": 1})
    with pytest.raises(ConfigError, match="must be a mapping"):
        cls(42)  # type: ignore[arg-type]


def test_the_factory_knows_which_roles_take_the_catalog() -> None:
    assert {"generator", "knowledge_store"} == CATALOG_ROLES
    store = build("knowledge_store", "exact", CATALOG)
    assert isinstance(store, KnowledgeStore) and store.catalog is CATALOG
    assert isinstance(build("cost_model", "flops", CATALOG), registry().get("cost_model", "flops"))
    with pytest.raises(PluginError, match="catalog"):
        build("knowledge_store", "exact")


def test_an_unknown_plugin_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match=r"\[generator\] unknown generator 'nope'.*hf"):
        build("generator", "nope", CATALOG)
