"""SmolLM2-135M beside the tiny preset and the counting arms, on a study sized for a 2-core CPU.

Runs ``examples/studies/smollm2-quick.toml`` (SmolLM2-135M with one new token per cluster, see
that file for what is reduced), then the same study's LLM arm with the ``tiny`` preset twice:

* ``tiny-same``: the same template family (cluster tokens), evidence and fine-tune options, so
  the only difference is the base model (pretrained and extended, or trained from scratch on
  the same 320 examples);
* ``tiny-demo``: the tiny preset as the demo runs it (``rerank`` over the top 10 candidates, its
  initial fine-tune on up to 40,000 examples), the strongest learned stack of this project.

It prints and writes (``--out``/comparison.json and comparison.md) HR@1 and HR@5 per arm with a
95% CI, HR@5 by pair support (transitions of the context's exact pair before the day: 0, 1-4,
5-49, >=50, and the sparse slice <5), and paired differences of the SmolLM2 arm against every
other arm with 95% CIs. With one test day the bootstrap resamples transitions (the report's
day-level bootstrap has one day to draw), which is optimistic where transitions of a day are
correlated. Each run also writes its own report (``--out``/<run>/report.md)::

    python examples/studies/smollm2_quick.py --out smollm2-quick
    python examples/studies/smollm2_quick.py --out smollm2-quick --skip-tiny   # SmolLM2 only
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.backtest.config import (
    DEMO_FINE_TUNE,
    DEMO_GENERATOR,
    DEMO_INITIAL_FINE_TUNE,
    DEMO_STORE,
    BacktestConfig,
    load_backtest_config,
)
from hybridrec.backtest.metrics import DayGroups, bootstrap_ci, hr_at, paired_bootstrap
from hybridrec.backtest.report import verdict, write_report
from hybridrec.backtest.study import load_data, run_backtest, scored_pair_support
from hybridrec.config import PluginRef

STUDY = Path(__file__).with_name("smollm2-quick.toml")
SLICES: tuple[tuple[str, int, int | None], ...] = (
    ("0", 0, 1), ("1-4", 1, 5), ("<5", 0, 5), ("5-49", 5, 50), (">=50", 50, None),
)


def tiny_variants(config: BacktestConfig) -> dict[str, BacktestConfig]:
    """The study's LLM arms with the tiny preset: same knobs, and as the demo runs it."""
    llm = config.llm
    same_gen = {**llm.generator.options, "preset": "tiny", "dtype": "float32"}
    only_llm = config.with_arms(config.llm_arms())
    same = only_llm.model_copy(update={
        "llm": llm.model_copy(update={"generator": PluginRef(plugin="hf", options=same_gen)}),
    })
    demo_llm = llm.model_copy(update={
        "generator": PluginRef(plugin="hf", options=dict(DEMO_GENERATOR)),
        "knowledge_store": PluginRef(plugin="annoy", options=dict(DEMO_STORE)),
        "fine_tuner": PluginRef(plugin="lora", options=dict(DEMO_FINE_TUNE)),
        "initial_fine_tune_options": dict(DEMO_INITIAL_FINE_TUNE),
    })
    demo = only_llm.model_copy(update={"llm": demo_llm})
    return {"tiny-same": same, "tiny-demo": demo}


def _mask(support: np.ndarray, lo: int, hi: int | None) -> np.ndarray:
    return (support >= lo) if hi is None else ((support >= lo) & (support < hi))


def compare(ranks: dict[str, np.ndarray], support: np.ndarray, reference: str,
            n_boot: int = 1000) -> dict[str, Any]:
    """Per arm: HR@1, HR@5 (95% CI) overall and per slice; paired deltas of ``reference``."""
    out: dict[str, Any] = {"arms": {}, "deltas": {}}
    for name, r in ranks.items():
        entry: dict[str, Any] = {}
        for label, lo, hi in (("all", 0, None), *SLICES):
            m = _mask(support, lo, hi)
            hits = hr_at(r[m], 5).astype(np.float64)
            groups = DayGroups(day_of=np.arange(int(m.sum())), n_days=int(m.sum()))
            ci = bootstrap_ci(hits, groups, n_boot=n_boot) if m.any() else (0.0, 0.0)
            entry[label] = {"n": int(m.sum()), "hr@5": float(hits.mean()) if m.any() else 0.0,
                            "hr@5_ci": [round(ci[0], 4), round(ci[1], 4)]}
        entry["all"]["hr@1"] = float(hr_at(r, 1).mean())
        out["arms"][name] = entry
    for name, r in ranks.items():
        if name == reference:
            continue
        deltas = {}
        for label, lo, hi in (("all", 0, None), ("<5", 0, 5), (">=50", 50, None)):
            m = _mask(support, lo, hi)
            groups = DayGroups(day_of=np.arange(int(m.sum())), n_days=int(m.sum()))
            a = hr_at(ranks[reference][m], 5).astype(np.float64)
            b = hr_at(r[m], 5).astype(np.float64)
            delta, ci = paired_bootstrap(a, b, groups, n_boot=n_boot)
            deltas[label] = {"delta": round(delta, 4), "ci": [round(ci[0], 4), round(ci[1], 4)]}
        out["deltas"][name] = deltas
    return out


def markdown(table: dict[str, Any], reference: str, seconds: dict[str, float]) -> str:
    lines = ["| arm | HR@1 | HR@5 [95% CI] | " + " | ".join(
        f"HR@5 support {label}" for label, _, _ in SLICES) + " |",
        "|---|---|---|" + "---|" * len(SLICES)]
    first = next(iter(table["arms"].values()))
    lines.append("| (transitions) | | " + f"{first['all']['n']:,}" + " | "
                 + " | ".join(f"{first[label]['n']:,}" for label, _, _ in SLICES) + " |")
    for name, e in table["arms"].items():
        ci = e["all"]["hr@5_ci"]
        lines.append(f"| {name} | {e['all']['hr@1']:.4f} | {e['all']['hr@5']:.4f} "
                     f"[{ci[0]:.4f}, {ci[1]:.4f}] | "
                     + " | ".join(f"{e[label]['hr@5']:.4f}" for label, _, _ in SLICES) + " |")
    lines += ["", f"Paired HR@5 differences, {reference} minus the arm [95% CI, transition bootstrap]:", "",
              "| arm | all | support <5 | support >=50 |", "|---|---|---|---|"]
    for name, d in table["deltas"].items():
        lines.append(f"| {name} | " + " | ".join(
            f"{d[k]['delta']:+.4f} [{d[k]['ci'][0]:+.4f}, {d[k]['ci'][1]:+.4f}]"
            for k in ("all", "<5", ">=50")) + " |")
    lines += ["", "Wall seconds per run: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=STUDY)
    parser.add_argument("--out", type=Path, default=Path("smollm2-quick"))
    parser.add_argument("--skip-tiny", action="store_true", help="Run the SmolLM2 study only.")
    args = parser.parse_args()
    config = load_backtest_config(args.config)
    data = load_data(config)
    runs = {"smollm2": config}
    if not args.skip_tiny:
        runs.update(tiny_variants(config))
    ranks: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    support: np.ndarray | None = None
    for run_name, run_config in runs.items():
        began = time.perf_counter()
        print(f"[smollm2-quick] {run_name}: arms {', '.join(run_config.arms)}", flush=True)
        report, result, _ = run_backtest(run_config, data=data, progress=True, drift=False)
        seconds[run_name] = time.perf_counter() - began
        report["setup"]["wall_seconds"] = round(seconds[run_name], 2)
        report["verdict"] = verdict(report)
        write_report(report, args.out / run_name)
        if support is None:
            support = scored_pair_support(data[1], result)
        for run in result.runs:
            name = run.arm.name if run.arm.name not in run_config.llm_arms() else f"{run.arm.name} ({run_name})"
            ranks[name] = run.all_ranks()
        print(f"[smollm2-quick] {run_name}: {seconds[run_name]:.0f} s", flush=True)
    assert support is not None
    reference = f"{config.llm_arms()[0]} (smollm2)"
    table = compare(ranks, support, reference)
    table["seconds"] = seconds
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comparison.json").write_text(json.dumps(table, indent=2) + "\n")
    text = markdown(table, reference, seconds)
    (args.out / "comparison.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
