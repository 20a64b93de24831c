"""hybridrec.testing.store_contract passes the built-in stores and catches a broken one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from hybridrec.plugins import get
from hybridrec.testing.store_contract import check_knowledge_store, make_store_contract
from hybridrec.types import TimeWindow, TransitionSet

Exact = get("knowledge_store", "exact")
TestExactStoreContract = make_store_contract(lambda c: Exact({"m": 3}, c), max_examples=5,
                                             derandomize=True)

DAY = 86400
TS = np.array([0, 1, 2, 3, 10, 11]) * DAY + 946_684_800
ROWS = TransitionSet(np.array([0, 0, 1, 0, 0, 1]), np.array([1, 1, 2, 1, 1, 2]),
                     np.array([2, 3, 3, 2, 4, 0]), TS, np.zeros(6, dtype=np.int64), 5)


class ReadsEverything(Exact):  # type: ignore[misc, valid-type]
    """Broken on purpose: builds from all the transitions, ignoring the window."""

    name = "reads-everything"

    def build(self, transitions, window, out_dir):  # type: ignore[no-untyped-def]
        wide = TimeWindow(start=window.start - timedelta(days=999), end=window.end + timedelta(days=999))
        return super().build(transitions, wide, out_dir)


def window() -> TimeWindow:
    start = datetime.fromtimestamp(int(TS[0]), UTC)
    return TimeWindow(start=start, end=start + timedelta(days=5))


def test_a_store_that_reads_outside_its_window_breaks_the_contract(tmp_path: Path) -> None:
    check_knowledge_store(lambda c: Exact({"m": 3}, c), ROWS, window(), tmp_path / "ok")
    with pytest.raises(AssertionError, match="window"):
        check_knowledge_store(lambda c: ReadsEverything({"m": 3}, c), ROWS, window(), tmp_path / "bad")
