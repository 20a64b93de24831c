"""The ``serving`` benchmark suite (``hybridrec bench serving --json``).

* ``batch_lookup_per_s`` — in-process batch lookup through the ``memory`` backend (301 clusters,
  k = 10 rows, top-5 served, random contexts incl. backoff-free rows), best of 3;
* ``sqlite_lookup_p50_ms`` / ``sqlite_lookup_p99_ms`` — single lookups through the ``sqlite``
  backend's read-only connection;
* ``promote_90k_seconds`` — writing, committing and promoting a 90,300-row SQLite table in a
  workspace while reader threads keep serving batches; ``reader_batches_during_promote`` counts
  their lookups and ``mixed_batches`` the batches that mixed two versions (must be 0).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.config import PipelineConfig
from hybridrec.generation import all_contexts
from hybridrec.serving import MemoryTable, SqliteBackend, SuccessorFallback
from hybridrec.types import Rankings, TransitionSet

N_CLUSTERS = 301
K = 10


def synthetic_rankings(n_clusters: int, k: int, marker: float = 0.0, seed: int = 0) -> Rankings:
    """Valid rankings for every context; every score's integer part is ``marker``."""
    contexts = all_contexts(n_clusters)
    rng = np.random.default_rng(seed)
    offsets = rng.permutation(np.arange(1, n_clusters - 1))[:k]
    ids = (contexts[:, 1:2] + offsets[None, :]) % n_clusters
    ids = np.where(ids == contexts[:, 0:1], (contexts[:, 1:2] + n_clusters - 1) % n_clusters, ids)
    scores = marker + np.linspace(0.9, 0.1, k)[None, :].repeat(contexts.shape[0], axis=0)
    return Rankings(contexts=contexts, ids=ids.astype(np.int64), scores=scores)


def synthetic_backoff(n_clusters: int, width: int, seed: int = 0) -> SuccessorFallback:
    rng = np.random.default_rng(seed)
    n = 20_000
    c1 = rng.integers(0, n_clusters, n)
    c2 = (c1 + rng.integers(1, n_clusters, n)) % n_clusters
    c3 = (c2 + rng.integers(1, n_clusters - 1, n)) % n_clusters
    c3 = np.where(c3 == c1, (c3 + 1) % n_clusters, c3)
    c3 = np.where(c3 == c2, (c3 + 1) % n_clusters, c3)
    c3 = np.where(c3 == c1, (c3 + 1) % n_clusters, c3)
    transitions = TransitionSet(c1, c2, c3, np.arange(n), np.zeros(n, dtype=np.int64), n_clusters)
    return SuccessorFallback.from_transitions(transitions, width)


def _batch_lookup(quick: bool) -> float:
    table = MemoryTable.build(synthetic_rankings(N_CLUSTERS, K), synthetic_backoff(N_CLUSTERS, K + 2), K)
    n = 200_000 if quick else 1_000_000
    rng = np.random.default_rng(1)
    contexts = all_contexts(N_CLUSTERS)[rng.integers(0, N_CLUSTERS * (N_CLUSTERS - 1), n)]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        table.lookup_batch(contexts, 5)
        best = min(best, time.perf_counter() - started)
    return n / best


def _sqlite_latency(quick: bool, folder: Path) -> tuple[float, float]:
    backend = SqliteBackend()
    writer = backend.writer(folder, n_clusters=N_CLUSTERS, k=K)
    rankings = synthetic_rankings(N_CLUSTERS, K)
    writer.write(rankings)
    writer.set_backoff(synthetic_backoff(N_CLUSTERS, K + 2))
    writer.commit({"bench": True})
    reader = backend.reader(folder)
    n = 2_000 if quick else 20_000
    rng = np.random.default_rng(2)
    contexts = rankings.contexts[rng.integers(0, len(rankings), n)]
    for c in contexts[:200]:
        reader.lookup((int(c[0]), int(c[1])), 5)
    latencies = np.empty(n)
    for i, c in enumerate(contexts):
        started = time.perf_counter()
        reader.lookup((int(c[0]), int(c[1])), 5)
        latencies[i] = time.perf_counter() - started
    reader.close()
    return float(np.percentile(latencies, 50) * 1e3), float(np.percentile(latencies, 99) * 1e3)


def promote_table(ws: Any, rankings: Rankings, backoff: SuccessorFallback, k: int) -> str:
    """Write ``rankings`` as a new SQLite table version of workspace ``ws`` and promote it."""
    staging = ws.store.stage("tables")
    writer = SqliteBackend().writer(staging.path, n_clusters=backoff.n_clusters, k=k)
    for start in range(0, len(rankings), 8192):
        part = slice(start, start + 8192)
        writer.write(Rankings(rankings.contexts[part], rankings.ids[part], rankings.scores[part]))
    writer.set_backoff(backoff)
    writer.commit({"backend": "sqlite"})
    version = ws.store.commit(staging, {"backend": "sqlite", "rows": len(rankings)})
    entry = dict(ws.current() or {})
    if not entry.get("catalog"):  # a served table needs the catalog it ranks (the state's rule)
        from hybridrec.types import ClusterCatalog

        catalog = ClusterCatalog.from_descriptions([f"cluster {i}" for i in range(backoff.n_clusters)])
        cat_staging = ws.store.stage("catalog")
        (cat_staging.path / "catalog.json").write_text(catalog.model_dump_json(indent=1))
        entry["catalog"] = ws.store.commit(cat_staging, {"clusters": len(catalog), "hash": catalog.hash}).id
    entry["table"] = version.id
    ws.promote(entry)
    return str(version.id)


def _promote(quick: bool, root: Path) -> dict[str, Any]:
    from hybridrec.workspace import Workspace

    ws = Workspace.init(root / "ws", PipelineConfig())
    backoff = synthetic_backoff(N_CLUSTERS, K + 2)
    promote_table(ws, synthetic_rankings(N_CLUSTERS, K, marker=1.0), backoff, K)
    stop = threading.Event()
    counts = {"batches": 0, "mixed": 0, "errors": 0}
    lock = threading.Lock()
    rng = np.random.default_rng(3)
    queries = all_contexts(N_CLUSTERS)[rng.integers(0, N_CLUSTERS * (N_CLUSTERS - 1), 512)]

    def read() -> None:
        while not stop.is_set():
            try:
                served = ws.lookup_batch(queries, 5)
                markers = np.unique(np.floor(served.scores))
                with lock:
                    counts["batches"] += 1
                    counts["mixed"] += int(markers.size != 1)
            except Exception as exc:  # a reader must never fail during a promotion
                with lock:
                    counts["errors"] += 1
                print(f"bench serving: reader error {exc!r}", file=sys.stderr)

    threads = [threading.Thread(target=read, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    candidate = synthetic_rankings(N_CLUSTERS, K, marker=2.0, seed=1)
    started = time.perf_counter()
    promote_table(ws, candidate, backoff, K)
    seconds = time.perf_counter() - started
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    ws.close()
    return {"promote_90k_seconds": seconds, "rows": len(candidate),
            "reader_batches_during_promote": counts["batches"], "mixed_batches": counts["mixed"],
            "reader_errors": counts["errors"]}


def serving_suite(quick: bool) -> dict[str, float | int | str]:
    """Serving table: batch lookup rate, SQLite single-lookup latency, promotion under reads, and
    a ``hybridrec update`` on ML-1M: the preset's regeneration and exact delta against full
    regeneration (:func:`update_delta`)."""
    with tempfile.TemporaryDirectory(prefix="hybridrec-bench-serving-") as tmp:
        root = Path(tmp)
        print("bench serving: batch lookup", file=sys.stderr)
        per_s = _batch_lookup(quick)
        print("bench serving: sqlite latency", file=sys.stderr)
        (root / "latency").mkdir()
        p50, p99 = _sqlite_latency(quick, root / "latency")
        print("bench serving: promotion under reads", file=sys.stderr)
        promotion = _promote(quick, root)
        print("bench serving: hybridrec update on ML-1M, delta against full regeneration", file=sys.stderr)
        (root / "update").mkdir()
        try:
            update = update_delta(quick, root / "update")
        except Exception as exc:  # data or model packages missing: say why, keep the other keys
            update = {"update_missing": f"{type(exc).__name__}: {exc}"}
    return {
        "batch_lookup_per_s": round(per_s),
        "sqlite_lookup_p50_ms": round(p50, 4),
        "sqlite_lookup_p99_ms": round(p99, 4),
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in promotion.items()},
        **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in update.items()},
    }


# -- hybridrec update: delta against full regeneration -------------------------------------------

#: The data set clock of the update benchmark: the first update sees ML-1M before it, the second
#: the days until the preset's next refresh (one that keeps the adapter, as the hybrid policy does).
UPDATE_START = "2000-06-01"


def _write_ml1m(folder: Path, until_ts: int, from_ts: int | None = None) -> tuple[Path, Path]:
    """ML-1M interactions in ``[from_ts, until_ts)`` as a CSV, and its item file."""
    from hybridrec.data import load_dataset
    from hybridrec.data.io import write_interaction_file, write_item_file

    data = load_dataset("ml-1m")
    keep = data.interactions.ts < until_ts
    if from_ts is not None:
        keep &= data.interactions.ts >= from_ts
    log = write_interaction_file(data, folder / ("interactions.csv" if from_ts is None else "next.csv"),
                                 rows=np.flatnonzero(keep))
    return log, write_item_file(data, folder / "items.csv")


def update_delta(quick: bool, root: Path) -> dict[str, Any]:
    """``hybridrec update`` on ML-1M after a knowledge refresh that keeps the adapter, three
    ways: the preset's regeneration (``[serving]`` delta with the material-change rule), exact
    delta (tolerance 0) and full regeneration; the seconds of each whole update, the contexts
    each ranked, whether exact delta serves exactly the full table, and how many served lists
    the material rule changed."""
    import json
    import shutil
    from datetime import datetime, timedelta

    from hybridrec.config import load_preset
    from hybridrec.engine import run_update
    from hybridrec.types import UTC, datetime_to_ts
    from hybridrec.workspace import Workspace

    # The demo's stack (the rerank preset), with a smaller untimed first fine-tune: the timed
    # update is a refresh and a regeneration on the adapter it trained.
    examples = 2000 if quick else 5000
    config = load_preset(overrides=(
        f"initial_fine_tune.options.max_examples={examples}", "initial_fine_tune.options.base_epochs=1",
        "guardrails.enabled=false",
    ))
    start = datetime.fromisoformat(UPDATE_START).replace(tzinfo=UTC)
    later = start + timedelta(days=float(config.update_policy.options["rag_every_days"]))
    log, items = _write_ml1m(root, datetime_to_ts(start))
    nxt, _ = _write_ml1m(root, datetime_to_ts(later), datetime_to_ts(start))
    base = Workspace.init(root / "delta", config)
    # each file is declared complete until its day boundary, so the knowledge's age is whole days
    run_update(base, log, items=items, now=start, data_until=start)  # fine-tune, refresh, full regeneration: untimed
    folders = {"delta": base.root}
    for mode, serving in (("exact", {"tolerance": 0.0}), ("full", {"regenerate": "full"})):
        folders[mode] = root / mode
        shutil.copytree(base.root, folders[mode])
        raw = json.loads((folders[mode] / "config.json").read_text())
        raw["serving"].update(serving)
        (folders[mode] / "config.json").write_text(json.dumps(raw))
    seconds: dict[str, float] = {}
    kinds: dict[str, list[str]] = {}
    ranked: dict[str, int] = {}
    tables: dict[str, Any] = {}
    contexts = all_contexts(len(base.catalog()))
    for mode, folder in folders.items():
        ws = Workspace(folder)
        t0 = time.perf_counter()
        report = run_update(ws, nxt, items=items, now=later, data_until=later)
        seconds[mode] = time.perf_counter() - t0
        kinds[mode] = [a.kind for a in report.actions]
        ws = Workspace(folder)
        manifest = ws.store.get("tables", ws.current()["table"]).manifest  # type: ignore[index]
        ranked[mode] = int(manifest.get("regenerate", {}).get("ranked", -1))
        tables[mode] = ws.lookup_batch(contexts, 10)
    if not all("regenerate_table" in k for k in kinds.values()):
        # a ratio of updates that regenerated nothing would measure nothing
        raise RuntimeError(f"the timed updates did not regenerate the table (actions {kinds}); "
                           f"the preset's policy did not refresh at {later.date()}")
    same_actions = kinds["delta"] == kinds["exact"] == kinds["full"]
    exact, full, delta = tables["exact"], tables["full"], tables["delta"]
    return {
        "update_delta_seconds": seconds["delta"],
        "update_exact_seconds": seconds["exact"],
        "update_full_seconds": seconds["full"],
        "update_delta_ratio": seconds["delta"] / seconds["full"] if seconds["full"] else float("nan"),
        "update_exact_ratio": seconds["exact"] / seconds["full"] if seconds["full"] else float("nan"),
        "update_actions": ",".join(kinds["delta"]),
        "update_delta_ranked_contexts": ranked["delta"],
        "update_exact_ranked_contexts": ranked["exact"],
        "update_contexts": int(contexts.shape[0]),
        "update_exact_tables_identical": bool(
            same_actions and np.array_equal(exact.ids, full.ids) and np.array_equal(exact.scores, full.scores)),
        "update_delta_lists_changed": int((delta.ids[:, :5] != full.ids[:, :5]).any(axis=1).sum()),
    }
