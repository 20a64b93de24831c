"""Contract tests for any :class:`~hybridrec.interfaces.KnowledgeStore`.

Use them on your own store in one line::

    from hybridrec.testing.store_contract import make_store_contract

    TestMyStore = make_store_contract(lambda catalog: MyStore({"m": 3}, catalog))

:func:`check_knowledge_store` checks one store on one set of transitions and one window (it
raises ``AssertionError`` naming the broken rule); :func:`make_store_contract` runs it under
hypothesis on random transitions and windows that overlap them. The rules (docs/roles.md §
KnowledgeStore):

* **manifest** — ``build`` writes ``manifest.json`` with a ``files`` key, and
  :func:`hybridrec.artifacts.verify` accepts the folder;
* **shape** — ``evidence(contexts)`` has one row per context, ``cluster`` ids in range or ``-1``,
  and a row's ``-1`` padding only after its items (best first);
* **window** — every item's ``last_seen`` (when known, not ``-1``) is inside the window, and, with
  ``window_only=True`` (the default; pass False for a store that also reads before the window,
  like trend scoring), the evidence is the same when the transitions outside the window are
  dropped;
* **open** — ``open(out_dir)`` gives the same evidence as the built snapshot;
* **deterministic** — a second build into another folder gives the same evidence;
* **corruption** — ``open`` of a snapshot whose largest file was truncated raises
  :class:`~hybridrec.errors.CorruptArtifactError`.
"""

from __future__ import annotations

import tempfile
import unittest
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridrec.artifacts import MANIFEST, verify
from hybridrec.errors import CorruptArtifactError
from hybridrec.interfaces import KnowledgeStore
from hybridrec.testing.strategies import transition_sets
from hybridrec.types import UTC, ClusterCatalog, EvidenceBatch, TimeWindow, TransitionSet

StoreFactory = Callable[[ClusterCatalog], KnowledgeStore]


def catalog_for(n_clusters: int) -> ClusterCatalog:
    """A catalog of ``n_clusters`` clusters with distinct descriptions."""
    return ClusterCatalog.from_descriptions([f"cluster{i} items{i % 3}" for i in range(n_clusters)])


def all_contexts(n_clusters: int) -> np.ndarray:
    """Every ordered pair of distinct clusters, as an ``(n, 2)`` int array."""
    pairs = [(a, b) for a in range(n_clusters) for b in range(n_clusters) if a != b]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _same(a: EvidenceBatch, b: EvidenceBatch, rule: str) -> None:
    for name in ("cluster", "support", "score", "last_seen"):
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert x.shape == y.shape and np.allclose(x, y, equal_nan=True), (
            f"{rule}: evidence {name} differs"
        )


def check_knowledge_store(
    make_store: StoreFactory,
    transitions: TransitionSet,
    window: TimeWindow,
    tmp_dir: Path,
    *,
    window_only: bool = True,
) -> None:
    """Check the contract (module docstring) of the store ``make_store(catalog)`` on
    ``transitions`` and ``window``, building snapshots under ``tmp_dir``."""
    tmp_dir = Path(tmp_dir)
    n = transitions.n_clusters
    catalog = catalog_for(n)
    store = make_store(catalog)
    contexts = all_contexts(n)

    built = store.build(transitions, window, tmp_dir / "a")
    manifest = verify(tmp_dir / "a")
    assert "files" in manifest, "manifest: no 'files' key"

    ev = built.evidence(contexts)
    assert len(ev) == contexts.shape[0], "shape: one evidence row per context"
    cluster = np.asarray(ev.cluster)
    assert ((cluster >= -1) & (cluster < n)).all(), "shape: cluster ids out of range"
    present = cluster >= 0
    assert not (~present[:, :-1] & present[:, 1:]).any(), "shape: an item after a -1 pad"

    seen = np.asarray(ev.last_seen)[present]
    known = seen[seen != -1]
    assert ((known >= window.start_ts) & (known < window.end_ts)).all(), (
        "window: an item last seen outside the window"
    )
    if window_only:
        inside = transitions.window(window)
        _same(ev, store.build(inside, window, tmp_dir / "inside").evidence(contexts),
              "window (transitions outside the window changed the evidence)")

    _same(ev, store.open(tmp_dir / "a").evidence(contexts), "open")
    _same(ev, make_store(catalog).build(transitions, window, tmp_dir / "b").evidence(contexts),
          "deterministic")

    files = [p for p in (tmp_dir / "b").rglob("*") if p.is_file() and p.name != MANIFEST]
    if files:
        victim = max(files, key=lambda p: (p.stat().st_size, str(p)))
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) // 2])
        try:
            make_store(catalog).open(tmp_dir / "b")
        except CorruptArtifactError:
            pass
        else:
            raise AssertionError(f"corruption: open accepted a truncated {victim.name}")


@st.composite
def windows_over(draw: st.DrawFn, transitions: TransitionSet) -> TimeWindow:
    """A window that starts at or before one of ``transitions``' times (any start when empty)
    and lasts from an hour to 120 days."""
    ts = np.asarray(transitions.ts)
    if ts.size:
        anchor = int(ts[draw(st.integers(0, ts.size - 1))]) - draw(st.integers(0, 5 * 86400))
    else:
        anchor = 946_684_800
    start = datetime.fromtimestamp(anchor, UTC)
    days = draw(st.floats(min_value=1 / 24, max_value=120, allow_nan=False))
    return TimeWindow(start=start, end=start + timedelta(days=days))


def make_store_contract(
    store_factory: StoreFactory,
    *,
    max_examples: int = 20,
    n_clusters: int = 8,
    window_only: bool = True,
    **settings_kwargs: Any,
) -> type[unittest.TestCase]:
    """A ``unittest.TestCase`` class that runs :func:`check_knowledge_store` on
    ``store_factory(catalog)`` for random transitions over ``n_clusters`` clusters and windows
    over them. Assign it to a module-level name starting with ``Test`` for pytest to collect it.
    ``settings_kwargs`` go to :func:`hypothesis.settings` (e.g. ``derandomize=True``)."""

    @settings(max_examples=max_examples, deadline=None,
              suppress_health_check=[HealthCheck.too_slow], **settings_kwargs)
    @given(data=st.data())
    def test_store_contract(self: unittest.TestCase, data: st.DataObject) -> None:
        transitions = data.draw(transition_sets(n_clusters=n_clusters, max_size=120))
        window = data.draw(windows_over(transitions))
        with tempfile.TemporaryDirectory() as tmp:
            check_knowledge_store(store_factory, transitions, window, Path(tmp),
                                  window_only=window_only)

    name = f"StoreContract_{store_factory(catalog_for(n_clusters)).name.replace('-', '_')}"
    return type(name, (unittest.TestCase,), {"test_store_contract": test_store_contract})


__all__ = [
    "StoreFactory",
    "all_contexts",
    "catalog_for",
    "check_knowledge_store",
    "make_store_contract",
    "windows_over",
]
