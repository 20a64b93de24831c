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
the model's re-ranked list. Differences are paired per transition, with a day-level bootstrap
95% CI. It prints a table and writes JSON::

    python research/studies/fine_tune_ceiling.py --months 2000-07,2000-09 --out ceiling.json

Each variant's ``options`` are merged over the demo's fine-tune options (``{}`` is the demo's
own LoRA). Nothing here is used by the library; results: docs/results.md, "Fine-tunes against
RAG alone".
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.backtest.config import DEMO_FINE_TUNE, DEMO_INITIAL_FINE_TUNE, BacktestConfig
from hybridrec.backtest.study import build_stack, load_data, seed_everything
from hybridrec.plugins import build
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


def _ci(diff: np.ndarray, days: np.ndarray, rng: np.random.Generator, draws: int = 2000) -> list[float]:
    """Day-level bootstrap 95% CI of the mean of per-row ``diff``."""
    uniq, inverse = np.unique(days, return_inverse=True)
    sums = np.bincount(inverse, weights=diff, minlength=uniq.shape[0])
    counts = np.bincount(inverse, minlength=uniq.shape[0]).astype(float)
    picks = rng.integers(0, uniq.shape[0], size=(draws, uniq.shape[0]))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    return [round(float(np.quantile(means, 0.025)), 4), round(float(np.quantile(means, 0.975)), 4)]


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

    seed_everything(args.seed)
    config = BacktestConfig(dataset="ml-1m")
    catalog, transitions = load_data(config)
    work = Path(tempfile.mkdtemp(prefix="fine-tune-ceiling-"))
    generator = build_stack(config, catalog, work).generator
    variants = json.loads(args.variants) if args.variants else VARIANTS

    def tuner(**overrides: Any) -> Any:
        return build("fine_tuner", {"plugin": "lora", "options": {**DEMO_FINE_TUNE, "seed": args.seed, **overrides}})

    started = time.perf_counter()
    init = tuner(**DEMO_INITIAL_FINE_TUNE).fine_tune(
        generator, transitions, TimeWindow(start=FIRST, end=START), work / "init")
    print(f"initial model (all history before {START.date()}): {time.perf_counter() - started:.0f} s")
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {"seed": args.seed, "days": args.days, "months": {}}
    for month in args.months.split(","):
        window = _month(month)
        rows = transitions.window(window)
        # every row but the first is scored (a fine-tuner's split keeps one row on each side)
        _, scored = tuner(holdout_fraction=0.999999, holdout_max=10**9).build_examples(
            rows, None, max(1, generator.evidence_items), history=transitions)
        days = scored.ts // DAY

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
            tuner(**spec["options"]).fine_tune(
                generator, transitions, train_window, work / month / name, previous_adapter=previous)
            seconds = time.perf_counter() - t0
            diff = _hits(generator, scored) - base
            line["variants"][name] = {
                "train": spec["train"], "window": [str(train_window.start.date()), str(train_window.end.date())],
                "hr@5": round(float(base.mean() + diff.mean()), 4), "delta": round(float(diff.mean()), 4),
                "ci95": _ci(diff, days, rng), "seconds": round(seconds, 1),
            }
            v = line["variants"][name]
            print(f"  {name:>13} ({spec['train']:>5})  HR@5 {v['hr@5']:.4f}  Δ {v['delta']:+.4f} "
                  f"[{v['ci95'][0]:+.4f}, {v['ci95'][1]:+.4f}]  {seconds:5.0f} s", flush=True)
        results["months"][month] = line
        if args.out is not None:
            args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
