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

    @hookimpl
    def register_cost_models(self, register: Any) -> None:
        class Negative(FakeCost):
            name: ClassVar[str] = "negative"

            def estimate(self, action: ActionKind, workload: Workload) -> CostEstimate:
                return CostEstimate.model_construct(action=action, flops=-1.0, model=self.name)

        register(Negative)


@pytest.mark.parametrize(("override", "message"), [
    ("update_policy.plugin=boom", "update policy 'boom' raised ZeroDivisionError in decide(): the policy divided by zero"),
    ("cost_model.plugin=negative", "cost model 'negative' priced"),
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
