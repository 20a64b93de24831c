"""The engine enforces the budget: an action that does not fit is skipped, not run, not charged,
and the rest of its decision with it, in the workspace and in the backtest alike."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from hybridrec import hookimpl
from hybridrec.config import load_config
from hybridrec.engine import run_update
from hybridrec.interfaces import UpdatePolicy
from hybridrec.types import UTC, FineTune, RegenerateTable, SystemState, TimeWindow
from hybridrec.workspace import Workspace

JAN = datetime(2000, 1, 1, tzinfo=UTC)
FEB = datetime(2000, 2, 1, tzinfo=UTC)


class GreedyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Greedy(UpdatePolicy):
    """Ignores the budget on purpose: always a fine-tune, then a regeneration."""

    name: ClassVar[str] = "test-greedy"
    Options: ClassVar[type[BaseModel]] = GreedyOptions

    def decide(self, state: SystemState) -> list[Any]:
        window = TimeWindow.ending_at(state.data_until, 30)
        return [FineTune(window=window, reason="always"), RegenerateTable(reason="always")]


class Plugin:
    @hookimpl
    def register_update_policies(self, register: Any) -> None:
        register(Greedy)


def _workspace(tmp_path: Path, config_file: Path, *overrides: str) -> Workspace:
    config = load_config(config_file, environ={}, overrides=["update_policy.plugin=test-greedy", *overrides])
    return Workspace.init(tmp_path / "ws", config)


def test_an_action_over_the_budget_is_skipped_with_the_rest_of_its_decision(
    hybridrec_plugin: Any, fake_plugins: Any, tmp_path: Path, config_file: Path
) -> None:
    hybridrec_plugin(Plugin(), name="greedy")
    ws = _workspace(tmp_path, config_file, "budget.flops=1000.0")
    log = fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31)
    report = run_update(ws, log, now=FEB)
    assert [(a.kind, a.status) for a in report.actions] == [
        ("fine_tune", "skipped"), ("regenerate_table", "skipped")]
    assert report.actions[0].note.startswith("over budget: needs")
    assert "earlier action of this decision was over budget" in report.actions[1].note
    assert ws.ledger.records() == []  # nothing ran, nothing was charged


def test_without_a_limit_the_same_decision_runs(
    hybridrec_plugin: Any, fake_plugins: Any, tmp_path: Path, config_file: Path
) -> None:
    hybridrec_plugin(Plugin(), name="greedy")
    ws = _workspace(tmp_path, config_file)
    report = run_update(ws, fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31), now=FEB)
    assert [a.kind for a in report.actions] == ["fine_tune", "regenerate_table"]
    assert all(a.status in {"ok", "held"} for a in report.actions)
    assert len(ws.ledger.records()) == 2
