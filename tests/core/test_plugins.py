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
from hybridrec.testing.cli import run_cli as _run_cli_in_process
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


cli_in_process = _run_cli_in_process


def test_options_prints_each_option_with_type_default_and_description(capsys):
    code, out, _ = cli_in_process(capsys, "plugins", "--options", "lora")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("fine_tuner lora (hybridrec ") and "built-in" in lines[0]
    assert "  r: int = 8  [ge=1]" in lines
    assert "  mode: Literal['lora', 'full'] = \"lora\"" in lines
    at = lines.index("  lr: float = 0.002  [gt=0]")
    assert lines[at + 1].strip().startswith("Learning rate of a fine-tune")
    code, out, _ = cli_in_process(capsys, "plugins", "--options", "hf")
    assert "  tiny.num_layers: int = 2  [ge=1]" in out.splitlines()  # nested model, flattened


def test_options_json_is_machine_readable(capsys):
    code, out, _ = cli_in_process(capsys, "plugins", "--options", "static", "--json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["role"], doc["name"], doc["builtin"]) == ("update_policy", "static", True)
    option = {o["name"]: o for o in doc["options"]}["train_days"]
    assert option == {"name": "train_days", "type": "float", "default": 30.0, "required": False,
                      "description": "Fine-tune window length.", "constraints": {"gt": 0}}
    assert doc["json_schema"]["properties"]["train_days"]["default"] == 30.0


def test_options_of_an_unknown_name_is_one_line_exit_2_with_suggestions(capsys):
    code, out, err = cli_in_process(capsys, "plugins", "--options", "lroa")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("Error: unknown plugin 'lroa' (did you mean 'lora'")


class LoraNamedPolicy:
    @hookimpl
    def register_update_policies(self, register):
        class Clash(NeverPolicy):
            name: ClassVar[str] = "lora"

        register(Clash)


def test_options_of_an_ambiguous_name_asks_for_a_role(capsys, hybridrec_plugin):
    hybridrec_plugin(LoraNamedPolicy(), name="same-name")
    code, _, err = cli_in_process(capsys, "plugins", "--options", "lora")
    assert code == 2 and "several roles (fine_tuner, update_policy)" in err and "--role" in err
    code, out, _ = cli_in_process(capsys, "plugins", "--options", "lora", "--role", "update_policy")
    assert code == 0 and out.startswith("update_policy lora (registered in code, third-party)")
    assert "  period_days: int = 2" in out.splitlines()


def test_the_fixture_moves_an_installed_plugin_aside_and_restores_it(hybridrec_plugin):
    import hybridrec_hf

    plugins.registry()  # entry points loaded: hybridrec_hf is registered as "hf"
    assert hybridrec_plugin(hybridrec_hf) == "hf"  # the installed module again: no error
    assert hybridrec_plugin(hybridrec_hf, name="hf-under-test") == "hf-under-test"
    assert plugins.registry().info("generator", "hf").plugin == "hf-under-test"
    plugins.register_plugin(GoodPlugin(), name="registered-directly")
    assert plugins.get("update_policy", "test-never") is NeverPolicy


def test_the_fixture_restored_the_installed_plugin_and_undid_the_rest():
    import hybridrec_hf

    pm = plugins.get_plugin_manager()
    assert pm.get_plugin("hf") is hybridrec_hf
    assert pm.get_plugin("hf-under-test") is None and pm.get_plugin("registered-directly") is None
    assert plugins.registry().info("generator", "hf").plugin == "hf"
    with pytest.raises(UnknownPluginError):
        plugins.get("update_policy", "test-never")


def test_the_fixture_displaces_another_plugin_holding_the_name(hybridrec_plugin):
    plugins.registry()
    hybridrec_plugin(GoodPlugin(), name="hf")
    assert plugins.get("update_policy", "test-never") is NeverPolicy
    with pytest.raises(UnknownPluginError):
        plugins.get("generator", "hf")
