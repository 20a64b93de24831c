"""``hybridrec bench scale``: table-generation throughput of the ``ray`` executor, and on a GPU
the time to rank a 1M-context table with a model of SmolLM2-135M's shape.

Ray part (always): a private local Ray cluster with 2 CPUs; the ``hf`` generator, ``tiny``
preset, on CPU with one torch thread per worker; the same job run by 1 and by 2 workers and,
as the reference, by the ``local`` executor in this process with one thread. Throughput is the
steady state (:attr:`RayRunStats.steady_contexts_per_s`: after every actor has loaded its model
and ranked its first batch); start-up is reported separately. ``ray_tables_identical`` is 1
when both Ray tables equal the local one byte for byte. ``*_contexts_per_worker_cpu_s``
divides by the CPU seconds the actors spent ranking instead of wall-clock time: on a machine
shared with other work, it tells whether the work per context stayed the same when 2 workers
run (the ranking itself scales) even where the wall-clock speed-up is distorted. The control
``plain_2processes_speedup`` runs the same split in 2 plain one-thread processes without Ray:
the speed-up this machine offers at that moment, which bounds what Ray can show.

GPU part (only where ``torch.cuda.is_available()``): a randomly initialised Llama of
SmolLM2-135M's shape (576 hidden, 30 layers, 9 heads / 3 KV heads, 1536 MLP, 49,152 vocab,
tied embeddings) in bfloat16 ranks every ordered pair of 1,000 clusters (999,000 contexts)
with the ``local`` executor. ``gpu_tflops`` is the ``flops`` cost model's FLOP count of that
table divided by the measured seconds; ``gpu_matmul_peak_tflops`` is a bf16 8192³ matmul
measured on the same device, for scale.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import sys
import time
from typing import Any

import numpy as np
from hybridrec_hf.bench import described_catalog, matmul_peak

from hybridrec.config import PluginRef
from hybridrec.generation import TableJob, all_contexts
from hybridrec.plugins import get
from hybridrec.types import Rankings

Result = dict[str, float | int | str]

SMOLLM2_SHAPE: dict[str, Any] = {
    "family": "llama",
    "hidden_size": 576,
    "num_layers": 30,
    "num_heads": 9,
    "num_kv_heads": 3,
    "intermediate_size": 1536,
    "vocab_size": 49152,
    "max_positions": 64,
    "attn_implementation": "sdpa",
}


class _Digest:
    """A sink that hashes the table (ids and scores bytes, batch by batch) and counts rows."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.rows = 0

    def __call__(self, rankings: Rankings) -> None:
        self.hash.update(np.ascontiguousarray(rankings.ids).tobytes())
        self.hash.update(np.ascontiguousarray(rankings.scores).tobytes())
        self.rows += len(rankings)


def _note(message: str) -> None:
    print(f"[bench scale] {message}", file=sys.stderr, flush=True)


def _rank_share(job: TableJob, share: slice, barrier: Any) -> tuple[float, float, int]:
    """Rank ``job.contexts[share]`` in this (spawned) process with one thread; returns the
    wall-clock start and end of the ranking (after the model is built and all peers are ready)."""
    import torch

    torch.set_num_threads(1)
    generator = job.build_generator()
    part = dataclasses.replace(job, contexts=job.contexts[share])
    local = get("executor", "local")()
    barrier.wait()
    began = time.time()
    rows = local.run(part, lambda rankings: None, generator=generator)  # type: ignore[attr-defined]
    return began, time.time(), int(rows)


def plain_processes(job: TableJob, processes: int) -> float:
    """Contexts/s of ``processes`` plain one-thread processes splitting the job (no Ray): the
    scaling ceiling this machine offers right now."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    n = len(job.contexts)
    cuts = np.linspace(0, n, processes + 1).astype(int)
    context = mp.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(processes, mp_context=context) as pool:
        barrier = manager.Barrier(processes)
        futures = [pool.submit(_rank_share, job, slice(int(a), int(b)), barrier)
                   for a, b in itertools.pairwise(cuts)]
        spans = [f.result() for f in futures]
    return sum(r for _, _, r in spans) / (max(e for _, e, _ in spans) - min(b for b, _, _ in spans))


def ray_scaling(quick: bool) -> Result:
    """1 vs 2 Ray workers (one torch thread each) against the in-process local executor."""
    import ray
    import torch

    n_clusters = 60 if quick else 200
    job = TableJob(
        generator=PluginRef(plugin="hf", options={"preset": "tiny", "device": "cpu", "num_threads": 1}),
        catalog=described_catalog(n_clusters),
        contexts=all_contexts(n_clusters),
        k=10,
        batch_size=256 if quick else 1024,
    )
    n = len(job.contexts)
    out: Result = {"ray_contexts": n, "ray_batch_size": job.batch_size, "torch_threads_per_worker": 1}

    _note(f"local executor, 1 thread, {n} contexts")
    threads = torch.get_num_threads()
    try:
        generator = job.build_generator()
        torch.set_num_threads(1)
        local = get("executor", "local")()
        reference = _Digest()
        began, cpu_began = time.perf_counter(), time.process_time()
        local.run(job, reference, generator=generator)  # type: ignore[attr-defined]
        out["local_1thread_contexts_per_s"] = round(n / (time.perf_counter() - began), 1)
        out["local_1thread_contexts_per_cpu_s"] = round(n / (time.process_time() - cpu_began), 1)
    finally:
        torch.set_num_threads(threads)

    _note("control: 1 and 2 plain processes without Ray")
    one, two = plain_processes(job, 1), plain_processes(job, 2)
    out["plain_1process_contexts_per_s"] = round(one, 1)
    out["plain_2processes_contexts_per_s"] = round(two, 1)
    out["plain_2processes_speedup"] = round(two / max(one, 1e-9), 3)

    began = time.perf_counter()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=256 * 1024 * 1024, configure_logging=True,
                 logging_level=logging.WARNING)
    out["ray_cluster_start_s"] = round(time.perf_counter() - began, 2)
    identical = True
    try:
        cls = get("executor", "ray")
        for workers, label in ((1, "1worker"), (2, "2workers")):
            _note(f"ray executor, {workers} worker(s)")
            executor = cls(cls.Options(n_workers=workers, torch_threads=1))
            digest = _Digest()
            executor.run(job, digest)  # type: ignore[attr-defined]
            stats = executor.last_stats  # type: ignore[attr-defined]
            identical &= digest.hash.digest() == reference.hash.digest() and digest.rows == n
            out[f"ray_{label}_contexts_per_s"] = round(stats.steady_contexts_per_s, 1)
            out[f"ray_{label}_first_result_s"] = round(stats.first_result_s, 2)
            out[f"ray_{label}_total_s"] = round(stats.total_s, 2)
            out[f"ray_{label}_contexts_per_worker_cpu_s"] = round(n / max(stats.worker_cpu_s, 1e-9), 1)
            out[f"ray_{label}_driver_cpu_s"] = round(stats.driver_cpu_s, 2)
            out[f"ray_{label}_workers_seen"] = stats.workers_seen
    finally:
        if started_here:
            ray.shutdown()
    out["ray_2workers_speedup"] = round(
        float(out["ray_2workers_contexts_per_s"]) / max(float(out["ray_1worker_contexts_per_s"]), 1e-9), 3
    )
    out["ray_tables_identical"] = int(identical)
    return out


def table_throughput(
    contexts: np.ndarray,
    n_clusters: int,
    *,
    arch: dict[str, Any],
    device: str,
    dtype: str,
    warm_up: int = 8192,
) -> Result:
    """Rank ``contexts`` with a random-init ``hf`` model of shape ``arch`` on ``device`` with the
    local executor (after a warm-up run); seconds, contexts/s and TFLOP/s by the ``flops`` cost
    model's count of the same table."""
    import torch

    options = {"preset": "tiny", "tiny": arch, "device": device, "dtype": dtype, "batch_size": 4096}
    job = TableJob(generator=PluginRef(plugin="hf", options=options), catalog=described_catalog(n_clusters),
                   contexts=contexts, k=10, batch_size=65536)
    generator = job.build_generator()
    local = get("executor", "local")()
    cuda = torch.device(device).type == "cuda"
    local.run(dataclasses.replace(job, contexts=contexts[:warm_up]), _Digest(), generator=generator)  # type: ignore[attr-defined]
    if cuda:
        torch.cuda.synchronize()
    sink = _Digest()
    began = time.perf_counter()
    local.run(job, sink, generator=generator)  # type: ignore[attr-defined]
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    work = generator.workload(len(contexts), with_evidence=False)
    flops = get("cost_model", "flops")().estimate("regenerate_table", work).flops  # type: ignore[attr-defined]
    return {
        "contexts": sink.rows,
        "model_parameters": work.model_parameters,
        "prompt_tokens_per_context": round(work.inference_tokens / max(len(contexts), 1), 2),
        "seconds": round(seconds, 3),
        "contexts_per_s": round(len(contexts) / seconds, 1),
        "tflops": flops / seconds / 1e12,
    }


def gpu_table(quick: bool) -> Result:
    """A 1M-context table with a SmolLM2-135M-shaped model on one GPU (omitted without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return {"gpu_skipped": "no CUDA device: torch.cuda.is_available() is False"}
    out: Result = {"gpu_device": torch.cuda.get_device_name(0)}
    out["gpu_matmul_peak_tflops"] = round(matmul_peak("cuda") / 1e12, 1)
    contexts = all_contexts(1000)  # 999,000 ordered pairs
    if quick:
        contexts = contexts[:50_000]
    measured = table_throughput(contexts, 1000, arch=SMOLLM2_SHAPE, device="cuda", dtype="bfloat16")
    out.update({f"gpu_{key}": value for key, value in measured.items() if key != "seconds"})
    out["gpu_table_1m_seconds" if not quick else "gpu_table_50k_seconds"] = measured["seconds"]
    out["gpu_tflops"] = round(float(measured["tflops"]), 2)
    out["gpu_fraction_of_matmul_peak"] = round(
        float(measured["tflops"]) / max(float(out["gpu_matmul_peak_tflops"]), 1e-9), 4
    )
    return out


def scale_suite(quick: bool) -> Result:
    """Ray executor 1 vs 2 workers (tiny hf model); on a GPU, a 1M-context table's time and TFLOP/s."""
    results = ray_scaling(quick)
    results.update(gpu_table(quick))
    return results
