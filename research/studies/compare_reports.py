"""Paired difference of one arm's HR@5 between backtest reports over the same test days.

    python research/studies/compare_reports.py A/report.json B/report.json [--arm ARM]
    python research/studies/compare_reports.py --a A1 A2 A3 --b B1 B2 B3 [--arm ARM]

Prints B − A for ARM (default ``hybrid``): the transition-weighted HR@5 difference over the
days every report scored, with a 95% interval from resampling days (5,000 draws, seed 0), the
same day-block bootstrap as the report's own paired CIs. With several pairs (the same study run
with different training seeds, ``--seed``), each day's difference is averaged over the pairs
first, so the interval is over days with the training noise averaged out; each pair's own
difference is printed too. Used to compare variants of a study (docs/backtest.md).
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def per_day(path: str, arm: str) -> dict[str, tuple[int, float]]:
    with open(path) as fh:
        report = json.load(fh)
    rows = [a for a in report["arms"] if a["name"] == arm]
    if not rows:
        raise SystemExit(f"{path}: no arm {arm!r}")
    return {d["day"]: (d["n"], d["hr@5"]) for d in rows[0]["per_day"]}


def paired(pairs: list[tuple[str, str]], arm: str) -> tuple[float, float, float, int]:
    """(difference, low, high, days) of B − A averaged over ``pairs``."""
    tables = [(per_day(a, arm), per_day(b, arm)) for a, b in pairs]
    days = sorted(set.intersection(*(set(a) & set(b) for a, b in tables)))
    if not days:
        raise SystemExit("the reports share no scored day")
    n = np.array([tables[0][0][d][0] for d in days], dtype=float)
    diff = np.mean([[b[d][1] - a[d][1] for d in days] for a, b in tables], axis=0) * n
    draws = np.random.default_rng(0).integers(0, len(days), (5000, len(days)))
    boot = diff[draws].sum(axis=1) / n[draws].sum(axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(diff.sum() / n.sum()), float(lo), float(hi), len(days)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="*", help="A/report.json B/report.json")
    parser.add_argument("--a", nargs="+", default=[], help="reports of variant A (one per seed)")
    parser.add_argument("--b", nargs="+", default=[], help="reports of variant B, in the same order")
    parser.add_argument("--arm", default="hybrid")
    args = parser.parse_args()
    a_list, b_list = list(args.a), list(args.b)
    if args.reports:
        if len(args.reports) != 2 or a_list or b_list:
            parser.error("give two reports, or --a and --b")
        a_list, b_list = [args.reports[0]], [args.reports[1]]
    if not a_list or len(a_list) != len(b_list):
        parser.error("--a and --b need the same number of reports")
    pairs = list(zip(a_list, b_list, strict=True))
    if len(pairs) > 1:
        for a, b in pairs:
            d, lo, hi, days = paired([(a, b)], args.arm)
            print(f"  {b} - {a}: {d:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    d, lo, hi, days = paired(pairs, args.arm)
    label = "B - A" if len(pairs) == 1 else f"B - A, mean of {len(pairs)} pairs"
    print(f"{args.arm}: {label} = {d:+.4f} [{lo:+.4f}, {hi:+.4f}] over {days} days")


if __name__ == "__main__":
    main()
