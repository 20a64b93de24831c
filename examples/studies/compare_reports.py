"""Paired difference of one arm's HR@5 between two backtest reports over the same test days.

    python examples/studies/compare_reports.py A/report.json B/report.json [ARM]

Prints B − A for ARM (default ``hybrid``): the transition-weighted HR@5 difference over the
days both reports scored, with a 95% interval from resampling days (5,000 draws, seed 0), the
same day-block bootstrap as the report's own paired CIs. Used to compare variants of a study
(docs/backtest.md: recent-window evidence).
"""

from __future__ import annotations

import json
import sys

import numpy as np


def per_day(path: str, arm: str) -> dict[str, tuple[int, float]]:
    with open(path) as fh:
        report = json.load(fh)
    rows = [a for a in report["arms"] if a["name"] == arm]
    if not rows:
        raise SystemExit(f"{path}: no arm {arm!r}")
    return {d["day"]: (d["n"], d["hr@5"]) for d in rows[0]["per_day"]}


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        raise SystemExit(__doc__)
    arm = argv[2] if len(argv) == 3 else "hybrid"
    a, b = per_day(argv[0], arm), per_day(argv[1], arm)
    days = sorted(set(a) & set(b))
    if not days:
        raise SystemExit("the reports share no scored day")
    n = np.array([a[d][0] for d in days], dtype=float)
    hr_a = np.array([a[d][1] for d in days])
    hr_b = np.array([b[d][1] for d in days])
    diff = (hr_b - hr_a) * n
    draws = np.random.default_rng(0).integers(0, len(days), (5000, len(days)))
    boot = diff[draws].sum(axis=1) / n[draws].sum(axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    print(f"{arm}: B - A = {diff.sum() / n.sum():+.4f} [{lo:+.4f}, {hi:+.4f}] over {len(days)} days "
          f"(A {np.sum(hr_a * n) / n.sum():.4f}, B {np.sum(hr_b * n) / n.sum():.4f})")


if __name__ == "__main__":
    main(sys.argv[1:])
