"""The report: ``report.json`` (schema ``hybridrec.report/1``, docs/protocol.md), ``report.md`` and
PNG plots (HR@5 over time, quality against cumulative cost, drift overlap decay)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.backtest.config import Claim
from hybridrec.backtest.metrics import (
    SUPPORT_BUCKETS,
    bootstrap_ci,
    paired_bootstrap,
    per_transition,
    summarize,
    support_slices,
)
from hybridrec.backtest.runner import ReplayResult

SCHEMA = "hybridrec.report/1"
PAIRED_METRICS: tuple[str, ...] = ("hr@5", "hr@1", "ndcg@5")


def _r(value: float | None, digits: int = 6) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), digits)


def _arm_metrics(run: Any) -> dict[str, Any]:
    ranks = run.all_ranks()
    covered = run.all_covered()
    metrics: dict[str, Any] = {k: _r(v) for k, v in summarize(ranks).items()}
    metrics["exact_match_rate"] = _r(run.arm.exact_match_rate()) if run.arm.llm else None
    metrics["coverage"] = _r(float(covered.mean()) if covered.size else 0.0)
    metrics.update({k: (_r(v) if isinstance(v, float) else v) for k, v in run.arm.extra_metrics().items()})
    return metrics


def _ci(run: Any, result: ReplayResult, n_boot: int, seed: int) -> dict[str, list[float | None]]:
    ranks = run.all_ranks()
    return {
        name: [_r(x) for x in bootstrap_ci(per_transition(name, ranks), result.groups,
                                            n_boot=n_boot, seed=seed)]
        for name in PAIRED_METRICS
    }


def _runs_by_seed(
    name: str, result: ReplayResult, seed: int, extra_seeds: list[tuple[int, ReplayResult]]
) -> list[tuple[int, Any, ReplayResult]]:
    """``(seed, run, result)`` of arm ``name`` for every seed it ran with (first: ``result``)."""
    out = [(seed, result.run(name), result)]
    for s, res in extra_seeds:
        if any(r.arm.name == name for r in res.runs):
            out.append((s, res.run(name), res))
    return out


def build_report(
    result: ReplayResult,
    *,
    dataset: dict[str, Any],
    reference: str,
    seed: int,
    n_boot: int,
    extra: dict[str, Any] | None = None,
    extra_seeds: list[tuple[int, ReplayResult]] | None = None,
    pair_support: np.ndarray | None = None,
) -> dict[str, Any]:
    """The ``report.json`` object (every key listed in docs/protocol.md, plus documented extras).

    ``extra_seeds``: replays of the LLM arms with further training seeds ``(seed, result)``
    over the same days. For an arm run with several seeds, ``metrics`` holds the mean over
    seeds of HR@1, HR@5, NDCG@5 and exact-match, ``seeds`` the per-seed metrics with their mean
    and min-max; ``ci95``, ``cost`` and ``per_day`` are the first seed's. Paired comparisons are
    made per seed (see :func:`_paired`). ``pair_support`` (one value per scored transition:
    earlier transitions of its exact pair before the day) adds each arm's ``slices``.
    """
    extra_seeds = list(extra_seeds or [])
    arms: list[dict[str, Any]] = []
    for run in result.runs:
        metrics = _arm_metrics(run)
        ci = _ci(run, result, n_boot, seed)
        per_day = [
            {
                "day": d["day"],
                "n": d["n"],
                "hr@1": _r(d["hr@1"]),
                "hr@5": _r(d["hr@5"]),
                "ndcg@5": _r(d["ndcg@5"]),
                "coverage": _r(d["coverage"]),
                "cum_flops": float(d["cum_flops"]),
                "actions": list(d["actions"]),
                **({"decisions": list(d.get("decisions") or [])} if run.arm.llm else {}),
            }
            for d in run.per_day
        ]
        entry: dict[str, Any] = {
            "name": run.arm.name,
            "llm": run.arm.llm,
            "metrics": metrics,
            "ci95": ci,
            "cost": {**run.arm.cost.as_dict(), "flops_by_action": dict(run.arm.cost.by_action),
                     **cost_split(run.arm.cost.by_action, run.arm.cost.seconds_by_action)},
            "initial_actions": list(run.arm.initial_actions),
            **({"initial_decisions": list(run.arm.initial_decisions)} if run.arm.llm else {}),
            "runtime_seconds": {"serving": _r(run.seconds_serving, 3),
                                "updating": _r(run.seconds_updating, 3)},
            "per_day": per_day,
        }
        described = run.arm.describe()
        if described is not None:
            entry["config"] = {"preset": run.arm.preset, **described}
        runs = _runs_by_seed(run.arm.name, result, seed, extra_seeds)
        if pair_support is not None:
            entry["slices"] = support_slices(run.all_ranks(), pair_support)
        if run.arm.llm:
            per_seed = []
            for s, r, res in runs:
                item: dict[str, Any] = {"seed": s, "metrics": metrics if r is run else _arm_metrics(r),
                                        "ci95": ci if r is run else _ci(r, res, n_boot, seed),
                                        "cost": {**r.arm.cost.as_dict(),
                                                 **cost_split(r.arm.cost.by_action,
                                                              r.arm.cost.seconds_by_action)}}
                if pair_support is not None:
                    item["slices"] = support_slices(r.all_ranks(), pair_support)
                per_seed.append(item)
            summary: dict[str, Any] = {"seeds": [p["seed"] for p in per_seed],
                                       "mean": {}, "min": {}, "max": {}}
            for key in (*PAIRED_METRICS, "exact_match_rate"):
                values = [p["metrics"].get(key) for p in per_seed]
                if any(v is None for v in values):
                    continue
                summary["mean"][key] = _r(float(np.mean(values)))
                summary["min"][key] = _r(float(np.min(values)))
                summary["max"][key] = _r(float(np.max(values)))
            summary["per_seed"] = per_seed
            entry["seeds"] = summary
            if len(per_seed) > 1:
                entry["metrics"] = {**metrics, **summary["mean"]}
                if pair_support is not None:
                    entry["slices"] = [
                        {**b, "hr@1": _r(float(np.mean([p["slices"][i]["hr@1"] for p in per_seed]))),
                         "hr@5": _r(float(np.mean([p["slices"][i]["hr@5"] for p in per_seed])))}
                        for i, b in enumerate(per_seed[0]["slices"])
                    ]
        arms.append(entry)
    paired = _paired(result, reference, seed, n_boot, extra_seeds)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "dataset": {**dataset, "test_transitions": result.n_transitions,
                    "test_days": len(result.days)},
        "arms": arms,
        "paired": paired,
        "bootstrap": {"unit": "day", "draws": n_boot, "seed": seed, "level": 0.95,
                      "method": "percentile, days resampled with replacement; paired arms share draws"},
        "reference": reference,
        "seeds": {
            "training_seeds": [seed] + [s for s, _ in extra_seeds],
            "note": "LLM arms run once per training seed; counting arms once. An arm's metrics "
                    "are the mean over its seeds; a paired comparison's ci95 spans the per-seed "
                    "CIs and excludes zero only if every seed's CI excludes it on the same side.",
        },
    }
    if pair_support is not None:
        report["slices"] = {
            "by": "pair support: transitions of the context's exact (c1, c2) pair before the day "
                  "(all history, the same for every arm)",
            "buckets": [b[0] for b in SUPPORT_BUCKETS],
        }
    if extra:
        report.update(extra)
    report["pareto"] = mark_frontier(arms)
    return report


#: The axes of the cost-quality frontier: lower cost is better, higher quality is better.
#: The report's split of an arm's cost: fine-tuning, building the evidence (knowledge refreshes:
#: counting and scoring the candidates over the knowledge window) and ranking (regenerations).
COST_SPLIT: dict[str, str] = {"fine_tune": "fine_tune", "evidence": "refresh_knowledge",
                              "ranking": "regenerate_table"}


def cost_split(flops_by_action: dict[str, float], seconds_by_action: dict[str, float]) -> dict[str, Any]:
    """``flops_split`` and ``seconds_split`` of an arm (:data:`COST_SPLIT`)."""
    return {f"{unit}_split": {part: float(by.get(action, 0.0)) for part, action in COST_SPLIT.items()}
            for unit, by in (("flops", flops_by_action), ("seconds", seconds_by_action))}


PARETO_COST = "flops"
PARETO_QUALITY = "hr@5"


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether point ``a`` = (cost, quality) dominates ``b``: no dearer, no worse, one strictly."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def pareto_frontier(points: dict[str, tuple[float, float]]) -> dict[str, list[str]]:
    """For each name, the names whose ``(cost, quality)`` point dominates it (empty: on the
    frontier). Equal points do not dominate each other."""
    return {name: [other for other, q in points.items() if other != name and _dominates(q, p)]
            for name, p in points.items()}


def mark_frontier(arms: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's ``pareto`` object; adds ``pareto`` to every arm entry in ``arms``.

    Cost is the arm's total update ``flops`` (counting arms: 0), quality its ``hr@5`` (the mean
    over training seeds when there are several). An arm is on the frontier when no other arm is
    at most as dear and at least as good, and strictly one of them. The frontier is computed over
    every arm (``frontier``) and over the LLM arms alone (``frontier_llm``), since the counting
    arms have no update cost at all.
    """
    points = {a["name"]: (float(a["cost"]["flops"]), float(a["metrics"].get(PARETO_QUALITY) or 0.0))
              for a in arms}
    llm_points = {a["name"]: points[a["name"]] for a in arms if a["llm"]}
    dominated = pareto_frontier(points)
    dominated_llm = pareto_frontier(llm_points)

    def order(names: list[str]) -> list[str]:
        return sorted(names, key=lambda n: (points[n][0], -points[n][1], n))

    for a in arms:
        a["pareto"] = {
            "on_frontier": not dominated[a["name"]],
            "on_llm_frontier": (not dominated_llm[a["name"]]) if a["llm"] else None,
            "dominated_by": order(dominated[a["name"]]),
        }
    return {
        "cost": PARETO_COST,
        "quality": PARETO_QUALITY,
        "frontier": order([n for n, d in dominated.items() if not d]),
        "frontier_llm": order([n for n, d in dominated_llm.items() if not d]),
        "rule": "an arm is on the frontier when no other arm has at most its flops and at least "
                "its HR@5, one of them strictly; counting arms cost 0 update flops",
    }


def _paired(
    result: ReplayResult, reference: str, seed: int, n_boot: int,
    extra_seeds: list[tuple[int, ReplayResult]],
) -> list[dict[str, Any]]:
    """Reference minus every other arm, per metric, per seed.

    With several seeds, seed ``i`` of an LLM arm is paired with seed ``i`` of the other arm (a
    counting arm, run once, pairs with every seed). ``delta`` is the mean over seeds, ``ci95``
    the envelope of the per-seed CIs, ``excludes_zero`` true only if every seed's CI excludes
    zero on the same side; ``per_seed`` keeps each seed's comparison.
    """
    paired: list[dict[str, Any]] = []
    ref_runs = _runs_by_seed(reference, result, seed, extra_seeds)
    for run in result.runs:
        if run.arm.name == reference:
            continue
        other = _runs_by_seed(run.arm.name, result, seed, extra_seeds)
        count = max(len(ref_runs), len(other))
        for metric in PAIRED_METRICS:
            per_seed: list[dict[str, Any]] = []
            raw: list[tuple[float, float, float]] = []
            for i in range(count):
                s_a, run_a, _ = ref_runs[min(i, len(ref_runs) - 1)]
                s_b, run_b, _ = other[min(i, len(other) - 1)]
                delta, (lo, hi) = paired_bootstrap(
                    per_transition(metric, run_a.all_ranks()), per_transition(metric, run_b.all_ranks()),
                    result.groups, n_boot=n_boot, seed=seed,
                )
                per_seed.append({"seed": s_a if len(ref_runs) > 1 else s_b, "delta": _r(delta),
                                 "ci95": [_r(lo), _r(hi)], "excludes_zero": bool(lo > 0 or hi < 0)})
                raw.append((delta, lo, hi))
            lo = min(r[1] for r in raw)
            hi = max(r[2] for r in raw)
            entry: dict[str, Any] = {
                "a": reference, "b": run.arm.name, "metric": metric,
                "delta": _r(float(np.mean([r[0] for r in raw]))),
                "ci95": [_r(lo), _r(hi)], "excludes_zero": bool(lo > 0 or hi < 0),
            }
            if count > 1:
                entry["per_seed"] = per_seed
            paired.append(entry)
    return paired


def drift_summary(measured: Any) -> dict[str, Any]:
    """The report's ``drift`` entry from a :class:`hybridrec.data.drift.DriftReport`."""
    return {
        "statistic": measured.statistic,
        "mean": measured.mean,
        "variance": measured.variance,
        "noise_mean": measured.noise_mean,
        "pairs": measured.pairs,
        "decay_top5": [
            {"lag_months": p.lag_months, "mean": p.mean} for p in measured.decay if p.k == 5
        ],
        "source": "hybridrec.data.drift.drift_report over the whole data set",
    }


# -- verdict ------------------------------------------------------------------------------------


MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured"


def paired_claim(report: dict[str, Any], a: str, b: str, metric: str = "hr@5") -> bool | None:
    """Whether ``a`` beats ``b`` on ``metric`` with the paired 95% CI above zero for every seed:
    True / False, or None when the report holds no comparison of the two."""
    for p in report.get("paired", []):
        if p["metric"] != metric or {p["a"], p["b"]} != {a, b}:
            continue
        sign = 1.0 if p["a"] == a else -1.0
        seeds = p.get("per_seed") or [p]
        return all(min(sign * s["ci95"][0], sign * s["ci95"][1]) > 0 for s in seeds)
    return None


def _paired_detail(report: dict[str, Any], a: str, b: str, metric: str) -> dict[str, Any] | None:
    """``a - b`` on ``metric``: the mean delta, the CI spanning every seed's, the seed count."""
    for p in report.get("paired", []):
        if p["metric"] != metric or {p["a"], p["b"]} != {a, b}:
            continue
        sign = 1.0 if p["a"] == a else -1.0
        lo, hi = sorted((sign * p["ci95"][0], sign * p["ci95"][1]))
        return {"delta": _r(sign * p["delta"]), "ci95": [_r(lo), _r(hi)],
                "seeds": len(p.get("per_seed") or [p])}
    return None


def _status(failed: list[str], unmeasured: list[str]) -> tuple[bool | None, str, str]:
    if failed:
        return False, NOT_MET, "; ".join(failed)
    if unmeasured:
        return None, NOT_MEASURED, "; ".join(unmeasured)
    return True, MET, "every compared arm ran and every paired 95% CI excludes zero, for every seed"


def evaluate_claim(report: dict[str, Any], claim: Claim) -> dict[str, Any]:
    """One claim (:class:`~hybridrec.backtest.config.Claim`) on ``report``: ``met`` True / False /
    None with ``status`` and ``reason``, and the comparisons behind it (``detail``)."""
    arms = {a["name"]: a for a in report["arms"]}
    a, metric = claim.arm, claim.metric
    compared = [claim.arm, *claim.beats, *([claim.cost_reference] if claim.cost_reference else [])]
    not_run = [x for x in dict.fromkeys(compared) if x not in arms]
    detail: dict[str, Any] = {"beats": [], "does_not_beat": [], "not_run": not_run,
                              "not_paired": [], "deltas": {}}
    for b in claim.beats:
        if b not in arms or a not in arms:
            continue
        holds = paired_claim(report, a, b, metric)
        key = "beats" if holds else "not_paired" if holds is None else "does_not_beat"
        detail[key].append(b)
        paired = _paired_detail(report, a, b, metric)
        if paired is not None:
            detail["deltas"][b] = paired
    failed = [f"{a} does not beat {b} (paired {metric.upper()} CI not above zero for every seed)"
              for b in detail["does_not_beat"]]
    unmeasured = ([f"not run: {', '.join(not_run)}"] if not_run else []) + (
        [f"no paired comparison with {', '.join(detail['not_paired'])}"] if detail["not_paired"] else [])
    if claim.max_cost_ratio is not None and claim.cost_reference is not None:
        mine, ref = arms.get(a), arms.get(claim.cost_reference)
        ratio = None
        if mine is not None and ref is not None and ref["cost"]["flops"] > 0:
            ratio = mine["cost"]["flops"] / ref["cost"]["flops"]
            # With several training seeds the bound must hold on each: the largest ratio counts.
            per_seed = seed_cost_ratios(mine, ref)
            if per_seed:
                detail["cost_ratio_per_seed"] = {str(k): _r(v) for k, v in per_seed.items()}
                ratio = max(ratio, *per_seed.values())
            full_mine = mine["metrics"].get("flops_if_full_regeneration")
            full_ref = ref["metrics"].get("flops_if_full_regeneration")
            if full_mine is not None and full_ref:
                detail["cost_ratio_if_full_regeneration"] = _r(full_mine / full_ref)
        elif mine is not None and ref is not None:
            unmeasured.append(f"{claim.cost_reference} spent no flops: the cost ratio is undefined")
        detail["cost_ratio"] = _r(ratio)
        detail["cost_ok"] = None if ratio is None else ratio <= claim.max_cost_ratio
        if ratio is not None and ratio > claim.max_cost_ratio:
            failed.append(f"{a}'s flops are {ratio:.3f}x {claim.cost_reference}'s "
                          f"(claim: <= {claim.max_cost_ratio:g})")
    met, status, reason = _status(failed, unmeasured)
    return {"claim": claim.label(), **claim.model_dump(mode="json", exclude={"name"}),
            "met": met, "status": status, "reason": reason, "detail": detail}


def seed_cost_ratios(arm: dict[str, Any], reference: dict[str, Any]) -> dict[int, float]:
    """``arm``'s flops over ``reference``'s for each training seed both report a cost for (a
    counting or single-seed reference pairs with every seed of ``arm``)."""
    def costs(entry: dict[str, Any]) -> dict[int, float]:
        return {int(p["seed"]): float(p["cost"]["flops"])
                for p in (entry.get("seeds") or {}).get("per_seed") or [] if "cost" in p}

    mine, ref = costs(arm), costs(reference)
    if not mine:
        return {}
    if not ref:
        ref = {s: float(reference["cost"]["flops"]) for s in mine}
    return {s: mine[s] / ref[s] for s in mine if s in ref and ref[s] > 0}


def verdict(report: dict[str, Any], claims: list[Claim] | None = None) -> dict[str, Any]:
    """The study's claims (``claims``, default the ones the report records under ``claims``),
    each evaluated on ``report`` (:func:`evaluate_claim`), and data-driven ``notes``.

    A claim is met only if every arm it compares ran and every paired 95% CI it needs excludes
    zero in its favour for every training seed (and the cost bound holds); it is not met if a
    comparison that ran fails; it is not measured otherwise."""
    if claims is None:
        claims = [Claim.model_validate(c) for c in report.get("claims") or []]
    return {"claims": [evaluate_claim(report, c) for c in claims], "notes": explanations(report)}


def claim_lines(v: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(label, status, reason)`` per claim of a :func:`verdict`."""
    return [(c["claim"], c["status"], c.get("reason") or "") for c in v.get("claims") or []]


def explanations(report: dict[str, Any]) -> list[str]:
    """Data-driven notes on what limits the LLM arms (each computed from the report itself)."""
    notes: list[str] = []
    arms = {a["name"]: a for a in report["arms"]}
    drift = report.get("drift")
    if drift and drift.get("mean") is not None and drift.get("noise_mean") is not None:
        notes.append(
            f"Drift: month-over-month top-5 successor Jaccard is {drift['mean']:.3f} against "
            f"{drift['noise_mean']:.3f} between two random halves of the same month (noise "
            "baseline). Where the two are close, pair-level drift is mostly sampling noise, so "
            "fresher data adds variance rather than signal and all-history counts are hard to beat."
        )
    shares = [a["metrics"].get("rag_equals_no_rag_top1") for a in arms.values()
              if a["metrics"].get("rag_equals_no_rag_top1") is not None]
    if shares:
        share = sum(shares) / len(shares)
        if share >= 0.8:
            notes.append(
                f"RAG changes little: the RAG top-1 equals the same adapter's no-RAG top-1 for "
                f"{share:.1%} of scored contexts (the paper: 7.8%), so knowledge refreshes move "
                "the served lists only slightly."
            )
        else:
            notes.append(
                f"RAG is used: the RAG top-1 equals the same adapter's no-RAG top-1 for "
                f"{share:.1%} of scored contexts (the paper: 7.8%), so knowledge refreshes "
                "change what is served."
            )
    hybrid = arms.get("hybrid")
    if hybrid and hybrid["cost"]["flops"] > 0:
        regen = hybrid["cost"].get("flops_by_action", {}).get("regenerate_table", 0.0)
        text = f"Cost: table regeneration is {regen / hybrid['cost']['flops']:.0%} of hybrid's flops"
        done = hybrid["metrics"].get("regenerated_contexts")
        full = hybrid["metrics"].get("regenerated_contexts_if_full")
        if done is not None and full:
            text += (
                f"; its {hybrid['cost']['table_regenerations']} regenerations ranked "
                f"{done:,} contexts against {full:,} for full regenerations ({done / full:.1%}: "
                "only contexts whose rendered prompt changed are re-ranked, the rest copied)."
            )
        else:
            text += "; every regeneration re-ranks the whole table."
        notes.append(text)
    per_ft = per_regen = None
    # Prefer hybrid's own (evidence) regenerations as the unit of a full-table regeneration.
    for arm in ([hybrid] if hybrid else []) + list(arms.values()):
        c = arm["cost"]
        by = c.get("flops_by_action", {})
        if per_ft is None and c["fine_tunes"] and by.get("fine_tune"):
            per_ft = by["fine_tune"] / c["fine_tunes"]
        full_regen = arm["metrics"].get("regenerate_flops_if_full")
        if full_regen is None:
            full_regen = by.get("regenerate_table")
        if per_regen is None and c["table_regenerations"] and full_regen:
            per_regen = full_regen / c["table_regenerations"]
    weekly = arms.get("ft-weekly")
    if per_ft and per_regen and hybrid and weekly:
        fh, rh = hybrid["cost"]["fine_tunes"], hybrid["cost"]["table_regenerations"]
        fw, rw = weekly["cost"]["fine_tunes"], weekly["cost"]["table_regenerations"]
        regen_h = hybrid["cost"].get("flops_by_action", {}).get("regenerate_table", 0.0)
        regen_w = weekly["cost"].get("flops_by_action", {}).get("regenerate_table", 0.0)
        text = (
            f"One fine-tune costs {per_ft:.3g} flops and one full-table regeneration "
            f"{per_regen:.3g} (ratio {per_ft / per_regen:.2f})."
        )
        if fw > 4 * fh:
            # hybrid <= weekly / 4  <=>  F (fw - 4 fh) >= 4 R_hybrid - R_weekly (charged totals)
            needed = max(0.0, (4 * regen_h - regen_w) / (fw - 4 * fh)) / per_regen
            text += (
                f" With these actions (hybrid {fh} fine-tunes + {rh} regenerations, "
                f"ft-weekly {fw} + {rw}) and their charged regeneration flops, hybrid costs at "
                f"most a quarter of ft-weekly only if a fine-tune costs at least {needed:.1f}x a "
                f"full-table regeneration (it costs {per_ft / per_regen:.2f}x): the paper's "
                "premise that fine-tuning is far dearer than bulk regeneration."
            )
        notes.append(text)
    return notes


# -- files --------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _sci(value: float) -> str:
    return "0" if value == 0 else f"{value:.3g}"


def summary_table(report: dict[str, Any]) -> str:
    """A Markdown table of every arm (the demo's final summary)."""
    ref = report.get("reference", "hybrid")
    paired = {p["b"]: p for p in report["paired"] if p["metric"] == "hr@5"}
    lines = [
        f"| arm | HR@1 | HR@5 | HR@5 95% CI | NDCG@5 | coverage | exact-match | Δ HR@5 {ref} − arm [95% CI] | PFLOPs | seconds | FT | refresh | regen |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in report["arms"]:
        m, c = arm["metrics"], arm["cost"]
        ci = arm["ci95"]["hr@5"]
        p = paired.get(arm["name"])
        delta = "(reference)" if arm["name"] == ref else (
            f"{p['delta']:+.4f} [{p['ci95'][0]:+.4f}, {p['ci95'][1]:+.4f}]" if p else "–")
        lines.append(
            f"| {arm['name']} | {_fmt(m['hr@1'])} | {_fmt(m['hr@5'])} | "
            f"[{_fmt(ci[0])}, {_fmt(ci[1])}] | {_fmt(m['ndcg@5'])} | {_fmt(m['coverage'], 3)} | "
            f"{_fmt(m['exact_match_rate'], 3)} | {delta} | {_sci(c['flops'] / 1e15)} | "
            f"{c['seconds']:.1f} | {c['fine_tunes']} | {c['knowledge_refreshes']} | "
            f"{c['table_regenerations']} |"
        )
    return "\n".join(lines)


def _options(options: dict[str, Any] | None) -> str:
    """Options as compact inline JSON for a Markdown cell (``–`` when there are none)."""
    if not options:
        return "–"
    return "`" + json.dumps(options, sort_keys=True, default=str).replace("|", "\\|") + "`"


def _ref(ref: dict[str, Any] | None) -> str:
    return "–" if not ref else f"`{ref['plugin']}` {_options(ref.get('options'))}".rstrip(" –")


def arms_section(report: dict[str, Any]) -> list[str]:
    """``report.md``'s table of each arm's plugins and options (from ``arms[].config``): the
    policy and its options, the stack roles the arm overrides, the signals its state carries;
    counting arms: their configuration. Then the shared LLM stack (``setup.llm``)."""
    rows = []
    for arm in report["arms"]:
        config = arm.get("config") or {}
        preset = config.get("preset") or "–"
        if arm["llm"]:
            shared = set(config.get("shared") or [])
            own = [f"{role} {_ref(config.get(role))}" for role in
                   ("generator", "fine_tuner", "knowledge_store", "cost_model")
                   if role not in shared and config.get(role)]
            policy = config.get("policy") or {}
            rows.append(
                f"| {arm['name']} | {preset} | `{policy.get('plugin', '?')}` | "
                f"{_options(policy.get('options'))} | {'; '.join(own) or 'shared'} | "
                f"{', '.join(config.get('signals') or []) or '–'} |")
        else:
            label = config.get("label") or "–"
            rows.append(f"| {arm['name']} | {preset} | (counting) | {label} | – | – |")
    out = ["", "## Arms", "",
           "Each arm's update policy and its options, the stack plugins it sets for itself "
           "(`shared`: the study's `[llm]` stack below) and the signals measured for its "
           "policy; counting arms, their configuration. `report.json` has every day's decided "
           "actions with the policy's reasons (`arms[].per_day[].decisions`).", "",
           "| arm | preset | policy | options | own stack | signals |",
           "|---|---|---|---|---|---|", *rows]
    llm = (report.get("setup") or {}).get("llm") or {}
    if llm:
        out += ["", "Shared LLM stack: " + "; ".join(
            f"{role} {_ref(llm.get(role))}" for role in
            ("generator", "fine_tuner", "knowledge_store", "cost_model") if llm.get(role)) + "."]
    for stack in (report.get("setup") or {}).get("stacks") or []:
        out += ["", f"Own stack of {', '.join(stack['arms'])}: " + "; ".join(
            f"{role} {_ref(stack.get(role))}" for role in
            ("generator", "fine_tuner", "knowledge_store")) + " (its own initial adapter)."]
    return out


def _seed_section(report: dict[str, Any]) -> list[str]:
    multi = [a for a in report["arms"] if len((a.get("seeds") or {}).get("per_seed", [])) > 1]
    if not multi:
        return []
    seeds = report.get("seeds", {}).get("training_seeds", [])
    out = ["", "## Training seeds", "",
           f"LLM arms ran with training seeds {', '.join(map(str, seeds))}; counting arms once. "
           "Metrics are the mean over seeds, with the min–max; a paired claim holds only if "
           "it holds for every seed.", "",
           "| arm | HR@1 mean [min, max] | HR@5 mean [min, max] | NDCG@5 mean [min, max] | per-seed HR@5 |",
           "|---|---|---|---|---|"]
    for a in multi:
        sd = a["seeds"]
        cells = [f"{_fmt(sd['mean'].get(m))} [{_fmt(sd['min'].get(m))}, {_fmt(sd['max'].get(m))}]"
                 for m in ("hr@1", "hr@5", "ndcg@5")]
        per = ", ".join(f"{p['seed']}: {_fmt(p['metrics']['hr@5'])}" for p in sd["per_seed"])
        out.append(f"| {a['name']} | {' | '.join(cells)} | {per} |")
    ref = report.get("reference")
    rows = [p for p in report["paired"] if p["metric"] == "hr@5" and p.get("per_seed")]
    if rows:
        out += ["", f"Paired Δ HR@5 ({ref} − arm) per seed:", ""]
        for p in rows:
            per = "; ".join(f"seed {q['seed']}: {q['delta']:+.4f} [{q['ci95'][0]:+.4f}, "
                            f"{q['ci95'][1]:+.4f}]" for q in p["per_seed"])
            if not p["excludes_zero"]:
                word = "the CI does not exclude zero on the same side for every seed"
            elif p["ci95"][0] > 0:
                word = f"{ref} better for every seed"
            else:
                word = f"{p['b']} better for every seed"
            out.append(f"- {p['b']}: {per} — {word}")
    return out


def _slices_section(report: dict[str, Any]) -> list[str]:
    with_slices = [a for a in report["arms"] if a.get("slices")]
    if not with_slices:
        return []
    buckets = with_slices[0]["slices"]
    head = " | ".join(f"support {b['bucket']} (n={b['n']:,})" for b in buckets)
    out = ["", "## HR@5 by pair support", "",
           "Transitions grouped by how often their exact context pair (c1, c2) occurred before "
           "the day (all history, the same grouping for every arm).", "",
           f"| arm | {head} |", "|---|" + "---|" * len(buckets)]
    for a in with_slices:
        out.append(f"| {a['name']} | " + " | ".join(_fmt(b["hr@5"]) for b in a["slices"]) + " |")
    return out


def _counting_section(report: dict[str, Any]) -> list[str]:
    # LLM arms carry their plugins in ``config`` too (the Arms section shows them)
    configured = [a for a in report["arms"] if a.get("config") and not a.get("llm")]
    val = report.get("validation")
    if not configured and not val:
        return []
    out = ["", "## Counting configurations", ""]
    out += [f"- {a['name']}: {a['config'].get('label', a['config'])}" for a in configured]
    if val:
        out += ["", f"markov-best chose **{val['chosen']['label']}** on the validation days "
                f"{val['window'][0]} to {val['window'][1]} (exclusive; {val['transitions']:,} "
                f"transitions, {val['metric']} scored prequentially, {val['candidates']} "
                "candidates; no test day read). Best candidates on validation:", ""]
        out += [f"- {r['config']}: HR@1 {_fmt(r['hr@1'])}, HR@5 {_fmt(r['hr@5'])}" for r in val["top"][:5]]
        if val.get("note"):
            out.append(f"- note: {val['note']}")
    return out


def _tuning_section(report: dict[str, Any]) -> list[str]:
    entry = report.get("tuning")
    if not entry:
        return []
    from hybridrec.backtest.tune import tuning_lines

    lines = tuning_lines(entry)
    return ["", "## Tuning: the LLM stack chosen on the validation days", "",
            f"{lines[0]} ({entry['rule']}; no test day read)", "", "```", *lines[1:], "```"]


def break_even(
    arms: list[dict[str, Any]], *, full_regeneration_flops: float, fine_tune_flops: float
) -> dict[str, Any] | None:
    """The report's ``break_even`` object: for which ratio ``rho`` = (price of one fine-tune) /
    (price of one full regeneration) each LLM arm is on the LLM arms' cost-quality frontier.

    Each arm's cost is linear in ``rho``, in units of one full regeneration: ``f * rho + g``,
    with ``f`` its fine-tune flops over ``fine_tune_flops`` (fine-tunes, weighted by their size)
    and ``g`` the rest of its flops (regenerations, refreshes) over ``full_regeneration_flops``.
    Qualities (HR@5) stay as measured. Arm A is dominated at ``rho`` by an arm B with at least its
    HR@5 that costs no more; each such B bounds A's range from above or below.
    """
    if full_regeneration_flops <= 0 or fine_tune_flops <= 0:
        return None
    llm = [a for a in arms if a["llm"]]
    if not llm:
        return None
    line: dict[str, tuple[float, float, float]] = {}
    for a in llm:
        ft = float(a["cost"].get("flops_by_action", {}).get("fine_tune", 0.0))
        line[a["name"]] = (ft / fine_tune_flops, (float(a["cost"]["flops"]) - ft) / full_regeneration_flops,
                           float(a["metrics"].get("hr@5") or 0.0))
    ratio_now = fine_tune_flops / full_regeneration_flops
    out: dict[str, Any] = {}
    for name, (f_a, g_a, q_a) in line.items():
        lo, hi = 0.0, math.inf
        rivals = []
        for other, (f_b, g_b, q_b) in line.items():
            if other == name or q_b < q_a:
                continue
            df, dg = f_a - f_b, g_a - g_b
            if abs(df) < 1e-12:
                when = "always" if (dg < 0 or (dg <= 0 and q_b == q_a)) else "never"
                ratio = None
                if when == "never":
                    lo, hi = math.inf, 0.0
            else:
                ratio = -dg / df
                if df > 0:  # A fine-tunes more: it wins only while fine-tunes are cheap
                    when, hi = "below", min(hi, ratio)
                else:
                    when, lo = "above", max(lo, ratio)
                if ratio <= 0:  # ratios are positive: the bound is trivial
                    when, ratio = ("never" if when == "below" else "always"), None
            rivals.append({"arm": other, "ratio": _r(ratio), "wins_when": when})
        out[name] = {
            "fine_tune_equivalents": _r(f_a),
            "other_in_full_regenerations": _r(g_a),
            "cost_in_full_regenerations_now": _r(f_a * ratio_now + g_a),
            "on_frontier_for_ratio": [_r(lo), None if math.isinf(hi) else _r(hi)] if lo < hi else None,
            "rivals": rivals,
        }
    return {
        "unit": "one full regeneration (every catalog context, with evidence)",
        "full_regeneration_flops": full_regeneration_flops,
        "fine_tune_flops": fine_tune_flops,
        "ratio_now": _r(ratio_now),
        "quality": PARETO_QUALITY,
        "arms": out,
        "rule": "ratio = price of one fine-tune / price of one full regeneration; an arm's cost is "
                "fine_tune_equivalents * ratio + other_in_full_regenerations; it is on the LLM "
                "arms' frontier for ratios in on_frontier_for_ratio ([lo, hi], hi null = no upper "
                "bound; null = never); each rival (an arm with at least its HR@5) bounds that range "
                "below or above its ratio",
    }


def _break_even_section(report: dict[str, Any]) -> list[str]:
    be = report.get("break_even")
    if not be:
        return []
    out = ["", "## Break-even: how dear may a fine-tune be?", "",
           f"ratio = price of one fine-tune / price of one full regeneration (now "
           f"{_fmt(be['ratio_now'], 3)}: {_sci(be['fine_tune_flops'])} vs "
           f"{_sci(be['full_regeneration_flops'])} flops). With quality (HR@5) as measured, each LLM "
           "arm is on the LLM arms' cost-quality frontier for these ratios:", "",
           "| arm | fine-tunes (equivalent) | other cost (full regenerations) | on the frontier for ratio | bounded by |",
           "|---|---|---|---|---|"]
    for name, a in be["arms"].items():
        rng = a["on_frontier_for_ratio"]
        text = "never" if rng is None else "any" if rng == [0.0, None] else (
            f"≥ {_fmt(rng[0], 3)}" if rng[1] is None else f"{_fmt(rng[0], 3)} – {_fmt(rng[1], 3)}")
        bounds = ", ".join(f"{r['arm']} ({r['wins_when']}"
                           + (f" {_fmt(r['ratio'], 3)})" if r["ratio"] is not None else ")")
                           for r in a["rivals"]) or "–"
        out.append(f"| {name} | {_fmt(a['fine_tune_equivalents'], 2)} | "
                   f"{_fmt(a['other_in_full_regenerations'], 2)} | {text} | {bounds} |")
    return out


def _partial_lines(report: dict[str, Any]) -> list[str]:
    p = report.get("partial")
    if not p:
        return []
    kept = (report.get("seeds") or {}).get("training_seeds") or []
    if kept and p.get("seed") not in kept:
        # a later training seed failed: the seeds before it completed every day
        covered = (f"Training seed {p.get('seed')} completed {p.get('completed_days')} of "
                   f"{p.get('planned_days')} test days and is left out: every number below "
                   f"covers all {p.get('planned_days')} test days of training seed"
                   f"{'s' if len(kept) > 1 else ''} {', '.join(str(s) for s in kept)}.")
    else:
        covered = (f"Every number below covers the {p.get('completed_days')} of "
                   f"{p.get('planned_days')} test days that every arm completed.")
    return [
        f"**PARTIAL REPORT: the study stopped early.** {p.get('type')} in arm `{p.get('arm')}` "
        f"({p.get('phase')}) on {p.get('day') or 'its setup'}, training seed {p.get('seed')}: "
        f"{p.get('error')}. {covered}",
        "",
    ]


def _pareto_section(report: dict[str, Any]) -> list[str]:
    pareto = report.get("pareto")
    if not pareto:
        return []
    by_name = {a["name"]: a for a in report["arms"]}

    def point(name: str) -> str:
        a = by_name[name]
        return f"{name} ({_sci(a['cost']['flops'] / 1e15)} PFLOPs, HR@5 {_fmt(a['metrics']['hr@5'])})"

    out = ["", "## Cost-quality frontier", "",
           "Cost: total update flops of the arm (counting arms: 0); quality: HR@5. An arm is on "
           "the frontier when no other arm is as cheap or cheaper and as good or better, one of "
           "them strictly.", "",
           "- On the frontier (all arms): " + (", ".join(point(n) for n in pareto["frontier"]) or "none") + ".",
           "- On the frontier of the LLM arms: "
           + (", ".join(point(n) for n in pareto["frontier_llm"]) or "none") + "."]
    dominated = [a for a in report["arms"] if a.get("pareto", {}).get("dominated_by")]
    if dominated:
        out += ["", "| arm | dominated by |", "|---|---|"]
        out += [f"| {a['name']} | {', '.join(a['pareto']['dominated_by'])} |" for a in dominated]
    return out


def render_markdown(report: dict[str, Any], plots: dict[str, str]) -> str:
    ds = report["dataset"]
    v = report.get("verdict") or verdict(report)
    seeds = (report.get("seeds") or {}).get("training_seeds") or [report["bootstrap"]["seed"]]
    out = [
        f"# hybridrec backtest: {ds['name']}",
        "",
        f"Test days {ds['test_start']} to {ds['test_end']} (exclusive), {ds.get('test_days', '?')} days, "
        f"{ds['test_transitions']:,} scored transitions, {ds['clusters']} clusters, k = {ds['k']}. "
        f"Seed {report['bootstrap']['seed']}; 95% CIs: day-level bootstrap ({report['bootstrap']['draws']} draws).",
        "",
        *_partial_lines(report),
        summary_table(report),
        "",
        "Cost is what each arm would have spent alone (flops from the cost model; seconds measured, "
        "table regeneration extrapolated from measured seconds per ranked context). "
        "FT = fine-tunes, refresh = knowledge refreshes, regen = table regenerations."
        + (f" LLM arms ran with {len(seeds)} training seeds: their HR@1, HR@5, NDCG@5 and "
           "exact-match are means over seeds (min–max below), the HR@5 CI, cost and seconds are "
           "the first seed's; Δ is the mean over seeds with the CI spanning every seed's."
           if len(seeds) > 1 else ""),
        *arms_section(report),
        "",
        "## Verdict",
        "",
    ]
    if not v.get("claims"):
        out.append("- The study declares no claims (`[[claims]]` in its file; docs/backtest.md).")
    for c in v.get("claims") or []:
        line = f"- {c['claim']}: **{c['status']}**"
        line += f" ({c['reason']})." if c.get("reason") else "."
        detail = c.get("detail") or {}
        if c["status"] != NOT_MEASURED and len(c["beats"]) > 1:
            line += (f" Beats: {', '.join(detail.get('beats') or []) or 'none'}; "
                     f"does not beat: {', '.join(detail.get('does_not_beat') or []) or 'none'}.")
        elif detail.get("deltas"):
            for b, d in detail["deltas"].items():
                line += (f" Δ {c['metric'].upper()} vs {b} = {_fmt(d.get('delta'))} "
                         f"[{_fmt(d['ci95'][0])}, {_fmt(d['ci95'][1])}] over {d.get('seeds', 1)} seed(s).")
        if c.get("cost_reference") and c["status"] != NOT_MEASURED:
            line += (f" Flops vs {c['cost_reference']}: {_fmt(detail.get('cost_ratio'), 3)}"
                     + (f" (with full instead of delta regenerations: "
                        f"{_fmt(detail['cost_ratio_if_full_regeneration'], 3)})"
                        if detail.get("cost_ratio_if_full_regeneration") is not None else "") + ".")
        out.append(line)
    for note in v.get("notes", []):
        out.append(f"- {note}")
    out += _pareto_section(report) + _break_even_section(report)
    out += _seed_section(report) + _slices_section(report) + _tuning_section(report)
    out += _counting_section(report)
    rag = [(a["name"], a["metrics"].get("rag_equals_no_rag_top1")) for a in report["arms"]
           if a["metrics"].get("rag_equals_no_rag_top1") is not None]
    if rag:
        out += ["", "## RAG changes the output",
                "", "Share of scored contexts whose RAG top-1 equals the same adapter's no-RAG top-1 "
                "(the paper reports 7.8%):", ""]
        out += [f"- {name}: {share:.1%}" for name, share in rag]
    regen = [a for a in report["arms"] if a["metrics"].get("regenerated_contexts_if_full")]
    if regen:
        mode = (report.get("setup") or {}).get("llm", {}).get("regenerate", "full")
        llm_setup = (report.get("setup") or {}).get("llm", {})
        out += ["", "## Regeneration: what was ranked, copied and kept", "",
                f"Charged mode: **{mode}** (tolerance {llm_setup.get('regenerate_tolerance', 0.0)}, "
                f"staleness bound {llm_setup.get('max_row_age_days')} days, unless an arm's policy "
                "sets its own). A delta regeneration that keeps the adapter copies the row of a "
                "context whose rendered prompt is unchanged (exact), keeps the row of one whose "
                "evidence moved within the tolerance of the evidence it was ranked from (the "
                "material-change rule; not exact), ranks every row older than the staleness bound, "
                "and ranks the rest. Row ages are over the scored lookups a table row served: days "
                "since its evidence was last confirmed current, at the start of the serving day.", "",
                "| arm | regenerations | ranked | copied (same prompt) | kept (within tolerance) | "
                "kept (not ranked) | ranked past the bound | contexts (full) | ranked / full | "
                "row age p50 / p90 / max (days) | PFLOPs (charged) | PFLOPs (all full) |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for a in regen:
            m, c = a["metrics"], a["cost"]
            delta_flops = (c["flops"] if mode == "delta" else
                           m["flops_if_full_regeneration"])
            full = m["regenerated_contexts_if_full"]
            ages = " / ".join(_fmt(m.get(f"row_age_days_{q}"), 1) for q in ("p50", "p90", "max"))
            out.append(
                f"| {a['name']} | {c['table_regenerations']} | {m['regenerated_contexts']:,} | "
                f"{m.get('regenerate_same', 0):,} | {m.get('regenerate_close', 0):,} | "
                f"{m.get('regenerate_fallback', 0):,} | {m.get('regenerate_stale', 0):,} | "
                f"{full:,} | {m['regenerated_contexts'] / full:.1%} | {ages} | "
                f"{_sci(delta_flops / 1e15)} | {_sci(m['flops_if_full_regeneration'] / 1e15)} |"
            )
    drift = report.get("drift")
    if drift and drift.get("mean") is not None:
        out += ["", "## Drift", "",
                f"Month-over-month top-5 successor Jaccard {_fmt(drift['mean'], 3)} (variance "
                f"{_fmt(drift['variance'], 3)}, {drift['pairs']} pair-months; the paper: 0.17, "
                f"0.07); noise baseline {_fmt(drift['noise_mean'], 3)}. Decay of top-5 overlap by "
                "lag (months): "
                + ", ".join(f"{p['lag_months']}: {_fmt(p['mean'], 3)}" for p in drift["decay_top5"])
                + "."]
    setup = report.get("setup")
    if setup:
        out += ["", "## Setup", "", "```json", json.dumps(setup, indent=2, default=str), "```"]
    if plots:
        out += ["", "## Plots", ""]
        out += [f"![{name}]({path})" for name, path in plots.items()]
    return "\n".join(out) + "\n"


def plot_hr_over_time(report: dict[str, Any], path: Path, window: int = 7) -> Path:
    """HR@5 per day (a ``window``-day rolling mean, weighted by transitions) per arm (Fig. 3a)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    for arm in report["arms"]:
        days = arm["per_day"]
        if not days:  # a partial report that stopped before the first day
            continue
        n = np.array([d["n"] for d in days], dtype=float)
        hits = np.array([d["hr@5"] * d["n"] for d in days], dtype=float)
        kernel = np.ones(min(window, max(1, len(days))))
        smooth = np.convolve(hits, kernel, "same") / np.maximum(np.convolve(n, kernel, "same"), 1)
        style = "-" if arm["llm"] else "--"
        ax.plot(np.arange(len(days)), smooth, style, label=arm["name"], linewidth=1.3)
    first = report["arms"][0]["per_day"] if report["arms"] else []
    ticks = np.arange(0, len(first), max(1, len(first) // 8))
    ax.set_xticks(ticks, [first[i]["day"] for i in ticks], rotation=30, fontsize=8)
    ax.set_ylabel(f"HR@5 ({window}-day rolling)")
    ax.set_title("HR@5 over time (dashed: non-LLM baselines)")
    if ax.lines:
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


BASELINE_COLOURS = ("tab:gray", "tab:olive", "tab:cyan", "tab:brown", "tab:pink")


def _hr5_bar(arm: dict[str, Any], hr: float) -> tuple[float, float]:
    """The vertical bar drawn at an arm's HR@5: the min–max over training seeds when it ran
    several (its HR@5 is then their mean, which the first seed's CI need not contain), else
    its 95% CI; always around ``hr``."""
    seeds = arm.get("seeds") or {}
    if len(seeds.get("per_seed") or []) > 1 and "hr@5" in seeds.get("min", {}):
        lo, hi = seeds["min"]["hr@5"], seeds["max"]["hr@5"]
    else:
        lo, hi = arm["ci95"]["hr@5"]
    lo = hr if lo is None else min(lo, hr)
    hi = hr if hi is None else max(hi, hr)
    return lo, hi


def plot_pareto(report: dict[str, Any], path: Path) -> Path:
    """HR@5 (95% CI) against total update flops per LLM arm, with the cost-quality frontier
    (``report["pareto"]``, computed if absent): filled markers are on the frontier of all arms,
    the dotted line is the LLM arms' frontier; the non-LLM baselines (no update cost) are
    horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pareto = report.get("pareto")
    if pareto is None:
        arms = [dict(a) for a in report["arms"]]
        pareto = mark_frontier(arms)
    else:
        arms = report["arms"]
    on_frontier = set(pareto["frontier"])
    fig, ax = plt.subplots(figsize=(8, 5.5))
    points: dict[str, tuple[float, float]] = {}
    for arm in arms:
        hr = arm["metrics"]["hr@5"]
        if hr is None:
            continue
        if not arm["llm"] or arm["cost"]["flops"] <= 0:
            colour = BASELINE_COLOURS[len(ax.lines) % len(BASELINE_COLOURS)]
            star = " ★ frontier" if arm["name"] in on_frontier else ""
            line = ax.axhline(hr, linestyle="--", linewidth=1, color=colour)
            ax.annotate(f"{arm['name']} (no update cost){star}", (0.01, hr),
                        xycoords=("axes fraction", "data"), textcoords="offset points",
                        xytext=(0, 3), fontsize=8, color=line.get_color())
            continue
        flops = arm["cost"]["flops"]
        lo, hi = _hr5_bar(arm, hr)
        filled = arm["name"] in on_frontier
        ax.errorbar([flops], [hr], yerr=[[hr - lo], [hi - hr]], fmt="o", capsize=3,
                    markerfacecolor=None if filled else "white")
        ax.annotate(arm["name"] + (" ★" if filled else ""), (flops, hr), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
        points[arm["name"]] = (flops, hr)
    front = sorted(points[n] for n in pareto["frontier_llm"] if n in points)
    if len(front) > 1:
        xs, ys = [front[0][0]], [front[0][1]]
        for f, h in front[1:]:  # a staircase: quality holds until the next, dearer, better arm
            xs += [f, f]
            ys += [ys[-1], h]
        ax.plot(xs, ys, ":", color="black", label="cost-quality frontier (LLM arms)")
    if points:
        ax.set_xscale("log")
        ax.plot([], [], "o", color="gray", label="filled / ★: on the frontier of all arms")
        ax.plot([], [], "o", color="gray", markerfacecolor="white", label="hollow: dominated")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("total update cost of the arm (flops, log scale)")
    ax.set_ylabel("HR@5 (95% CI)")
    ax.set_title("Quality against cumulative cost, with the cost-quality frontier")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    report: dict[str, Any],
    out_dir: Path,
    *,
    drift_plot: Any | None = None,
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and the plots into ``out_dir``; return the paths.

    ``drift_plot`` (optional) is a callable ``(path) -> path`` drawing the drift decay figure.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Path] = {}
    drawings: list[tuple[str, Any]] = [
        ("HR@5 over time", lambda: plot_hr_over_time(report, out_dir / "hr5_over_time.png")),
        ("quality vs cost", lambda: plot_pareto(report, out_dir / "pareto.png")),
    ]
    if drift_plot is not None:
        drawings.append(("drift overlap decay", lambda: drift_plot(out_dir / "drift_decay.png")))
    failure: Exception | None = None
    skipped: str | None = None
    for name, draw in drawings:
        # A figure that cannot be drawn must not cost the study: the JSON and Markdown are
        # written first (without that figure), then the error is raised.
        try:
            plots[name] = draw()
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "matplotlib":
                failure = failure or exc
            else:  # a light install: the numbers without the figures
                skipped = "matplotlib is not installed (pip install 'hybridrec[report]')"
        except Exception as exc:
            failure = failure or exc
    report = {**report, "verdict": report.get("verdict") or verdict(report),
              "plots": {k: p.name for k, p in plots.items()},
              **({"plots_skipped": skipped} if skipped else {})}
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=1, sort_keys=False, allow_nan=False) + "\n")
    md_path = out_dir / "report.md"
    md_path.write_text(render_markdown(report, {k: p.name for k, p in plots.items()}))
    if failure is not None:
        raise failure
    return {"json": json_path, "markdown": md_path, **{k: p for k, p in plots.items()}}


__all__ = [
    "BASELINE_COLOURS",
    "PAIRED_METRICS",
    "SCHEMA",
    "break_even",
    "build_report",
    "claim_lines",
    "drift_summary",
    "evaluate_claim",
    "explanations",
    "mark_frontier",
    "paired_claim",
    "pareto_frontier",
    "plot_hr_over_time",
    "plot_pareto",
    "render_markdown",
    "seed_cost_ratios",
    "summary_table",
    "verdict",
    "write_report",
]
