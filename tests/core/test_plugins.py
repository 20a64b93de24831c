"""The plugin system behaves as docs/architecture.md and docs/writing-plugins.md specify."""

import json
import os
import subprocess
import sys
from typing import ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from hybridrec import hookimpl, plugins
from hybridrec.errors import PluginError, UnknownPluginError
from hybridrec.interfaces import UpdatePolicy
from hybridrec.types import Noop


class EveryOtherOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period_days: int = 2


class NeverPolicy(UpdatePolicy):
    name: ClassVar[str] = "test-never"
    Options: ClassVar[type[BaseModel]] = EveryOtherOptions

    def decide(self, state):
        return [Noop(reason="never")]


class GoodPlugin:
    @hookimpl
    def register_update_policies(self, register):
        register(NeverPolicy, aliases=["test-nothing"])


class RaisingPlugin:
    @hookimpl
    def register_update_policies(self, register):
        raise RuntimeError("boom in registration")


class TypoPlugin:
    @hookimpl
    def register_update_polices(self, register):  # misspelt on purpose
        pass


class NotAPolicy:
    name = "not-a-policy"


class WrongClassPlugin:
    @hookimpl
    def register_update_policies(self, register):
        register(NotAPolicy)


def run_cli(*args, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hybridrec", *args], capture_output=True, text=True, env=full_env,
        timeout=120,
    )


def test_builtins_are_registered_through_entry_points():
    infos = list(plugins.registry().all())
    local = plugins.registry().info("executor", "local")
    assert local.builtin and local.distribution == "hybridrec"
    assert local.plugin == "executors"  # the entry-point name, not a special path
    assert all(i.role in {"generator", "fine_tuner", "knowledge_store", "update_policy",
                          "cost_model", "dataset", "executor"} for i in infos)


def test_fixture_registers_for_one_test_only(hybridrec_plugin):
    hybridrec_plugin(GoodPlugin(), name="good")
    assert plugins.get("update_policy", "test-never") is NeverPolicy
    assert plugins.get("update_policy", "test-nothing") is NeverPolicy  # alias
    info = plugins.registry().info("update_policy", "test-never")
    assert not info.builtin


def test_fixture_cleaned_up_after_previous_test():
    with pytest.raises(UnknownPluginError):
        plugins.get("update_policy", "test-never")


def test_unknown_name_lists_available_names():
    with pytest.raises(UnknownPluginError, match=r"available executor plugins: .*local"):
        plugins.get("executor", "nope")


def test_raising_plugin_is_reported_and_others_still_load(hybridrec_plugin):
    hybridrec_plugin(RaisingPlugin(), name="raising")
    hybridrec_plugin(GoodPlugin(), name="good")
    reg = plugins.registry()
    assert reg.get("update_policy", "test-never") is NeverPolicy
    failures = [e for e in reg.errors if e.plugin == "raising"]
    assert failures and "boom in registration" in failures[0].error
    assert failures[0].stage == "register_update_policies"


def test_wrong_base_class_is_reported_by_plugin(hybridrec_plugin):
    hybridrec_plugin(WrongClassPlugin(), name="wrong")
    errors = [e for e in plugins.registry().errors if e.plugin == "wrong"]
    assert errors and "not a subclass of hybridrec.interfaces.UpdatePolicy" in errors[0].error


def test_duplicate_name_is_reported(hybridrec_plugin):
    hybridrec_plugin(GoodPlugin(), name="good-1")
    hybridrec_plugin(GoodPlugin(), name="good-2")
    errors = plugins.registry().errors
    assert any("clashes" in e.error for e in errors)


def test_misspelt_hook_fails_at_start_up():
    with pytest.raises(PluginError, match="register_update_polices"):
        plugins.register_plugin(TypoPlugin(), name="typo")
    plugins.get_plugin_manager().unregister(name="typo")
    plugins.reset_registry()


def test_cli_lists_builtins_as_json():
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {"role", "name", "builtin", "version", "distribution"} <= set(rows[0])
    assert any(r["role"] == "executor" and r["name"] == "local" and r["builtin"] for r in rows)


def test_load_plugins_env_restricts_and_autoload_can_be_disabled():
    only = json.loads(run_cli("plugins", "--json", env={"HYBRIDREC_LOAD_PLUGINS": "executors"}).stdout)
    assert {r["plugin"] for r in only} == {"executors"}
    none = run_cli("plugins", "--json", env={"HYBRIDREC_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert json.loads(none.stdout) == []


def test_tracing_prints_every_hook_call():
    result = run_cli(
        "plugins", "--json",
        env={"HYBRIDREC_TRACE_HOOKS": "1", "HYBRIDREC_LOAD_PLUGINS": "executors"},
    )
    assert "[hybridrec hook] register_executors(" in result.stderr
    assert "returned" in result.stderr


def test_registering_an_already_registered_module_is_a_plugin_error() -> None:
    import hybridrec_hf

    from hybridrec import plugins
    from hybridrec.errors import PluginError

    plugins.registry()  # loads the entry points: hybridrec_hf is registered as "hf"
    with pytest.raises(PluginError, match=r"already registered as 'hf'.*look its plugins up by name"):
        plugins.register_plugin(hybridrec_hf, name="hf-again")
