"""Ceiling: how much HR@5 could any fine-tune of the demo's re-ranker add over RAG alone?

Issue 29 asks ``hybrid`` (RAG refreshes plus a monthly fine-tune) to beat ``rag-only`` (the same
refreshes, never fine-tuned) by +0.004 HR@5 on ML-1M. This study measures what a fine-tune of
the demo's model can add at all, one test month at a time, against the model ``rag-only``
serves (the initial model, trained from scratch on all history before the start):

* ``past`` variants train on what a fine-tune may read: the ``--days`` before the month (the
  demo's monthly fine-tune reads the month before it), warm-started from the initial model, or
  (``"from": "scratch"``) a new model trained from scratch on all history before the month;
* ``month`` variants are a deliberate **leak**: they train on the very month they are scored on
  (in-sample). No fine-tune that reads only the past can be expected to beat a fit of the month
  itself, so a leak's gain over the initial model bounds what the honest recipes can reach.

Every variant is scored on the same rows: each transition of the month, its prompt carrying the
count evidence of everything before its own time (as a daily refresh would serve it), HR@5 of
the model's re-ranked list. Differences are paired per transition, with the backtest's
day-level paired bootstrap 95% CI (:func:`hybridrec.backtest.metrics.paired_bootstrap`). It prints a table and writes JSON::

    python research/studies/fine_tune_ceiling.py --months 2000-07,2000-09 --out ceiling.json

Each variant's ``options`` are merged over the demo's fine-tune options (``{}`` is the demo's
own LoRA). Nothing here is used by the library; results: docs/results.md, "Fine-tunes against
RAG alone".
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from fine_tune_probe import demo_setup, demo_tuner

from hybridrec.backtest.config import DEMO_INITIAL_FINE_TUNE
from hybridrec.backtest.metrics import DayGroups, paired_bootstrap
from hybridrec.types import TimeWindow

DAY = 86400
START = datetime(2000, 6, 1, tzinfo=UTC)  # the demo's test start: the initial model sees only before
FIRST = datetime(2000, 4, 1, tzinfo=UTC)  # before ML-1M's first rating

VARIANTS: dict[str, dict[str, Any]] = {
    "lora-past": {"train": "past", "options": {}},
    "full-past": {"train": "past", "options": {"mode": "full", "max_examples": None, "epochs": 3, "select_epoch": True}},
    "scratch-past": {"train": "past", "from": "scratch", "options": dict(DEMO_INITIAL_FINE_TUNE)},
    "lora-month": {"train": "month", "options": {"holdout_max": 1}},
    "full-month": {"train": "month", "options": {"mode": "full", "max_examples": None, "epochs": 3, "holdout_max": 1}},
}


def _month(text: str) -> TimeWindow:
    start = datetime.fromisoformat(f"{text}-01").replace(tzinfo=UTC)
    end = (start + timedelta(days=32)).replace(day=1)
    return TimeWindow(start=start, end=end)


def _hits(generator: Any, scored: Any) -> np.ndarray:
    """Per row: is the answer in the generator's (active adapter's) re-ranked top 5?"""
    ranked = generator.rank(scored.contexts, scored.evidence, 5, as_of=scored.ts)
    return np.asarray((ranked.ids == scored.labels[:, None]).any(axis=1), dtype=float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", default="2000-07,2000-09", help="comma-separated test months (YYYY-MM)")
    parser.add_argument("--days", type=int, default=30, help="days before the month a past fine-tune reads")
    parser.add_argument("--variants", default=None, help="JSON: name -> {train, from, options} (default: all five)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    transitions, work, generator = demo_setup(args.seed, "fine-tune-ceiling-")
    variants = json.loads(args.variants) if args.variants else VARIANTS

    started = time.perf_counter()
    init = demo_tuner(args.seed, **DEMO_INITIAL_FINE_TUNE).fine_tune(
        generator, transitions, TimeWindow(start=FIRST, end=START), work / "init")
    print(f"initial model (all history before {START.date()}): {time.perf_counter() - started:.0f} s")
    results: dict[str, Any] = {"seed": args.seed, "days": args.days, "months": {}}
    for month in args.months.split(","):
        window = _month(month)
        rows = transitions.window(window)
        # every row but the first is scored (a fine-tuner's split keeps one row on each side)
        _, scored = demo_tuner(args.seed, holdout_fraction=0.999999, holdout_max=10**9).build_examples(
            rows, None, max(1, generator.evidence_items), history=transitions)
        _, day_of = np.unique(scored.ts // DAY, return_inverse=True)
        days = DayGroups(day_of, int(day_of.max()) + 1)

        generator.load_adapter(init.adapter_path)
        base = _hits(generator, scored)
        line: dict[str, Any] = {"rows": len(scored), "hr@5_initial": round(float(base.mean()), 4), "variants": {}}
        print(f"{month}: {len(scored)} scored transitions, initial model HR@5 {base.mean():.4f}")
        for name, spec in variants.items():
            if spec["train"] == "month":
                train_window = window
            elif spec.get("from") == "scratch":
                train_window = TimeWindow(start=FIRST, end=window.start)
            else:
                train_window = TimeWindow(start=window.start - timedelta(days=args.days), end=window.start)
            previous = None if spec.get("from") == "scratch" else init.adapter_path
            generator.load_adapter(init.adapter_path)
            t0 = time.perf_counter()
            demo_tuner(args.seed, **spec["options"]).fine_tune(
                generator, transitions, train_window, work / month / name, previous_adapter=previous)
            seconds = time.perf_counter() - t0
            hits = _hits(generator, scored)
            delta, ci = paired_bootstrap(hits, base, days)
            line["variants"][name] = {
                "train": spec["train"], "window": [str(train_window.start.date()), str(train_window.end.date())],
                "hr@5": round(float(hits.mean()), 4), "delta": round(delta, 4),
                "ci95": [round(ci[0], 4), round(ci[1], 4)], "seconds": round(seconds, 1),
            }
            v = line["variants"][name]
            print(f"  {name:>13} ({spec['train']:>5})  HR@5 {v['hr@5']:.4f}  Δ {v['delta']:+.4f} "
                  f"[{v['ci95'][0]:+.4f}, {v['ci95'][1]:+.4f}]  {seconds:5.0f} s", flush=True)
        results["months"][month] = line
        if args.out is not None:
            args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
