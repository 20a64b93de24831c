"""Fixtures and helpers for tests/scale (a module, not conftest.py, so it is versioned).

Ray workers are separate processes: they see only plugins installed through entry points. The
test plugin ``hybridrec_scaletest`` lives in ``plugin_site/`` with its own ``.dist-info``, and is
made visible to this process (``sys.path``) and to every Ray worker (``PYTHONPATH``, inherited by
the local cluster started after it is set).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybridrec import plugins
from hybridrec.config import PluginRef
from hybridrec.generation import TableJob, all_contexts
from hybridrec.types import UTC, ClusterCatalog, Rankings, TimeWindow, TransitionSet

PLUGIN_SITE = Path(__file__).resolve().parent / "plugin_site"


@pytest.fixture(scope="module")
def scale_plugin_site() -> Iterator[Path]:
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(PLUGIN_SITE), *([old] if old else [])])
    sys.path.insert(0, str(PLUGIN_SITE))
    plugins.reset()
    try:
        yield PLUGIN_SITE
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
        sys.path.remove(str(PLUGIN_SITE))
        sys.modules.pop("hybridrec_scaletest", None)
        plugins.reset()


@pytest.fixture(scope="module")
def ray_cluster(scale_plugin_site: Path) -> Iterator[Any]:
    """One local 2-CPU Ray cluster per test module (start-up costs seconds)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=128 * 1024 * 1024,
        configure_logging=True,
        logging_level=logging.WARNING,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


TINY = PluginRef(plugin="hf", options={"preset": "tiny", "device": "cpu", "seed": 7})


def catalog(n: int) -> ClusterCatalog:
    kinds = ["action", "drama", "comedy", "horror", "romance"]
    return ClusterCatalog.from_descriptions([f"{kinds[i % 5]} {kinds[(i // 5) % 5]} c{i}" for i in range(n)])


def synthetic_transitions(n_clusters: int, n: int, seed: int = 0) -> TransitionSet:
    """``n`` random transitions over 30 days from 2000-06-01 (c3 novel, sorted by time)."""
    rng = np.random.default_rng(seed)
    c1 = rng.integers(0, n_clusters, n)
    c2 = (c1 + rng.integers(1, n_clusters, n)) % n_clusters
    c3 = rng.integers(0, n_clusters, n)
    bad = (c3 == c1) | (c3 == c2)
    c1, c2, c3 = c1[~bad], c2[~bad], c3[~bad]
    start = int(datetime(2000, 6, 1, tzinfo=UTC).timestamp())
    ts = np.sort(start + rng.integers(0, 30 * 86400, len(c1)))
    return TransitionSet(c1, c2, c3, ts, np.full(len(c1), -1), n_clusters)


def tiny_job(n_clusters: int = 30, *, batch_size: int = 100, k: int = 10,
             generator: PluginRef | None = None, snapshot: Path | None = None) -> TableJob:
    """Every ordered pair of an ``n_clusters`` catalog, ranked by the tiny ``hf`` generator;
    with ``snapshot``, evidence from an ``exact`` knowledge snapshot at that path."""
    return TableJob(
        generator=generator or TINY,
        catalog=catalog(n_clusters),
        contexts=all_contexts(n_clusters),
        k=k,
        batch_size=batch_size,
        knowledge_store=PluginRef(plugin="exact") if snapshot is not None else None,
        snapshot=snapshot,
    )


def build_snapshot(n_clusters: int, out_dir: Path) -> Path:
    """An ``exact`` knowledge snapshot of synthetic transitions, built into ``out_dir``."""
    store_cls = plugins.get("knowledge_store", "exact")
    store = store_cls(store_cls.Options(), catalog(n_clusters))  # type: ignore[call-arg]
    window = TimeWindow(start=datetime(2000, 6, 1, tzinfo=UTC), end=datetime(2000, 7, 1, tzinfo=UTC))
    store.build(synthetic_transitions(n_clusters, 3000), window, out_dir)  # type: ignore[attr-defined]
    return out_dir


class Collect:
    """A sink that keeps every batch it was handed."""

    def __init__(self) -> None:
        self.parts: list[Rankings] = []

    def __call__(self, rankings: Rankings) -> None:
        self.parts.append(rankings)

    @property
    def sizes(self) -> list[int]:
        return [len(p) for p in self.parts]

    def cat(self, name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in self.parts])
