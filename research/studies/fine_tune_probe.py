"""Probe: how much does one fine-tune of the demo's learned stack move its held-out answer NLL?

The demo's fine-tune options (``hybridrec.backtest.config.DEMO_FINE_TUNE``) were chosen with this
script, on data before the ML-1M test window only. It trains the shared initial model from
scratch on ``--init`` (the demo's initial-fine-tune options), then runs each variant of the
fine-tune on ``--window``, warm-started from that model, with ``select_epoch`` on so that the
held-out NLL of the window's last ``holdout_max`` transitions (never trained on) is measured at
the start and after each epoch. It prints one line per variant and, with ``--json``, writes them::

    python research/studies/fine_tune_probe.py --variants '{
        "lora": {"epochs": 3, "max_examples": null, "holdout_max": 1000},
        "full-1ep": {"mode": "full", "max_examples": 30000, "holdout_max": 1000},
        "full-2ep": {"mode": "full", "max_examples": 30000, "holdout_max": 1000, "epochs": 2},
        "full-15k": {"mode": "full", "max_examples": 15000, "holdout_max": 1000}}'

Each variant's options are merged over the demo's (``{}`` is the demo's own LoRA); variants
measure on the same held-out rows when they share ``holdout_max`` (the window's last rows).
Nothing here is used by the library.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hybridrec.backtest.config import DEMO_FINE_TUNE, DEMO_INITIAL_FINE_TUNE, BacktestConfig
from hybridrec.backtest.study import build_stack, load_data, seed_everything
from hybridrec.plugins import build
from hybridrec.types import TimeWindow


def _window(text: str) -> TimeWindow:
    start, end = (datetime.fromisoformat(part).replace(tzinfo=UTC) for part in text.split(":"))
    return TimeWindow(start=start, end=end)


def demo_setup(seed: int, prefix: str) -> tuple[Any, Path, Any]:
    """Seeded: ML-1M's transitions, a new scratch folder named ``prefix*`` and the demo stack's
    (untrained) generator. Shared with fine_tune_ceiling.py."""
    seed_everything(seed)
    config = BacktestConfig(dataset="ml-1m")
    catalog, transitions = load_data(config)
    work = Path(tempfile.mkdtemp(prefix=prefix))
    return transitions, work, build_stack(config, catalog, work).generator


def demo_tuner(seed: int, **overrides: Any) -> Any:
    """The ``lora`` fine-tuner with the demo's options, ``seed`` and ``overrides`` merged over them."""
    return build("fine_tuner", {"plugin": "lora", "options": {**DEMO_FINE_TUNE, "seed": seed, **overrides}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", default="2000-04-20:2000-05-18", help="initial model's window")
    parser.add_argument("--window", default="2000-05-02:2000-06-01", help="fine-tune window")
    parser.add_argument("--variants", default='{"demo": {}}', help="JSON: name -> option overrides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    transitions, work, generator = demo_setup(args.seed, "fine-tune-probe-")

    def tuner(**overrides: Any) -> Any:
        return demo_tuner(args.seed, **{"select_epoch": True, **overrides})

    started = time.perf_counter()
    init = tuner(**DEMO_INITIAL_FINE_TUNE).fine_tune(generator, transitions, _window(args.init), work / "init")
    print(f"initial model on {args.init}: {time.perf_counter() - started:.1f} s")
    results: dict[str, Any] = {}
    for name, overrides in json.loads(args.variants).items():
        generator.load_adapter(init.adapter_path)
        started = time.perf_counter()
        result = tuner(**overrides).fine_tune(
            generator, transitions, _window(args.window), work / name, previous_adapter=init.adapter_path
        )
        selection = result.manifest["cost"]["epoch_selection"]
        results[name] = {
            "options": overrides, "seconds": round(time.perf_counter() - started, 1),
            "nll_by_epoch": selection["history"], "selected_epoch": selection["epoch"],
            "hr@5_rag": result.metrics["hr@5_rag"], "hr@1_rag": result.metrics["hr@1_rag"],
        }
        curve = ", ".join(f"{h['epoch']:g}: {h['nll']:.4f}" for h in selection["history"])
        print(f"{name:>12}  {results[name]['seconds']:6.1f} s  held-out NLL by epoch {{{curve}}}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
