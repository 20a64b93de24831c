"""The paper's fine-tune guardrails: exact-match rate >= 0.90 and held-out recall >= 0.015."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridrec.config import GuardrailConfig
from hybridrec.guardrails import GuardrailReport, check_guardrails, evaluate_guardrails

PAPER = GuardrailConfig()


def test_defaults_are_the_papers() -> None:
    assert (PAPER.min_exact_match, PAPER.min_recall) == (0.90, 0.015)


def test_passing_metrics_give_no_reasons() -> None:
    assert check_guardrails({"exact_match_rate": 0.95, "recall": 0.2, "hr@1": 0.1}, PAPER) == []
    assert check_guardrails({"exact_match_rate": 0.90, "recall": 0.015}, PAPER) == []  # inclusive


@pytest.mark.parametrize(
    ("metrics", "fragment"),
    [
        ({"exact_match_rate": 0.89, "recall": 0.5}, "exact_match_rate 0.89 is below the minimum 0.9"),
        ({"exact_match_rate": 1.0, "recall": 0.01}, "recall 0.01 is below the minimum 0.015"),
        ({"recall": 0.5}, "exact_match_rate was not measured"),
        ({"exact_match_rate": math.nan, "recall": 0.5}, "exact_match_rate was not measured"),
    ],
)
def test_failing_metrics_say_why(metrics: dict[str, float], fragment: str) -> None:
    reasons = check_guardrails(metrics, PAPER)
    assert len(reasons) == 1 and fragment in reasons[0]


def test_both_failures_are_reported() -> None:
    assert len(check_guardrails({"exact_match_rate": 0.1, "recall": 0.0}, PAPER)) == 2


def test_disabled_guardrails_pass_anything() -> None:
    assert check_guardrails({}, GuardrailConfig(enabled=False)) == []


@given(em=st.floats(0, 1), recall=st.floats(0, 1))
def test_pass_iff_both_thresholds_hold(em: float, recall: float) -> None:
    report = evaluate_guardrails({"exact_match_rate": em, "recall": recall}, PAPER)
    assert report.passed == (em >= 0.9 and recall >= 0.015)
    assert report.status == ("ok" if report.passed else "needs_review")
    assert report.thresholds == {"exact_match_rate": 0.9, "recall": 0.015}
    assert GuardrailReport.model_validate_json(report.model_dump_json()) == report


def test_a_generator_names_the_metrics_that_guard_it() -> None:
    from hybridrec_hf.generator import HFGenerator

    from hybridrec.testing.fakes import FakeGenerator
    from hybridrec.types import ClusterCatalog

    catalog = ClusterCatalog.from_descriptions([f"g{i}" for i in range(6)])
    tiny = {"preset": "tiny", "tiny": {"hidden_size": 16, "intermediate_size": 32}}
    rerank = HFGenerator(HFGenerator.Options(**tiny, template="rerank", evidence_items=3), catalog)
    plain = HFGenerator(HFGenerator.Options(**tiny), catalog)
    # the hf generator serves ranked lists: recall on the prompts it serves, no exact match
    assert rerank.guardrail_metrics() == {"recall": "min_recall", "recall_rag": "min_recall"}
    assert plain.guardrail_metrics() == {"recall": "min_recall"}
    # a generator that serves free generation keeps the paper's exact-match check
    assert FakeGenerator({}, catalog).guardrail_metrics() == {
        "exact_match_rate": "min_exact_match", "recall": "min_recall"}
    reranker_metrics = {"exact_match_rate": 0.0, "recall": 0.3, "recall_rag": 0.4}
    assert check_guardrails(reranker_metrics, PAPER, rerank.guardrail_metrics()) == []
    low = check_guardrails({**reranker_metrics, "recall_rag": 0.001}, PAPER, rerank.guardrail_metrics())
    assert low == ["recall_rag 0.001 is below the minimum 0.015"]
    report = evaluate_guardrails(reranker_metrics, PAPER, rerank.guardrail_metrics())
    assert report.passed and report.thresholds == {"recall": 0.015, "recall_rag": 0.015}
