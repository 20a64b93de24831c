"""What a plugin returns or raises is checked at the boundary and reported naming the plugin."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from hybridrec import hookimpl
from hybridrec.config import load_config
from hybridrec.interfaces import UpdatePolicy
from hybridrec.testing.cli import run_cli
from hybridrec.testing.fakes import FakeCost
from hybridrec.types import UTC, ActionKind, CostEstimate, Workload
from hybridrec.workspace import Workspace

JAN = datetime(2000, 1, 1, tzinfo=UTC)


class Broken:
    """``boom`` (a policy whose decide raises) and ``negative`` (a cost model pricing below 0)."""

    @hookimpl
    def register_update_policies(self, register: Any) -> None:
        class Boom(UpdatePolicy):
            name: ClassVar[str] = "boom"

            def decide(self, state: Any) -> list[Any]:
                raise ZeroDivisionError("the policy divided by zero")

        register(Boom)

        class Chatty(UpdatePolicy):
            name: ClassVar[str] = "chatty"

            def decide(self, state: Any) -> list[Any]:
                return ["fine-tune please"]

        register(Chatty)

    @hookimpl
    def register_cost_models(self, register: Any) -> None:
        class Negative(FakeCost):
            name: ClassVar[str] = "negative"

            def estimate(self, action: ActionKind, workload: Workload) -> CostEstimate:
                return CostEstimate.model_construct(action=action, flops=-1.0, model=self.name)

        register(Negative)

        class Infinite(FakeCost):
            name: ClassVar[str] = "infinite"

            def estimate(self, action: ActionKind, workload: Workload) -> CostEstimate:
                return CostEstimate.model_construct(action=action, flops=float("inf"), model=self.name)

        register(Infinite)


@pytest.mark.parametrize(("override", "message"), [
    ("update_policy.plugin=boom", "update policy 'boom' raised ZeroDivisionError in decide(): the policy divided by zero"),
    ("cost_model.plugin=negative", "cost model 'negative' priced"),
    ("cost_model.plugin=infinite", "cost model 'infinite' priced"),
    ("update_policy.plugin=chatty", "update policy 'chatty' decided str"),
])
def test_a_failing_plugin_is_named_and_its_traceback_is_a_switch_away(
        override: str, message: str, fake_plugins: Any, hybridrec_plugin: Any, tmp_path: Path,
        config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    hybridrec_plugin(Broken(), "broken")
    ws = Workspace.init(tmp_path / "ws", load_config(config_file, overrides=[override]))
    log = fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31)
    code, _, err = run_cli(capsys, "update", str(ws.root), "--data", str(log), "--now", "2000-02-01")
    assert code == 2 and message in err and "Traceback" not in err
    monkeypatch.setenv("HYBRIDREC_TRACEBACK", "1")
    code, _, err = run_cli(capsys, "update", str(ws.root), "--data", str(log), "--now", "2000-02-01")
    assert code == 2 and message in err
    if "boom" in override:
        assert "Traceback" in err and "ZeroDivisionError" in err


def test_a_study_without_data_in_its_windows_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "study.toml"
    base = 'dataset = "synthetic"\nbootstrap = 100\ndataset_options = { n_interactions = 3000, days = 30 }\n'
    study.write_text(base + "start = 2000-01-20\nend = 2000-01-25\n")
    code, _, err = run_cli(capsys, "backtest", "--config", str(study), "--arms", "markov-all",
                           "--start", "2000-03-01", "--end", "2000-03-05", "--quiet", "--out", str(tmp_path / "a"))
    assert code == 2 and "no transitions in the test window" in err and "the data runs from" in err
    # Data long before the start but none in the validation days just before it.
    import numpy as np

    from hybridrec.backtest import BacktestConfig, run_backtest
    from hybridrec.errors import DataError
    from hybridrec.types import ClusterCatalog, TransitionSet, datetime_to_ts

    early = datetime_to_ts(datetime(1999, 10, 1, tzinfo=UTC)) + np.arange(200) * 600
    late = datetime_to_ts(datetime(2000, 1, 20, tzinfo=UTC)) + np.arange(200) * 600
    ts = np.concatenate([early, late])
    c1 = np.arange(400) % 4
    gap = TransitionSet(c1, (c1 + 1) % 4, (c1 + 2) % 4, ts, np.zeros(400, dtype=np.int64), 4)
    catalog = ClusterCatalog.from_descriptions(["a", "b", "c", "d"])
    config = BacktestConfig.model_validate({"start": "2000-01-20", "end": "2000-01-22",
                                            "arms": ["markov-all"], "bootstrap": 100})
    with pytest.raises(DataError, match="no transitions in the 14 validation days"):
        run_backtest(config, data=(catalog, gap), drift=False)
