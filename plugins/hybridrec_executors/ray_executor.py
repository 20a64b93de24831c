"""The Ray table executor: Ray Data over contexts, one model replica per actor.

Data flow of :meth:`RayExecutor.run`::

    job.contexts ──split by batch──► Ray Data blocks (one block = one batch: row index + context)
        ──map_batches(_RankBatches, actor pool of n_workers, num_gpus per actor)──►
    blocks of (row, ids, scores) ──driver: place rows by index, emit batches in order──► sink

The batch partition is exactly the local executor's (``options.batch_size or job.batch_size``),
and each actor rebuilds the generator and snapshot from the picklable :class:`TableJob`, so on
the same device the table equals the local executor's bit for bit.

Fault tolerance: a dead actor is restarted (``max_restarts``) and the batch it held is re-run
(``max_task_retries``). The driver places every arriving row by its absolute index into a
per-batch buffer, so a re-delivered row overwrites instead of appending, and a batch that was
already handed to the sink is dropped: the sink sees each context exactly once, in order.

``ray`` is imported only inside :meth:`RayExecutor.run`, so this module imports without the
``hybridrec[ray]`` extra.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import socket
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from hybridrec.errors import ConfigError, HybridrecError, PluginError
from hybridrec.generation import TableJob, batches
from hybridrec.interfaces import Generator, TableExecutor, snapshot_evidence
from hybridrec.types import Rankings

#: Environment variables forwarded to every worker (a remote cluster does not inherit the
#: driver's environment): plugin selection switches, offline model loading and the CPU kernels
#: the driver pinned (:mod:`hybridrec.kernels`), so workers rank with the driver's kernels.
FORWARDED_ENV_PREFIXES: tuple[str, ...] = (
    "HYBRIDREC_", "HF_", "TRANSFORMERS_", "ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA",
)

log = logging.getLogger(__name__)


class RayOptions(BaseModel):
    """Options of the ``ray`` executor."""

    model_config = ConfigDict(extra="forbid")

    n_workers: int = Field(default=2, ge=1, description="Actors, each holding one model replica.")
    batch_size: int | None = Field(
        default=None, ge=1, description="Overrides the job's batch size (same meaning as `local`)."
    )
    address: str | None = Field(
        default=None,
        description="Ray cluster to join ('auto', 'host:6379' or 'ray://host:10001'); None starts "
        "a private local cluster with n_workers × num_cpus_per_worker CPUs.",
    )
    num_cpus_per_worker: float = Field(default=1.0, gt=0)
    num_gpus_per_worker: float | None = Field(
        default=None,
        ge=0,
        description="GPUs reserved per actor; None means 1 when the cluster has GPUs, else 0.",
    )
    max_retries: int = Field(
        default=3, ge=0, description="Restarts of a dead actor and re-runs of its lost batches."
    )
    torch_threads: int | None = Field(
        default=1, ge=1, description="torch intra-op threads per actor; None leaves torch's default."
    )
    object_store_mb: int = Field(
        default=512, ge=80, description="Object store size of a local cluster started here."
    )
    keep_cluster: bool = Field(
        default=False,
        description="Leave a local cluster started by this executor running after run() "
        "(saves the start-up on repeated table regenerations).",
    )


@dataclass(frozen=True)
class RayRunStats:
    """Timings of the last :meth:`RayExecutor.run` (wall-clock seconds).

    ``steady_contexts_per_s`` counts only batches ranked after every actor finished its first
    batch and before the first actor ran dry, so it excludes cluster start, actor start, model
    load and warm-up; it uses worker clocks (exact on one machine, approximate across nodes).
    ``workers_seen`` counts the worker processes that delivered results: more than ``workers``
    means actors died and were restarted. ``worker_cpu_s`` sums the CPU time the actors spent
    ranking (all their threads); ``driver_cpu_s`` is this process's CPU time during the run
    (scheduling, transfer, reassembly, the sink): on a shared machine, contexts per CPU second
    shows whether the work itself scaled when wall-clock numbers are distorted by contention.
    """

    contexts: int
    batches: int
    workers: int
    workers_seen: int
    cluster_start_s: float
    first_result_s: float
    total_s: float
    steady_contexts_per_s: float
    worker_cpu_s: float
    driver_cpu_s: float
    duplicate_rows_dropped: int

    def as_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


class _RankBatches:
    """The actor-side callable: one generator replica per actor, one batch per call.

    Input batch: ``{"data": (n, 1 + k_ctx) int64}`` holding the absolute row index then the
    context. Output: ``row``, ``ids``, ``scores`` plus the worker id, the call's start and end
    (wall clock) and the CPU seconds the worker process spent on it.
    """

    def __init__(self, job: TableJob, torch_threads: int | None, contexts_dtype: str) -> None:
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
        self.generator = job.build_generator()
        self.snapshot = job.open_snapshot()
        self.k = job.k
        self.contexts_dtype = np.dtype(contexts_dtype)
        host = zlib.crc32(socket.gethostname().encode()) & 0x7FFFFFFF
        self.worker = np.int64((host << 32) | os.getpid())

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started, cpu = time.time(), time.process_time()
        data = np.asarray(batch["data"])
        rows = np.ascontiguousarray(data[:, 0], dtype=np.int64)
        contexts = np.ascontiguousarray(data[:, 1:], dtype=self.contexts_dtype)
        evidence = snapshot_evidence(self.snapshot, contexts) if self.snapshot is not None else None
        rankings = self.generator.rank(contexts, evidence, self.k)
        n = len(rows)
        return {
            "row": rows,
            "ids": rankings.ids,
            "scores": rankings.scores,
            "worker": np.full(n, self.worker, dtype=np.int64),
            "t0": np.full(n, started),
            "t1": np.full(n, time.time()),
            "cpu_s": np.full(n, time.process_time() - cpu),
        }


@dataclass
class _Slot:
    """Rows of one batch as they arrive; a re-delivered row overwrites its own position."""

    start: int
    ids: np.ndarray
    scores: np.ndarray
    filled: np.ndarray

    @property
    def complete(self) -> bool:
        return bool(self.filled.all())


class _Reassembler:
    """Places arriving rows by absolute index and releases complete batches in order."""

    def __init__(self, bounds: list[slice]) -> None:
        self.bounds = bounds
        self.slots: dict[int, _Slot] = {}
        self.next = 0
        self.size = bounds[0].stop - bounds[0].start if bounds else 1
        self.duplicates = 0

    def add(self, rows: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> None:
        batch_of = rows // self.size
        for b in np.unique(batch_of):
            b = int(b)
            if b < 0 or b >= len(self.bounds):
                raise HybridrecError(f"ray executor: a worker returned row indices outside the job (batch {b})")
            sel = batch_of == b
            if b < self.next:  # already handed to the sink: a late retry, never written twice
                self.duplicates += int(sel.sum())
                continue
            bound = self.bounds[b]
            slot = self.slots.get(b)
            if slot is None:
                n = bound.stop - bound.start
                slot = _Slot(
                    start=bound.start,
                    ids=np.empty((n, *ids.shape[1:]), dtype=ids.dtype),
                    scores=np.empty((n, *scores.shape[1:]), dtype=scores.dtype),
                    filled=np.zeros(n, dtype=bool),
                )
                self.slots[b] = slot
            pos = rows[sel] - slot.start
            self.duplicates += int(slot.filled[pos].sum())
            slot.ids[pos] = ids[sel]
            slot.scores[pos] = scores[sel]
            slot.filled[pos] = True

    def ready(self) -> Iterator[tuple[slice, _Slot]]:
        while self.next in self.slots and self.slots[self.next].complete:
            slot = self.slots.pop(self.next)
            yield self.bounds[self.next], slot
            self.next += 1

    @property
    def done(self) -> bool:
        return self.next == len(self.bounds)


def _steady_rate(worker: np.ndarray, t0: np.ndarray, t1: np.ndarray, rows: np.ndarray) -> float:
    """Contexts/s over the window in which every worker was past its first batch."""
    if rows.size == 0:
        return 0.0
    first_end = []
    last_end = []
    for w in np.unique(worker):
        mine = worker == w
        starts = t0[mine]
        first_end.append(float(t1[mine][np.argmin(starts)]))
        last_end.append(float(t1[mine].max()))
    lo, hi = max(first_end), min(last_end)
    inside = (t0 >= lo) & (t1 <= hi)
    if hi > lo and inside.any():
        return float(rows[inside].sum()) / (hi - lo)
    span = float(t1.max() - t0.min())
    return float(rows.sum()) / span if span > 0 else 0.0


class RayExecutor(TableExecutor):
    """Ranks the job's contexts on a Ray cluster: Ray Data blocks through an actor pool.

    Contract (as :class:`~hybridrec.interfaces.TableExecutor`): the sink receives the job's
    batches in order, each context exactly once, even when actors die and batches are re-run.
    The actors always rebuild the generator from ``job`` (the ``generator`` argument is an
    in-process object and is not shipped). :attr:`last_stats` holds the timings of the last run.
    """

    name: ClassVar[str] = "ray"
    Options: ClassVar[type[BaseModel]] = RayOptions

    last_stats: RayRunStats | None = None

    def run(
        self,
        job: TableJob,
        sink: Callable[[Rankings], None],
        *,
        generator: Generator | None = None,
        progress: bool = False,
    ) -> int:
        opts: RayOptions = self.options
        n = int(job.contexts.shape[0])
        size = opts.batch_size or job.batch_size
        bounds = list(batches(n, size))
        if n == 0:
            self.last_stats = RayRunStats(0, 0, opts.n_workers, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
            return 0
        ray = _import_ray()
        began = time.perf_counter()
        started_here = self._connect(ray)
        cluster_start_s = time.perf_counter() - began
        try:
            with _quiet_ray_data():
                return self._execute(ray, job, sink, bounds, cluster_start_s, progress)
        finally:
            if started_here and not opts.keep_cluster:
                ray.shutdown()

    # -- cluster ---------------------------------------------------------------------------

    def _connect(self, ray: Any) -> bool:
        """Join or start a cluster; True when this call started (and so owns) it."""
        opts: RayOptions = self.options
        if ray.is_initialized():
            return False
        common: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": True,
            "logging_level": logging.WARNING,
        }
        if opts.address is None:
            ray.init(
                num_cpus=math.ceil(opts.n_workers * opts.num_cpus_per_worker),
                object_store_memory=opts.object_store_mb * 1024 * 1024,
                **common,
            )
            return True
        try:
            ray.init(address=opts.address, **common)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"[executor.options] address={opts.address!r}: could not join the Ray cluster: "
                f"{exc}. Start one with `ray start --head` (then use address='auto'), or set "
                "address to null to start a private local cluster."
            ) from None
        return True

    def _gpus_per_worker(self, ray: Any) -> float:
        opts: RayOptions = self.options
        if opts.num_gpus_per_worker is not None:
            return opts.num_gpus_per_worker
        return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0

    # -- execution -------------------------------------------------------------------------

    def _execute(
        self,
        ray: Any,
        job: TableJob,
        sink: Callable[[Rankings], None],
        bounds: list[slice],
        cluster_start_s: float,
        progress: bool,
    ) -> int:
        opts: RayOptions = self.options
        contexts = job.contexts
        rows = np.arange(contexts.shape[0], dtype=np.int64)[:, None]
        packed = np.concatenate([rows, contexts.astype(np.int64, copy=False)], axis=1)
        blocks = [packed[b] for b in bounds]
        # The actors receive the job without its contexts: those travel as Ray Data blocks.
        worker_job = dataclasses.replace(job, contexts=contexts[:0])
        env = {
            k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)
        }
        with warnings.catch_warnings():
            # Ray Data has no named parameter for actor restarts yet; without a bound, an actor
            # that dies on every attempt (a segfaulting kernel, OOM) would be retried forever.
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = ray.data.from_numpy(blocks).map_batches(
                _RankBatches,
                batch_size=None,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(opts.n_workers, len(blocks))),
                fn_constructor_args=(worker_job, opts.torch_threads, contexts.dtype.str),
                num_cpus=opts.num_cpus_per_worker,
                num_gpus=self._gpus_per_worker(ray),
                runtime_env={"env_vars": env} if env else None,
                max_restarts=opts.max_retries,
                max_task_retries=opts.max_retries,
            )
        assembler = _Reassembler(bounds)
        timing: dict[str, list[np.ndarray]] = {"worker": [], "t0": [], "t1": [], "rows": [], "cpu": []}
        written = 0
        began, driver_cpu = time.perf_counter(), time.process_time()
        first_result_s = 0.0
        try:
            with tqdm(total=len(packed), desc="table (ray)", unit="ctx", disable=not progress,
                      leave=False) as bar:
                for block in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    if not first_result_s:
                        first_result_s = time.perf_counter() - began
                    block_rows = np.asarray(block["row"], dtype=np.int64)
                    assembler.add(block_rows, np.asarray(block["ids"]), np.asarray(block["scores"]))
                    _collect_timing(timing, block)
                    for bound, slot in assembler.ready():
                        sink(Rankings(contexts=contexts[bound], ids=slot.ids, scores=slot.scores))
                        written += bound.stop - bound.start
                        bar.update(bound.stop - bound.start)
        except ray.exceptions.RayError as exc:
            raise HybridrecError(
                f"ray executor: the table job ({len(packed)} contexts in {len(bounds)} batches, "
                f"generator {job.generator.plugin!r}) failed after up to {opts.max_retries} "
                f"retries per batch: {exc}"
            ) from exc
        if not assembler.done:
            raise HybridrecError(
                f"ray executor: the run ended after {assembler.next} of {len(bounds)} batches; "
                "batches were lost (see the Ray logs under /tmp/ray/session_latest/logs)"
            )
        total_s = time.perf_counter() - began
        driver_cpu_s = time.process_time() - driver_cpu
        worker, t0, t1, counts, cpu = _batch_timing(timing)
        self.last_stats = RayRunStats(
            contexts=written,
            batches=len(bounds),
            workers=min(opts.n_workers, len(bounds)),
            workers_seen=len(np.unique(worker)),
            cluster_start_s=cluster_start_s,
            first_result_s=first_result_s,
            total_s=total_s,
            steady_contexts_per_s=_steady_rate(worker, t0, t1, counts),
            worker_cpu_s=float(cpu.sum()),
            driver_cpu_s=driver_cpu_s,
            duplicate_rows_dropped=assembler.duplicates,
        )
        return written


def _collect_timing(timing: dict[str, list[np.ndarray]], block: dict[str, np.ndarray]) -> None:
    """Keep one (worker, t0, t1, rows, cpu) record per ranked batch of ``block``."""
    t0 = np.asarray(block["t0"])
    worker = np.asarray(block["worker"])
    keys = np.stack([worker.astype(np.float64), t0], axis=1)
    _, first, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
    timing["worker"].append(worker[first])
    timing["t0"].append(t0[first])
    timing["t1"].append(np.asarray(block["t1"])[first])
    timing["rows"].append(counts)
    timing["cpu"].append(np.asarray(block["cpu_s"])[first])


def _batch_timing(
    timing: dict[str, list[np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    def cat(name: str) -> np.ndarray:
        return np.concatenate(timing[name]) if timing[name] else np.zeros(0)

    return cat("worker"), cat("t0"), cat("t1"), cat("rows"), cat("cpu")


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise PluginError(
            "the 'ray' executor needs Ray Data, which is not installed: "
            "pip install 'hybridrec[ray]' (or use executor 'local')"
        ) from exc
    return ray


@contextlib.contextmanager
def _quiet_ray_data() -> Iterator[None]:
    """Ordered execution without progress bars or Ray Data's per-dataset logs; restores both."""
    import ray.data

    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    logger = logging.getLogger("ray.data")
    saved_level = logger.level
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    logger.setLevel(logging.ERROR)  # Ray Data warns at WARNING that progress bars are off
    try:
        yield
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        logger.setLevel(saved_level)
