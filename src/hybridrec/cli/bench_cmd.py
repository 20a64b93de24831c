"""``hybridrec bench SUITE``: the one entry point for benchmarks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from hybridrec.errors import HybridrecError, did_you_mean
from hybridrec.plugins import registry


def device_name() -> str:
    """A human name of the device benchmarks run on."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.get_device_name(0)}"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    import os
    import platform

    return f"cpu:{platform.machine()}x{os.cpu_count()}"


def register(cli: click.Group) -> None:
    @cli.command("bench")
    @click.argument("suite", required=False)
    @click.option("--json", "as_json", is_flag=True, help="Print the result object as JSON.")
    @click.option("--quick", is_flag=True, help="Smaller sizes (for smoke tests).")
    @click.option("--out", type=click.Path(path_type=Path), help="Also write the JSON here.")
    def bench(suite: str | None, as_json: bool, quick: bool, out: Path | None) -> None:
        """Run benchmark SUITE and print {suite, device, results}. Without SUITE, list suites."""
        suites = registry().bench_suites
        if suite is None:
            for name in sorted(suites):
                doc = (suites[name].__doc__ or "").strip().splitlines()
                click.echo(f"{name:<12} {doc[0] if doc else ''}")
            return
        if suite not in suites:
            raise HybridrecError(
                f"unknown bench suite {suite!r}{did_you_mean(suite, suites)}; "
                f"available: {', '.join(sorted(suites)) or 'none'}"
            )
        started = time.perf_counter()
        results = suites[suite](quick=quick)
        payload = {
            "suite": suite,
            "device": device_name(),
            "quick": quick,
            "seconds": round(time.perf_counter() - started, 3),
            "results": results,
        }
        text = json.dumps(payload, indent=2)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text + "\n")
        if as_json:
            click.echo(text)
        else:
            click.echo(f"suite {suite} on {payload['device']} ({payload['seconds']} s)")
            for key, value in results.items():
                shown = f"{value:,.4g}" if isinstance(value, float) else str(value)
                click.echo(f"  {key:<36} {shown}")


__all__ = [
    "device_name",
    "register",
]
