"""Every study file under examples/studies and research/studies loads as a valid backtest configuration, and its
plugins accept their options (what a user running the documented command would hit first)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from hybridrec.backtest.config import load_backtest_config
from hybridrec.plugins import get

ROOT = Path(__file__).resolve().parents[2]
STUDIES = sorted([*(ROOT / "examples" / "studies").glob("*.toml"), *(ROOT / "research" / "studies").glob("*.toml")])


def test_there_are_study_files() -> None:
    assert len(STUDIES) >= 10


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_study_file_loads_and_its_plugin_options_validate(path: Path) -> None:
    config = load_backtest_config(path)
    llm = config.llm
    for role, ref in (("generator", llm.generator), ("knowledge_store", llm.knowledge_store),
                      ("fine_tuner", llm.fine_tuner)):
        cls = get(role, ref.plugin)
        cls.Options(**ref.options)  # type: ignore[attr-defined]


def test_recent_window_evidence_must_be_configured_on_both_sides() -> None:
    # a generator that renders recent-window counts needs them from the store (serving) and
    # from the fine-tuner (training), over the same days: the study's evidence recipe sets all three
    from hybridrec.backtest.config import LLMSettings
    from hybridrec.config import EvidenceConfig, PluginRef

    llm = LLMSettings(evidence=EvidenceConfig(recent_days=7))
    assert llm.generator.options["rerank_recent"] is True
    assert llm.knowledge_store.options["recent_days"] == llm.fine_tuner.options["evidence_recent_days"] == 7
    # one side written alone is refused, naming the recipe's section
    for role, ref in (
        ("knowledge_store", PluginRef(plugin="annoy", options={"recent_days": 7})),
        ("fine_tuner", PluginRef(plugin="lora", options={"evidence_recent_days": 14})),
        ("generator", PluginRef(plugin="hf", options={"template": "rerank", "rerank_recent": True})),
    ):
        with pytest.raises(ValidationError, match=rf"llm\.{role}\.options\.\w+ = .* differs from the "
                                                  r"evidence recipe's recent_days = None: set recent_days "
                                                  r"in \[llm\.evidence\]"):
            LLMSettings(**{role: ref})


def test_an_arm_with_its_own_stack_and_a_workspace_are_checked_the_same_way() -> None:
    from hybridrec.backtest.config import BacktestConfig
    from hybridrec.config import PipelineConfig, PluginRef

    generator = PluginRef(plugin="hf", options={"template": "rerank", "rerank_recent": True})
    store = PluginRef(plugin="annoy", options={"granularity": "backoff", "recent_days": 7})
    tuner = PluginRef(plugin="lora", options={"evidence_ranking": "backoff", "evidence_recent_days": 3})
    with pytest.raises(ValidationError, match=r"arms\.mine\.\w+\.options\.\w+ = .*recent_days"):
        BacktestConfig(arms={"mine": {"preset": "hybrid", "generator": generator,
                                      "knowledge_store": store, "fine_tuner": tuner}})
    with pytest.raises(ValidationError, match="evidence_recent_days=3"):
        PipelineConfig(generator=generator, knowledge_store=store, fine_tuner=tuner)
    PipelineConfig(generator=generator, knowledge_store=store,
                   fine_tuner=PluginRef(plugin="lora", options={"evidence_ranking": "backoff",
                                                                "evidence_recent_days": 7}))
