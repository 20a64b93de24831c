"""The ``data`` bench suite: ML-1M load + extraction, and synthetic extraction scaling."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from hybridrec.errors import HybridrecError

# Runs in a fresh interpreter so that ru_maxrss is the peak of this job alone.
_ML1M_CHILD = """
import json, resource, time
started = time.perf_counter()
from hybridrec.data import prepare
from hybridrec_datasets.movielens import MovieLens1M
imported = time.perf_counter()
data = MovieLens1M().load()
loaded = time.perf_counter()
prepared = prepare(data)
done = time.perf_counter()
print(json.dumps({
    "transitions": len(prepared.transitions),
    "clusters": len(prepared.catalog),
    "interactions": len(data.interactions),
    "quarantined": prepared.quarantine_count,
    "import_seconds": imported - started,
    "load_seconds": loaded - imported,
    "extract_seconds": done - loaded,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
}))
"""


def _ml1m() -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _ML1M_CHILD], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise HybridrecError(f"the ML-1M benchmark job failed:\n{proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _synthetic(sizes: list[int]) -> dict[str, float]:
    from hybridrec.data.synthetic import SyntheticConfig, generate_interactions
    from hybridrec.data.transitions import extract_transitions

    out: dict[str, float] = {}
    for size in sizes:
        generated = generate_interactions(
            size, SyntheticConfig(n_clusters=50, days=120, n_users=max(100, size // 100), seed=1)
        )
        started = time.perf_counter()
        transitions = extract_transitions(generated.interactions, generated.item_cluster, 50)
        out[str(size)] = time.perf_counter() - started
        out[f"{size}_transitions"] = float(len(transitions))
        del generated, transitions
    return out


def data_suite(quick: bool = False) -> dict[str, float | int | str]:
    """ML-1M load+extract seconds and peak RSS (fresh process); synthetic extraction scaling."""
    ml = _ml1m()
    sizes = [100_000, 250_000, 500_000, 1_000_000] if quick else [
        1_000_000, 2_500_000, 5_000_000, 10_000_000
    ]
    synthetic = _synthetic(sizes)
    largest = sizes[-1]
    per_million = {s: synthetic[str(s)] / (s / 1e6) for s in sizes}
    results: dict[str, float | int | str] = {
        "ml1m_transitions": int(ml["transitions"]),
        "ml1m_clusters": int(ml["clusters"]),
        "ml1m_interactions": int(ml["interactions"]),
        "ml1m_extract_seconds": round(ml["load_seconds"] + ml["extract_seconds"], 3),
        "ml1m_load_seconds": round(ml["load_seconds"], 3),
        "ml1m_transition_seconds": round(ml["extract_seconds"], 3),
        "ml1m_import_seconds": round(ml["import_seconds"], 3),
        "ml1m_peak_rss_mb": round(ml["peak_rss_mb"], 1),
        "synthetic_sizes": ",".join(str(s) for s in sizes),
    }
    for size in sizes:
        results[f"synthetic_{size}_extract_seconds"] = round(synthetic[str(size)], 3)
        results[f"synthetic_{size}_seconds_per_million"] = round(per_million[size], 3)
    # Linear scaling: seconds per million rows at the largest size over that at the smallest.
    results["synthetic_scaling_ratio"] = round(per_million[largest] / per_million[sizes[0]], 3)
    if not quick:
        results["synthetic_10m_extract_seconds"] = round(synthetic[str(10_000_000)], 3)
    else:
        results["synthetic_10m_extract_seconds"] = "skipped (quick)"
    return results
