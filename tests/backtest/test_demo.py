"""``hybridrec demo --quick`` end to end on ML-1M with the real plugins (integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybridrec.backtest.config import ALL_ARMS
from hybridrec.cli import main


@pytest.mark.integration
def test_demo_quick_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "report"
    main(["demo", "--quick", "--quiet", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "hybridrec.report/1"
    assert [a["name"] for a in report["arms"]] == list(ALL_ARMS)
    assert report["dataset"]["clusters"] == 301
    assert report["dataset"]["test_transitions"] > 10_000
    arms = {a["name"]: a for a in report["arms"]}
    assert arms["hybrid"]["metrics"]["exact_match_rate"] is not None
    assert arms["markov-all"]["metrics"]["exact_match_rate"] is None
    assert arms["hybrid"]["cost"]["knowledge_refreshes"] >= 7
    assert arms["ft-weekly"]["cost"]["fine_tunes"] == 2
    for name in ("report.md", "hr5_over_time.png", "pareto.png", "drift_decay.png"):
        assert (out / name).stat().st_size > 0
