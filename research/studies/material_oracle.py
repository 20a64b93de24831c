"""Oracle: how much of the served table could a regeneration keep without serving other lists?

Issue 31 asks a refresh to re-rank at most 15% of the contexts a full regeneration would, at
HR@5 no lower than exact delta. This study measures what any keep rule is up against, on ML-1M's
validation days only (2000-05-18 to 05-31, before the demo's test window): a workspace with the
``rerank`` preset (the demo's stack) is updated as the preset's policy says (a fine-tune and a
full regeneration on the first day, then a knowledge refresh every ``rag_every_days``), each
table ranked in full, and consecutive tables are compared context by context:

* how many contexts' served top-5 *set* (what HR@5 reads) changed, over all contexts and over the
  lookups of the days the newer table serves; and how many changed although the store's own
  top-5 candidate set did not (the model reordering on small moves of the numbers);
* for each tolerance of the material-change rule (:func:`hybridrec.engine.tables.evidence_distance`
  between the two snapshots' evidence): the share of contexts it would rank, the share of
  lookups a kept row would serve with another top-5 set than a fresh ranking, and HR@5 of those
  lookups served by kept rows where kept against fresh rows everywhere;
* how concentrated the lookups are: the share of the next days' lookups whose context is among
  the 15% of contexts with the most (decayed) support before the refresh.

An ideal rule that knew which lists change would still rank every context whose list changed, so
the share of changed top-5 sets bounds from below what a rule that serves exact delta's lists can
skip. It prints a table and writes JSON::

    python research/studies/material_oracle.py --out material-oracle.json

It builds on the public workspace API only (``Workspace``, ``run_update``); nothing here is used
by the library. Results: docs/results.md, "Regenerating only what could change".
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.config import load_preset
from hybridrec.data import load_dataset, load_prepared
from hybridrec.data.io import write_interaction_file, write_item_file
from hybridrec.engine import run_update
from hybridrec.engine.components import Pipeline
from hybridrec.engine.tables import EvidenceSignature, evidence_distance, signature_of
from hybridrec.generation import all_contexts
from hybridrec.ingest import transitions_of
from hybridrec.types import UTC, datetime_to_ts
from hybridrec.workspace import Workspace

TOLERANCES = (0.05, 0.1, 0.2, 0.3)
TOP_SHARE = 0.15


def build_tables(root: Path, start: datetime, end: datetime) -> tuple[list[dict[str, Any]], Any]:
    """Update a workspace with the rerank preset (full regenerations) at each refresh day in
    ``[start, end)``; each table's top-5 ids, its snapshot's evidence signature and the store's
    top-5 candidates, for every context."""
    config = load_preset(overrides=("serving.regenerate=full",))
    every = float(config.update_policy.options["rag_every_days"])
    data = load_dataset("ml-1m")
    items = write_item_file(data, root / "items.csv")
    Workspace.init(root / "ws", config)
    tables: list[dict[str, Any]] = []
    day, previous = start, None
    while day < end:
        keep = data.interactions.ts < datetime_to_ts(day)
        if previous is not None:
            keep &= data.interactions.ts >= datetime_to_ts(previous)
        log = write_interaction_file(data, root / f"log-{day.date()}.csv", rows=np.flatnonzero(keep))
        clock = time.perf_counter()
        report = run_update(Workspace(root / "ws"), log, items=items, now=day, data_until=day)
        kinds = [a.kind for a in report.actions]
        if "regenerate_table" not in kinds:
            raise RuntimeError(f"the update of {day.date()} regenerated nothing ({kinds})")
        ws = Workspace(root / "ws")
        catalog = ws.catalog()
        contexts = all_contexts(len(catalog))
        entry = ws.current()
        assert entry is not None
        store = Pipeline(ws.config, catalog).knowledge_store
        snapshot = store.open(ws.verified("knowledge", entry["knowledge"]).path / "snapshot")
        signature = signature_of(contexts, snapshot, store=ws.config.knowledge_store.plugin)
        evidence = snapshot.evidence(contexts)
        tables.append({
            "day": day, "actions": kinds, "seconds": time.perf_counter() - clock,
            "top5": ws.lookup_batch(contexts, 5).ids, "signature": signature,
            "store_top5": np.sort(np.asarray(evidence.cluster)[:, :5], axis=1),
        })
        print(f"{day.date()}: {', '.join(kinds)} ({tables[-1]['seconds']:.0f} s)", flush=True)
        previous, day = day, day + timedelta(days=every)
    return tables, (ws, contexts)


def lookups(ws: Workspace, contexts: np.ndarray, lo: datetime, hi: datetime,
            half_life: float | None) -> dict[str, np.ndarray]:
    """The lookups in ``[lo, hi)`` (their context's row and next cluster) and every context's
    support before ``lo`` (decayed with ``half_life`` days as the evidence is). The lookups come
    from the packaged data set, which must agree with what the workspace ingested."""
    transitions = load_prepared("ml-1m").transitions
    entry = ws.current()
    assert entry is not None
    ingested = transitions_of(ws.load_batches(list(entry["data"])), len(ws.catalog()),
                              ws.config.data.min_rating)
    if not (len(ws.catalog()) == transitions.n_clusters
            and np.array_equal(ingested.c3, transitions.c3[: len(ingested)])):
        raise RuntimeError("the workspace's transitions are not the packaged data set's")
    n = len(ws.catalog())
    row = np.full(n * n, -1, dtype=np.int64)
    row[contexts[:, 0] * n + contexts[:, 1]] = np.arange(contexts.shape[0])
    t_lo, t_hi = datetime_to_ts(lo), datetime_to_ts(hi)
    window = (transitions.ts >= t_lo) & (transitions.ts < t_hi)
    before = transitions.ts < t_lo
    age = (t_lo - transitions.ts[before]) / 86400.0
    weight = np.ones(age.shape) if half_life is None else 2.0 ** (-age / half_life)
    support = np.bincount(row[transitions.c1[before] * n + transitions.c2[before]], weights=weight,
                          minlength=contexts.shape[0])
    return {"row": row[transitions.c1[window] * n + transitions.c2[window]],
            "next": transitions.c3[window], "support": support}


def compare(old: dict[str, Any], new: dict[str, Any], look: dict[str, np.ndarray]) -> dict[str, Any]:
    """What keeping ``old``'s rows would have served instead of ``new``'s."""
    changed = (np.sort(old["top5"], axis=1) != np.sort(new["top5"], axis=1)).any(axis=1)
    store_same = (old["store_top5"] == new["store_top5"]).all(axis=1)
    rows, nxt = look["row"], look["next"]
    hit_old = (old["top5"][rows] == nxt[:, None]).any(axis=1)
    hit_new = (new["top5"][rows] == nxt[:, None]).any(axis=1)
    sig_old: EvidenceSignature = old["signature"]
    dist = evidence_distance(sig_old, new["signature"])
    out: dict[str, Any] = {
        "from": str(old["day"].date()), "to": str(new["day"].date()), "lookups": int(rows.size),
        "top5_changed": float(changed.mean()),
        "top5_changed_lookups": float(changed[rows].mean()) if rows.size else None,
        "top5_changed_store_same": float(changed[store_same].mean()),
        "store_top5_same": float(store_same.mean()),
        "hr5_fresh": float(hit_new.mean()), "hr5_all_kept": float(hit_old.mean()),
        "tolerances": [],
    }
    for tol in TOLERANCES:
        kept = dist <= tol
        served = np.where(kept[rows], hit_old, hit_new)
        out["tolerances"].append({
            "tolerance": tol, "ranked": float(1.0 - kept.mean()),
            "kept_changed_lookups": float((kept & changed)[rows].mean()) if rows.size else None,
            "hr5": float(served.mean()),
        })
    top = np.argsort(-look["support"], kind="stable")[: int(TOP_SHARE * len(changed))]
    ranked_top = np.zeros(len(changed), dtype=bool)
    ranked_top[top] = True
    out["top_support"] = {
        "ranked": TOP_SHARE, "lookups_covered": float(ranked_top[rows].mean()) if rows.size else None,
        "hr5": float(np.where(ranked_top[rows], hit_new, hit_old).mean()),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--start", default="2000-05-18")
    parser.add_argument("--end", default="2000-06-01", help="the first day not used (the test start)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    end = datetime.fromisoformat(args.end).replace(tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        tables, (ws, contexts) = build_tables(Path(tmp), start, end)
        half_life = ws.config.evidence.half_life_days if ws.config.evidence is not None else None
        results = []
        pairs = [(i - 1, i) for i in range(1, len(tables))] + [(0, i) for i in range(2, len(tables))]
        for a, b in pairs:
            lo = tables[b]["day"]
            hi = min(end, lo + (tables[1]["day"] - tables[0]["day"]))
            results.append(compare(tables[a], tables[b], lookups(ws, contexts, lo, hi, half_life)))
    print("\nfrom → to | lookups | top-5 set changed: contexts / lookups / store's top 5 unchanged | "
          "HR@5 fresh / all kept | " + " | ".join(f"tol {t}: ranked, changed lookups, HR@5" for t in TOLERANCES)
          + f" | top {TOP_SHARE:.0%} by support: lookups covered, HR@5")
    for r in results:
        tols = " | ".join(f"{t['ranked']:.0%}, {t['kept_changed_lookups']:.0%}, {t['hr5']:.4f}"
                          for t in r["tolerances"])
        print(f"{r['from']} → {r['to']} | {r['lookups']} | {r['top5_changed']:.0%} / "
              f"{r['top5_changed_lookups']:.0%} / {r['top5_changed_store_same']:.0%} | "
              f"{r['hr5_fresh']:.4f} / {r['hr5_all_kept']:.4f} | {tols} | "
              f"{r['top_support']['lookups_covered']:.0%}, {r['top_support']['hr5']:.4f}")
    if args.out is not None:
        args.out.write_text(json.dumps({"start": args.start, "end": args.end, "pairs": results}, indent=2))


if __name__ == "__main__":
    main()
