"""The LLM arms' candidate estimator is chosen on the validation days, never on test days."""

from __future__ import annotations

import numpy as np

from hybridrec.backtest.config import BacktestConfig
from hybridrec.backtest.study import load_data, with_validated_candidates


def _config(**llm: object) -> BacktestConfig:
    return BacktestConfig.model_validate({
        "dataset": "synthetic",
        "dataset_options": {"n_interactions": 8000, "n_clusters": 10, "days": 40, "seed": 1},
        "start": "2000-01-31", "end": "2000-02-05", "arms": ["rag-once"],
        "llm": {"evidence": {"candidates": 4}, "knowledge_store": {"plugin": "exact"},
                "fine_tuner": {"plugin": "lora"}, **llm},
    })


def test_store_and_training_evidence_get_the_configuration_chosen_on_validation() -> None:
    config = _config()
    _, transitions = load_data(config)
    before = transitions.take(np.flatnonzero(transitions.ts < int(config.start_dt.timestamp())))
    tuned, chosen = with_validated_candidates(config, before)
    assert chosen is not None and chosen["chosen"]["kind"] == "backoff"
    window = chosen["chosen"]["window_days"]
    if window is not None:  # a windowed estimator: serving and training evidence count its days
        assert tuned.llm.policies["rag-once"].options["knowledge_days"] == window
        assert tuned.llm.fine_tuner.options["evidence_days"] == window
    assert chosen["window"][1] == "2000-01-31"  # the validation days end where the test starts
    store, tuner = tuned.llm.knowledge_store.options, tuned.llm.fine_tuner.options
    assert store["backoff_alpha"] == tuner["evidence_backoff_alpha"] == chosen["chosen"]["alpha"]
    assert tuple(store["backoff_weights"]) == tuple(tuner["evidence_backoff_weights"])
    # the decay too (markov-best's choice here): a decayed snapshot and decayed training evidence
    assert (store["half_life_days"] == tuner["evidence_half_life_days"]
            == tuned.llm.evidence.half_life_days == chosen["chosen"]["half_life_days"])
    # the evidence recipe records the choice, so a deployed arm's pipeline carries it too
    assert tuned.llm.evidence.alpha == chosen["chosen"]["alpha"]
    assert tuple(tuned.llm.evidence.weights) == tuple(store["backoff_weights"])
    deployed = tuned.arm_pipeline("rag-once")
    assert deployed.evidence == tuned.llm.evidence
    assert deployed.knowledge_store.options["backoff_alpha"] == chosen["chosen"]["alpha"]
    # Test days are never read: planting anything after the start changes nothing.
    again, same = with_validated_candidates(config, transitions)
    assert same == chosen and again.llm == tuned.llm


def test_a_windowed_choice_sets_the_knowledge_and_evidence_windows(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import hybridrec.backtest.study as study
    from hybridrec.backtest.baselines import CountingConfig, Selection

    def pick_window(history, start, *, validation_days, grid, metric):  # type: ignore[no-untyped-def]
        chosen = next(c for c in grid if c.window_days == 30)
        # markov-best's backoff configurations, decayed ones included
        assert all(isinstance(c, CountingConfig) and c.kind == "backoff" for c in grid)
        assert any(c.half_life_days is not None for c in grid)
        return Selection(chosen=chosen, window=("a", "b"), days=validation_days, transitions=1, metric=metric)

    monkeypatch.setattr(study, "select_counting_config", pick_window)
    config = _config()
    tuned, chosen = with_validated_candidates(config, load_data(config)[1])
    assert chosen is not None and chosen["chosen"]["window_days"] == 30
    assert {a: p.options.get("knowledge_days") for a, p in tuned.llm.policies.items()} == {
        a: 30.0 for a in tuned.llm.policies if a not in ("no-update", "ft-monthly", "ft-weekly")
    } | {a: None for a in ("no-update", "ft-monthly", "ft-weekly")}
    assert tuned.llm.fine_tuner.options["evidence_days"] == 30.0


def test_configured_options_are_kept_when_asked_or_when_the_store_is_not_backoff() -> None:
    config = _config(candidate_estimator="configured")
    _, transitions = load_data(config)
    assert with_validated_candidates(config, transitions) == (config, None)
    plain = _config(evidence={"estimator": "pair", "candidates": 4},
                    generator={"plugin": "hf", "options": {"preset": "tiny"}})
    assert with_validated_candidates(plain, transitions) == (plain, None)


def test_an_arm_with_its_own_stack_gets_the_choice_in_its_own_tables() -> None:
    config = BacktestConfig.model_validate({
        **_config().model_dump(mode="json", include={"dataset", "dataset_options", "start", "end"}),
        "arms": {"rag-once": {}, "mine": {"preset": "rag-once", "knowledge_store": {"plugin": "annoy"}}},
        "llm": {"evidence": {"candidates": 4}, "knowledge_store": {"plugin": "exact"},
                "fine_tuner": {"plugin": "lora"}},
    })
    assert config.arm_plan("mine").own_stack
    _, transitions = load_data(config)
    before = transitions.take(np.flatnonzero(transitions.ts < int(config.start_dt.timestamp())))
    tuned, chosen = with_validated_candidates(config, before)
    assert chosen is not None
    alpha = chosen["chosen"]["alpha"]
    mine = tuned.arm_plan("mine")
    assert mine.knowledge_store is not None and mine.fine_tuner is not None
    assert mine.knowledge_store.plugin == "annoy"
    assert mine.knowledge_store.options["backoff_alpha"] == mine.fine_tuner.options["evidence_backoff_alpha"] == alpha
    assert tuned.arm_plan("rag-once").knowledge_store.options["backoff_alpha"] == alpha  # type: ignore[union-attr]
    assert tuned.arm_pipeline("mine").knowledge_store == mine.knowledge_store  # what init --from-report deploys
