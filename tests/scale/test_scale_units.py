"""The ray executor and the scale bench without a cluster.

The driver-side half of the exactly-once guarantee: whatever order blocks arrive in, and however
often a retried batch is re-delivered, the sink sees every batch once, in order. Plus the
steady-state rate, the options, the lazy ray import and the GPU bench's code path on CPU.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hybridrec_executors.ray_executor import RayOptions, _Reassembler, _steady_rate
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hybridrec.generation import batches
from hybridrec.plugins import get


def deliveries(n: int, size: int, order: list[int], repeats: list[int]) -> list[tuple[np.ndarray, ...]]:
    bounds = list(batches(n, size))
    out = []
    for b in order + repeats:
        rows = np.arange(bounds[b].start, bounds[b].stop, dtype=np.int64)
        ids = np.stack([rows * 3, rows * 3 + 1], axis=1)
        out.append((rows, ids, ids.astype(np.float32) / 7))
    return out


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 200),
    size=st.integers(1, 40),
    data=st.data(),
)
def test_batches_come_out_once_and_in_order(n: int, size: int, data: st.DataObject) -> None:
    bounds = list(batches(n, size))
    order = data.draw(st.permutations(range(len(bounds))))
    repeats = data.draw(st.lists(st.integers(0, len(bounds) - 1), max_size=5))
    assembler = _Reassembler(bounds)
    emitted: list[tuple[slice, np.ndarray]] = []
    for rows, ids, scores in deliveries(n, size, list(order), repeats):
        assembler.add(rows, ids, scores)
        emitted.extend((bound, slot.ids) for bound, slot in assembler.ready())
    assert assembler.done
    assert [b for b, _ in emitted] == bounds
    ids = np.concatenate([i for _, i in emitted])
    np.testing.assert_array_equal(ids[:, 0], np.arange(n) * 3)
    assert assembler.duplicates == sum(bounds[b].stop - bounds[b].start for b in repeats)


def test_a_partly_delivered_batch_is_held_back() -> None:
    bounds = list(batches(10, 5))
    assembler = _Reassembler(bounds)
    rows = np.array([0, 1, 2], dtype=np.int64)
    ids = np.zeros((3, 2), dtype=np.int64)
    assembler.add(rows, ids, ids.astype(np.float32))
    assert list(assembler.ready()) == []
    assert not assembler.done


def test_steady_rate_ignores_warm_up_and_the_tail() -> None:
    # worker 1: a slow first batch (warm-up), then 10 rows/s; worker 2 starts late
    worker = np.array([1, 1, 1, 2, 2])
    t0 = np.array([0.0, 5.0, 6.0, 5.0, 6.0])
    t1 = np.array([5.0, 6.0, 7.0, 6.0, 7.0])
    rows = np.array([10, 10, 10, 10, 10])
    assert _steady_rate(worker, t0, t1, rows) == pytest.approx(20.0)


def test_ray_options_are_strict() -> None:
    with pytest.raises(ValidationError):
        RayOptions(n_wokers=2)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        RayOptions(n_workers=0)
    assert get("executor", "ray").Options is RayOptions


def test_plugin_package_imports_without_ray() -> None:
    code = (
        "import sys, hybridrec_executors, hybridrec_executors.ray_executor\n"
        "assert 'ray' not in sys.modules, 'ray was imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_table_throughput_measures_the_gpu_benchmark_path_on_cpu() -> None:
    # the GPU part of `bench scale` with a toy shape on CPU: same code, keys and FLOP accounting
    from hybridrec_executors.scale_bench import table_throughput

    from hybridrec.generation import all_contexts

    arch = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32}
    out = table_throughput(all_contexts(12), 12, arch=arch, device="cpu", dtype="float32", warm_up=16)
    assert out["contexts"] == 132
    assert float(out["seconds"]) > 0 and float(out["tflops"]) > 0
    assert int(out["model_parameters"]) > 0 and float(out["prompt_tokens_per_context"]) >= 2
