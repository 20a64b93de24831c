"""Unknown plugin and option names get "did you mean" suggestions wherever they are resolved:
the registry, the factory, pipeline configs and study files (errors.close_matches,
UnknownPluginError, format_validation_error)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from hybridrec.backtest.config import load_backtest_config
from hybridrec.config import load_config
from hybridrec.errors import (
    ConfigError,
    UnknownPluginError,
    did_you_mean,
    field_names,
    format_validation_error,
)
from hybridrec.plugins import build, registry, resolve_plugin


def test_did_you_mean_lists_close_names_best_first_or_nothing() -> None:
    assert did_you_mean("hybird", ["hybrid", "static", "adaptive"]) == " (did you mean 'hybrid'?)"
    assert did_you_mean("zzz", ["hybrid", "static"]) == ""
    assert did_you_mean("ml-10k", ["ml-100k", "ml-1m"], n=2) == " (did you mean 'ml-100k' or 'ml-1m'?)"


def test_an_unknown_plugin_suggests_the_closest_name_and_keeps_the_list() -> None:
    with pytest.raises(UnknownPluginError) as caught:
        registry().get("update_policy", "hybird")
    assert caught.value.suggestions[0] == "hybrid"
    message = str(caught.value)
    assert "unknown update_policy 'hybird' (did you mean 'hybrid'?)" in message
    assert "available update_policy plugins: adaptive, hybrid" in message
    with pytest.raises(ConfigError, match=r"\[fine_tuner\] unknown fine_tuner 'lroa' \(did you mean 'lora'\?\)"):
        resolve_plugin("fine_tuner", "lroa")


def test_an_unknown_option_suggests_the_closest_field() -> None:
    with pytest.raises(ConfigError) as caught:
        build("update_policy", {"plugin": "static", "options": {"train_day": 3}})
    assert ("[update_policy.options] train_day: Extra inputs are not permitted (got 3) "
            "(did you mean 'train_days'?)") in str(caught.value)


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    window_days: int = 1


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inner: Inner = Inner()
    by_name: dict[str, Inner] = {}
    maybe: Inner | None = None


def test_field_names_follow_nested_models_dict_values_and_optionals() -> None:
    assert field_names(Outer, ()) == ["inner", "by_name", "maybe"]
    assert field_names(Outer, ("inner",)) == ["window_days"]
    assert field_names(Outer, ("by_name", "any-key")) == ["window_days"]
    assert field_names(Outer, ("maybe",)) == ["window_days"]
    assert field_names(Outer, ("nope",)) == []
    with pytest.raises(ValidationError) as caught:
        Outer.model_validate({"by_name": {"a": {"window_day": 2}}, "inne": {}})
    text = format_validation_error(caught.value, model=Outer)
    assert "by_name.a.window_day: Extra inputs are not permitted (got 2) (did you mean 'window_days'?)" in text
    assert "inne: Extra inputs are not permitted (did you mean 'inner'?)" in text
    assert "did you mean" not in format_validation_error(caught.value)  # no model: no guess


def test_a_pipeline_config_suggests_plugin_and_field_names(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text('[knowledge_store]\nplugin = "exat"\n[serving]\nbackendd = "x"\n')
    with pytest.raises(ConfigError, match=r"serving\.backendd: .*\(did you mean 'backend'\?\)"):
        load_config(path, environ={})
    path.write_text('[knowledge_store]\nplugin = "exat"\n')
    cfg = load_config(path, environ={})
    with pytest.raises(ConfigError, match=r"unknown knowledge_store 'exat' \(did you mean 'exact'\?\)"):
        resolve_plugin("knowledge_store", cfg.knowledge_store, str(path))


@pytest.mark.parametrize(("study", "expected"), [
    ('start_dat = "2000-01-01"\n', r"start_dat: Extra inputs are not permitted \(did you mean 'start'\?\)"),
    ('[arms.m]\npreset = "markov-all"\noptions = { window_day = 3 }\n',
     r"\[arms\.m\] options of 'markov-all': window_day: .*\(did you mean 'window_days'\?\)"),
    ('[arms.gate]\npolicy = { plugin = "statc" }\n', r"unknown update_policy 'statc' \(did you mean 'static'\?\)"),
    ('[arms.gate]\npolicy = { plugin = "static", options = { train_dys = 3 } }\n',
     r"train_dys: .*\(did you mean 'train_days'\?\)"),
])
def test_a_study_file_suggests_plugin_option_and_field_names(
    tmp_path: Path, study: str, expected: str
) -> None:
    path = tmp_path / "study.toml"
    path.write_text(study)
    with pytest.raises(ConfigError, match=expected):
        load_backtest_config(path)


def test_serving_backends_get_suggestions_too() -> None:
    from hybridrec.serving import get_backend

    with pytest.raises(ConfigError, match=r"unknown serving backend 'sqlit' \(did you mean 'sqlite'\?\)"):
        get_backend("sqlit")
