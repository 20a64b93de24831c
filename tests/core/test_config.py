"""Config loading: precedence, and errors that name the plugin and the field."""

import subprocess
import sys
from typing import ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from hybridrec import hookimpl
from hybridrec.config import EvidenceConfig, PipelineConfig, PluginRef, load_config
from hybridrec.errors import ConfigError
from hybridrec.interfaces import UpdatePolicy
from hybridrec.plugins import resolve_plugin


class PeriodOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period_days: int = 2


class PeriodPolicy(UpdatePolicy):
    name: ClassVar[str] = "test-period"
    Options: ClassVar[type[BaseModel]] = PeriodOptions

    def decide(self, state):
        return []


class Plugin:
    @hookimpl
    def register_update_policies(self, register):
        register(PeriodPolicy)


CONFIG = """
name = "from-file"
[update_policy]
plugin = "test-period"
options = { period_days = 5 }
[executor]
plugin = "local"
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "pipeline.toml"
    path.write_text(CONFIG)
    return path


def test_precedence_cli_over_env_over_file_over_defaults(config_file):
    cfg = load_config(config_file, environ={})
    assert cfg.name == "from-file" and cfg.update_policy.options == {"period_days": 5}
    assert cfg.serving.k == 10  # default
    env = {"HYBRIDREC__UPDATE_POLICY__OPTIONS__PERIOD_DAYS": "7", "HYBRIDREC__NAME": "from-env"}
    cfg = load_config(config_file, environ=env)
    assert cfg.update_policy.options["period_days"] == 7 and cfg.name == "from-env"
    cfg = load_config(config_file, environ=env, overrides=["update_policy.options.period_days=9"])
    assert cfg.update_policy.options["period_days"] == 9 and cfg.name == "from-env"


def test_unknown_plugin_lists_available(hybridrec_plugin, config_file):
    hybridrec_plugin(Plugin(), name="p")
    cfg = load_config(config_file, environ={}, overrides=["update_policy.plugin=nope"])
    with pytest.raises(ConfigError, match=r"unknown update_policy 'nope'.*test-period"):
        resolve_plugin("update_policy", cfg.update_policy)


def test_wrong_option_type_names_field_and_plugin(hybridrec_plugin, config_file):
    hybridrec_plugin(Plugin(), name="p")
    cfg = load_config(config_file, environ={}, overrides=['update_policy.options.period_days="soon"'])
    with pytest.raises(ConfigError) as info:
        resolve_plugin("update_policy", cfg.update_policy)
    message = str(info.value)
    assert "update_policy plugin 'test-period'" in message
    assert "[update_policy.options] period_days" in message and "soon" in message


def test_unknown_top_level_key_and_bad_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="colour"):
        load_config(bad, environ={})
    bad.write_text("[generator\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", environ={})


def test_cli_config_validate_reports_errors_without_traceback(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[executor]\nplugin = "local"\noptions = { batch_size = "big" }\n')
    result = subprocess.run(
        [sys.executable, "-m", "hybridrec", "config", "validate", str(path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "executor plugin 'local'" in result.stderr and "batch_size" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_non_utf8_or_directory_config_is_a_config_error(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('[update_policy]\nplugin = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path)


def test_config_validate_rejects_what_init_rejects(tmp_path):
    from hybridrec.cli import _install_commands, cli

    bad = tmp_path / "redis.toml"
    bad.write_text('[serving]\nbackend = "redis"\n')
    _install_commands()
    with pytest.raises(ConfigError, match="unknown serving backend 'redis'"):
        cli.main(args=["config", "validate", str(bad)], prog_name="hybridrec", standalone_mode=False)


def test_errors_name_their_source_and_overrides_of_unnamed_roles_use_the_default_plugin(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[update_policy]\nplugin = "hybrid"\n')
    with pytest.raises(ConfigError, match="environment HYBRIDREC__SERVING__K") as info:
        load_config(path, environ={"HYBRIDREC__SERVING__K": "'many'"})
    assert not str(info.value).startswith(str(path))
    with pytest.raises(ConfigError, match=r"^--set"):
        load_config(path, overrides=["serving.k='many'"], environ={})
    cfg = load_config(path, environ={"HYBRIDREC__GENERATOR__OPTIONS__PRESET": "tiny"})
    assert cfg.generator.plugin == "hf" and cfg.generator.options == {"preset": "tiny"}


def test_a_bad_option_names_the_environment_variable_or_set_that_gave_it(tmp_path):  # type: ignore[no-untyped-def]
    from hybridrec.plugins import resolve

    path = tmp_path / "pipeline.toml"
    path.write_text('[generator]\nplugin = "hf"\n')
    config = load_config(path, environ={"HYBRIDREC__GENERATOR__OPTIONS__EVIDENCE_ITEMS": "99"},
                         overrides=["knowledge_store.options.m=0"])
    with pytest.raises(ConfigError) as info:
        resolve(config, source=str(path))
    message = str(info.value)
    assert "evidence_items" in message and "[set by environment HYBRIDREC__GENERATOR__OPTIONS__EVIDENCE_ITEMS]" in message
    assert "[knowledge_store.options] m" in message and "[set by --set knowledge_store.options.m]" in message
    # a value from the file names no other origin
    path.write_text('[generator]\nplugin = "hf"\noptions = { evidence_items = 99 }\n')
    with pytest.raises(ConfigError) as info:
        resolve(load_config(path, environ={}), source=str(path))
    assert "evidence_items" in str(info.value) and "set by" not in str(info.value)


@pytest.mark.parametrize("text, env, message", [
    ('[serving]\nbackend = "redis"\n', {}, "unknown serving backend 'redis'"),
    ('[generator]\nplugin = "no-such-generator"\n', {}, "unknown generator 'no-such-generator'"),
    ('[update_policy]\noptions = { no_such_option = 1 }\n', {}, "no_such_option"),
    ('[serving]\nk = 5\n', {"HYBRIDREC__SERVING__K": "zero"}, "HYBRIDREC__SERVING__K"),
    ('[serving]\nk = 5\n', {"HYBRIDREC__COST_MODEL__OPTIONS__BOGUS": "1"}, "HYBRIDREC__COST_MODEL__OPTIONS__BOGUS"),
    (b'# caf\xe9\n', {}, "not UTF-8"),
    ('[serving]\ntolerance = 2\n', {}, "serving.tolerance: Input should be less than or equal to 1"),
    ('[serving]\nmax_row_age_days = 0\n', {}, "serving.max_row_age_days: Input should be greater than 0"),
    ('[update_policy]\nplugin = "hybrid"\noptions = { regenerate_tolerance = -1 }\n', {},
     "regenerate_tolerance: Input should be greater than or equal to 0"),
])
def test_config_validate_and_init_reject_the_same_configs_with_the_same_message(
    text, env, message, tmp_path, monkeypatch, capsys
):  # type: ignore[no-untyped-def]
    """One code path (hybridrec.engine.check_config): what init refuses, validate refuses."""
    from hybridrec.cli import main

    config = tmp_path / "pipeline.toml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    errors = []
    for command in (["config", "validate", str(config)], ["init", str(tmp_path / "ws"), "--config", str(config)]):
        with pytest.raises(SystemExit) as exit_info:
            main(command)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        errors.append(err)
    assert errors[0] == errors[1]
    assert not (tmp_path / "ws").exists()


def test_a_plugin_name_or_options_set_outside_the_file_are_reported_against_that(tmp_path):  # type: ignore[no-untyped-def]
    from hybridrec.plugins import resolve

    config = tmp_path / "pipeline.toml"
    config.write_text('[update_policy]\nplugin = "hybrid"\n')
    cfg = load_config(config, environ={"HYBRIDREC__UPDATE_POLICY__PLUGIN": "nope"})
    with pytest.raises(ConfigError) as info:
        resolve(cfg, str(config), ("update_policy",))
    assert str(info.value).startswith("environment HYBRIDREC__UPDATE_POLICY__PLUGIN: ")
    cfg = load_config(config, overrides=["update_policy.options.no_such=1"])
    with pytest.raises(ConfigError) as info:
        resolve(cfg, str(config), ("update_policy",))
    assert str(info.value).startswith("--set update_policy.options.no_such: ")


def test_the_evidence_recipe_is_declared_once_and_skew_cannot_be_configured() -> None:
    from pydantic import ValidationError

    from hybridrec.config import load_preset

    config = load_preset()  # the preset is consistent
    recipe = config.evidence
    assert recipe is not None
    # every evidence option of the store, the fine-tuner, the generator and the policy comes
    # from the one [evidence] section
    store, tuner = config.knowledge_store.options, config.fine_tuner.options
    assert store["m"] == config.generator.options["evidence_items"] == recipe.candidates
    assert store["granularity"] == "backoff" and tuner["evidence_ranking"] == "backoff"
    assert tuner["evidence_days"] == config.update_policy.options["knowledge_days"] == recipe.history_days
    assert store["backoff_alpha"] == tuner["evidence_backoff_alpha"] == recipe.alpha
    moved = load_preset(overrides=("evidence.candidates=16", "evidence.recent_days=3", "evidence.alpha=64"))
    store, tuner = moved.knowledge_store.options, moved.fine_tuner.options
    assert store["m"] == moved.generator.options["evidence_items"] == 16
    assert store["recent_days"] == tuner["evidence_recent_days"] == 3
    assert moved.generator.options["rerank_recent"] is True
    assert store["backoff_alpha"] == tuner["evidence_backoff_alpha"] == 64
    # one side moved alone is refused, naming the option, the recipe's field and where to set it
    skews = {
        "fine_tuner.options.evidence_ranking=pair": "estimator",
        "knowledge_store.options.granularity=instance": "estimator",
        "knowledge_store.options.backoff_alpha=128": "alpha",
        "fine_tuner.options.evidence_backoff_weights=[0.5, 0.5, 0.0]": "weights",
        "generator.options.rerank_recent=true": "recent_days",
        "generator.options.evidence_items=16": "candidates",
        "update_policy.options.knowledge_days=14": "history_days",
    }
    for override, field in skews.items():
        option = override.split("=")[0]
        with pytest.raises(ConfigError, match=rf"{option} = .* differs from the evidence recipe's "
                                              rf"{field} = .*: set {field} in \[evidence\]"):
            load_preset(overrides=(override,))
    # written again with the recipe's value, an option is no conflict
    load_preset(overrides=("knowledge_store.options.m=10", "fine_tuner.options.evidence_days=3650"))
    # Without a recipe each plugin's options are its own, and skew between them is still refused.
    with pytest.raises(ValidationError, match="set the fine-tuner's evidence_ranking = 'backoff'"):
        PipelineConfig(knowledge_store=PluginRef(plugin="annoy", options={"granularity": "backoff"}))
    with pytest.raises(ValidationError, match="differs from the fine-tuner's"):
        PipelineConfig(knowledge_store=PluginRef(plugin="annoy", options={"granularity": "backoff",
                                                                          "backoff_alpha": 64}),
                       fine_tuner=PluginRef(plugin="lora", options={"evidence_ranking": "backoff"}))
    with pytest.raises(ValidationError, match="needs the knowledge store's recent_days"):
        PipelineConfig(generator=PluginRef(plugin="hf", options={"rerank_recent": True}))
    with pytest.raises(ValidationError, match="recent_days is a window of the backoff estimator"):
        EvidenceConfig(estimator="pair", recent_days=3)
    # the preset's decay: a backoff option too, and `inf` (TOML has no null) turns it off
    assert recipe.half_life_days is not None
    assert store["half_life_days"] == tuner["evidence_half_life_days"] == recipe.half_life_days
    with pytest.raises(ConfigError, match="half_life_days decays the backoff estimator's counts"):
        load_preset(overrides=("evidence.estimator=pair",))
    flat = load_preset(overrides=("evidence.half_life_days=inf",))
    assert flat.evidence is not None and flat.evidence.half_life_days is None
    assert flat.knowledge_store.options["half_life_days"] is None
    assert flat.fine_tuner.options["evidence_half_life_days"] is None
    with pytest.raises(ConfigError, match=r"evidence_half_life_days = .* differs from the evidence recipe's"):
        load_preset(overrides=("fine_tuner.options.evidence_half_life_days=30",))


def test_a_generator_and_a_store_that_cannot_work_together_fail_validation(hybridrec_plugin) -> None:  # type: ignore[no-untyped-def]
    from typing import ClassVar

    from hybridrec.config import load_preset
    from hybridrec.engine.components import check_config
    from hybridrec.testing.fakes import FakeStore

    check_config(load_preset())  # the measured stack fits together
    # The rerank template reads count evidence; the annoy store gives it in backoff mode only.
    with pytest.raises(ConfigError, match="does not fill with these options: context_support, shares"):
        check_config(load_preset(overrides=(
            "evidence.estimator=pair", "evidence.half_life_days=inf",
            'knowledge_store={plugin = "annoy", options = {granularity = "global"}}')))
    # the preset's counts store serves the estimator's evidence and nothing else
    with pytest.raises(ConfigError, match=r"granularity.*'backoff'"):
        check_config(load_preset(overrides=("evidence.estimator=pair", "evidence.half_life_days=inf")))

    class Declares:
        @hookimpl
        def register_knowledge_stores(self, register):  # type: ignore[no-untyped-def]
            class CountsFree(FakeStore):
                name: ClassVar[str] = "counts-free"

                @classmethod
                def evidence_provides(cls, options):  # type: ignore[no-untyped-def]
                    return frozenset({"similarity"})

            class Silent(FakeStore):  # says nothing: only the run can tell
                name: ClassVar[str] = "silent"

            register(CountsFree)
            register(Silent)

    hybridrec_plugin(Declares(), "declares")
    with pytest.raises(ConfigError, match="knowledge store 'counts-free' does not fill"):
        check_config(load_preset(overrides=("knowledge_store={plugin = \"counts-free\"}",
                                            "evidence.estimator=pair", "evidence.half_life_days=inf")))
    check_config(load_preset(overrides=("knowledge_store={plugin = \"silent\"}",
                                        "evidence.estimator=pair", "evidence.half_life_days=inf")))


def test_the_serving_fallback_has_its_own_name_and_reads_the_former_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hybridrec.config import SignalsConfig

    # the serving fallback (successors of the last cluster, then popularity) is not the counting
    # estimator's backoff; configs written with the former key still load
    assert SignalsConfig.model_validate({"backoff_days": 30}).fallback_days == 30
    path = tmp_path / "pipeline.toml"
    path.write_text("[signals]\nbackoff_days = 21\n")
    assert load_config(path).signals.fallback_days == 21
    assert "fallback_days" in load_config(path).model_dump()["signals"]
