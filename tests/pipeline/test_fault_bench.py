"""The ``fault`` bench suite runs end to end on a tiny number of kills (issue 15)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hybridrec.plugins import registry
from hybridrec.testing.faultbench import run_fault_bench


def test_the_fault_suite_is_registered() -> None:
    assert "fault" in registry().bench_suites


@pytest.mark.slow
def test_three_killed_runs_tear_nothing_and_leave_nothing_stuck(fake_plugins: Any, tmp_path: Path) -> None:
    result = run_fault_bench(1, 2, seed=0, workdir=tmp_path, log=lambda msg: None)
    assert result["init"]["runs"] == 1 and result["update"]["runs"] == 2
    for command in ("init", "update"):
        part = result[command]
        assert part["failed_otherwise"] == 0, result["failures"]
        assert part["killed"] + part["finished_before_kill"] == part["runs"]
    assert result["torn_versions"] == 0, result["failures"]
    assert result["stuck_workspaces"] == 0, result["failures"]
    assert result["failures"] == []
    assert sum(result["update"]["outcomes"].values()) == result["update"]["killed"]
