"""Fine-tuning on several GPUs through an existing launcher, chosen by ``[distributed]`` config.

Engines (:class:`~hybridrec.config.DistributedConfig`):

``single`` (default)
    :func:`fine_tune` calls the fine-tuner in this process: exactly the single-process path.
``torchrun`` / ``accelerate``
    :func:`fine_tune` writes a :class:`FineTuneSpec` (plugin refs, catalog, window, paths) and the
    transitions into a run folder, builds a :class:`LaunchPlan` (the launcher's command line) and
    runs it as a subprocess. The launcher starts ``nproc_per_node`` processes per node; each runs
    ``python -m hybridrec.distributed SPEC`` (:func:`worker_main`), which joins the process group,
    pins its GPU, rebuilds the generator and fine-tuner through the plugin registry and calls
    :meth:`~hybridrec.interfaces.FineTuner.fine_tune`. Rank 0 writes the result; the parent reads
    it and activates the new adapter on its own generator.

What makes training data-parallel is the fine-tuner, not the launcher: a fine-tuner opts in with
the class attribute ``supports_distributed = True`` and, inside ``fine_tune``, uses
:func:`current` (rank, world size, :meth:`DistributedContext.shard`,
:meth:`DistributedContext.wrap_model` for DDP, :meth:`DistributedContext.all_reduce_sum`), and
writes its output on the main process only. A fine-tuner built on ``transformers.Trainer`` or
``accelerate.Accelerator`` reads the launcher's environment by itself. :func:`fine_tune` refuses
to start several processes for a fine-tuner that has not opted in (they would each train the
whole set and race on the output folder).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from hybridrec.artifacts import open_private, sha256_file
from hybridrec.config import DistributedConfig, PluginRef
from hybridrec.errors import ConfigError, HybridrecError
from hybridrec.interfaces import EvidenceFn, FineTuner, FineTuneResult, Generator
from hybridrec.plugins import build, resolve_plugin
from hybridrec.types import ClusterCatalog, EvidenceBatch, TimeWindow, TransitionSet

if TYPE_CHECKING:
    import torch

SPEC_FILE = "spec.json"
TRANSITIONS_FILE = "transitions.npz"
EVIDENCE_FILE = "evidence.npz"
RESULT_FILE = "result.json"
LOG_FILE = "launch.log"

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Inside a rank
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job, read from the launcher's environment variables
    (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``); a plain process is rank 0 of 1."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> DistributedContext:
        env = os.environ if environ is None else environ
        return cls(
            rank=int(env.get("RANK", 0)),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            world_size=int(env.get("WORLD_SIZE", 1)),
        )

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the one process that writes outputs (rank 0)."""
        return self.rank == 0

    def shard(self, n: int) -> np.ndarray:
        """This rank's rows of ``n``: ``rank, rank + world, ...`` (sizes differ by at most one)."""
        return np.arange(self.rank, n, self.world_size, dtype=np.int64)

    def device(self) -> torch.device:
        """``cuda:LOCAL_RANK`` when CUDA is available, else CPU."""
        import torch

        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def wrap_model(self, model: torch.nn.Module, **ddp_kwargs: Any) -> torch.nn.Module:
        """``model`` wrapped in DistributedDataParallel when distributed, else unchanged."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = self.device()
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, **ddp_kwargs)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``tensor`` over all ranks (in place; returned for chaining)."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


def current() -> DistributedContext:
    """The :class:`DistributedContext` of this process."""
    return DistributedContext.from_env()


def supports_distributed(cls: type) -> bool:
    """Whether a fine-tuner class declared ``supports_distributed = True``."""
    return bool(getattr(cls, "supports_distributed", False))


# ---------------------------------------------------------------------------------------------
# The spec a launch hands to every rank
# ---------------------------------------------------------------------------------------------


class FineTuneSpec(BaseModel):
    """Everything a rank needs to run one fine-tune, as JSON beside the transitions file."""

    model_config = ConfigDict(extra="forbid")

    generator: PluginRef
    fine_tuner: PluginRef
    catalog: ClusterCatalog
    window: TimeWindow
    out_dir: Path
    previous_adapter: Path | None = None
    backend: str = "auto"
    has_evidence_fn: bool = False
    #: sha256 of the transitions file and of the evidence file; a rank refuses files that differ
    checksums: dict[str, str] = {}


def save_transitions(path: Path, transitions: TransitionSet) -> None:
    with open_private(path, "wb") as fh:
        np.savez(
            fh, c1=transitions.c1, c2=transitions.c2, c3=transitions.c3, ts=transitions.ts,
            user=transitions.user, n_clusters=np.int64(transitions.n_clusters),
        )


def load_transitions(path: Path) -> TransitionSet:
    with np.load(path, allow_pickle=False) as z:
        return TransitionSet(z["c1"], z["c2"], z["c3"], z["ts"], z["user"], int(z["n_clusters"]))



_EVIDENCE_ARRAYS = ("contexts", "cluster", "support", "score", "last_seen", "provenance")


class PrecomputedEvidence:
    """An evidence function read back from arrays: the parent evaluates the caller's
    ``evidence_fn`` on every ``(context, time)`` of the window before the launch, and each rank
    answers from those rows. Run folders hold arrays and JSON only, never pickled code."""

    def __init__(self, batch: EvidenceBatch, ts: np.ndarray) -> None:
        self.batch = batch
        self._index: dict[tuple[int, int, int], int] = {}
        for i, (c, t) in enumerate(zip(batch.contexts.tolist(), ts.tolist(), strict=True)):
            self._index.setdefault((int(c[0]), int(c[1]), int(t)), i)
        self.ts = ts

    def __call__(self, contexts: np.ndarray, as_of_ts: np.ndarray) -> EvidenceBatch:
        rows = []
        for c, t in zip(np.asarray(contexts).tolist(), np.asarray(as_of_ts).tolist(), strict=True):
            key = (int(c[0]), int(c[1]), int(t))
            if key not in self._index:
                raise HybridrecError(
                    f"distributed fine-tune: no precomputed evidence for context {key[:2]} at "
                    f"{key[2]}; the parent evaluates evidence_fn only on the window's transitions"
                )
            rows.append(self._index[key])
        return self.batch.take(np.asarray(rows, dtype=np.int64))

    def save(self, path: Path) -> None:
        arrays = {name: getattr(self.batch, name) for name in _EVIDENCE_ARRAYS}
        arrays["ts"] = self.ts
        if self.batch.similarity is not None:
            arrays["similarity"] = self.batch.similarity
        if self.batch.source is not None:
            arrays["source"] = self.batch.source
        if self.batch.shares is not None:
            arrays["shares"] = self.batch.shares
        if self.batch.context_support is not None:
            arrays["context_support"] = self.batch.context_support
        if self.batch.recent is not None:
            arrays["recent"] = self.batch.recent
        with open_private(path, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> PrecomputedEvidence:
        with np.load(path, allow_pickle=False) as z:
            batch = EvidenceBatch(
                **{name: z[name] for name in _EVIDENCE_ARRAYS},
                similarity=z["similarity"] if "similarity" in z.files else None,
                source=z["source"] if "source" in z.files else None,
                shares=z["shares"] if "shares" in z.files else None,
                context_support=z["context_support"] if "context_support" in z.files else None,
                recent=z["recent"] if "recent" in z.files else None,
            )
            return cls(batch, z["ts"])


def precompute_evidence(
    evidence_fn: EvidenceFn, transitions: TransitionSet, window: TimeWindow
) -> PrecomputedEvidence:
    """``evidence_fn`` evaluated on every transition of ``window`` (context, time)."""
    rows = transitions.window(window)
    contexts = np.stack([rows.c1, rows.c2], axis=1).astype(np.int64)
    ts = np.asarray(rows.ts, dtype=np.int64)
    try:
        batch = evidence_fn(contexts, ts)
    except Exception as exc:
        raise ConfigError(
            f"distributed fine-tuning: the evidence function {evidence_fn!r} failed on the "
            f"window's transitions ({type(exc).__name__}: {exc}); use [distributed] engine = \"single\""
        ) from None
    if not isinstance(batch, EvidenceBatch) or len(batch) != len(ts):
        raise ConfigError(
            f"distributed fine-tuning: the evidence function {evidence_fn!r} did not return an "
            f"EvidenceBatch of {len(ts)} rows, so it cannot be precomputed for other processes; "
            "use [distributed] engine = \"single\""
        )
    return PrecomputedEvidence(batch, ts)


def write_spec(
    run_dir: Path,
    spec: FineTuneSpec,
    transitions: TransitionSet,
    evidence_fn: EvidenceFn | None = None,
) -> Path:
    """Write ``spec`` (JSON), ``transitions`` and the evidence ``evidence_fn`` gives for the
    window's transitions (arrays) into ``run_dir``, with the sha256 of each data file in the
    spec. Nothing in a run folder is ever unpickled."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_transitions(run_dir / TRANSITIONS_FILE, transitions)
    checksums = {TRANSITIONS_FILE: sha256_file(run_dir / TRANSITIONS_FILE)}
    if evidence_fn is not None:
        precompute_evidence(evidence_fn, transitions, spec.window).save(run_dir / EVIDENCE_FILE)
        checksums[EVIDENCE_FILE] = sha256_file(run_dir / EVIDENCE_FILE)
    spec = spec.model_copy(update={"has_evidence_fn": evidence_fn is not None, "checksums": checksums})
    path = run_dir / SPEC_FILE
    with open_private(path, "w") as fh:
        fh.write(spec.model_dump_json(indent=2))
    return path


def _verified(run_dir: Path, spec: FineTuneSpec, name: str) -> Path:
    path = run_dir / name
    expected = spec.checksums.get(name)
    if expected is None or not path.is_file() or sha256_file(path) != expected:
        raise HybridrecError(
            f"distributed fine-tune: {path} is missing or does not match the checksum in "
            f"{run_dir / SPEC_FILE}; refusing to read it"
        )
    return path


# ---------------------------------------------------------------------------------------------
# Launch plans
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchPlan:
    """A launcher command line for one node: ``argv`` run with ``env`` added to the environment."""

    engine: str
    argv: tuple[str, ...]
    nproc_per_node: int
    world_size: int
    env: dict[str, str] = field(default_factory=dict)

    def command_line(self) -> str:
        """The command as a shell line (what to run by hand on another node)."""
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return (prefix + " " if prefix else "") + shlex.join(self.argv)


def visible_gpus() -> int:
    """CUDA devices this process can see (0 without CUDA)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def plan_launch(
    config: DistributedConfig,
    spec_path: Path,
    *,
    gpus: int | None = None,
    python: str | None = None,
) -> LaunchPlan:
    """The launcher command that runs :func:`worker_main` on ``spec_path`` on this node.

    ``gpus`` is the number of visible GPUs (default: asked from torch); it sets the process
    count when ``nproc_per_node`` is None. Raises :class:`ConfigError` for ``engine = "single"``
    (nothing to launch) and when no process count can be chosen.
    """
    if config.engine == "single":
        raise ConfigError('[distributed] engine = "single" runs in-process; there is nothing to launch')
    gpus = visible_gpus() if gpus is None else gpus
    nproc = config.nproc_per_node or gpus
    if nproc < 1:
        raise ConfigError(
            f"[distributed] engine = {config.engine!r} found no GPU to start one process per GPU "
            "on; set nproc_per_node (CPU processes use the gloo backend) or engine = \"single\""
        )
    if config.node_rank >= config.nnodes:
        raise ConfigError(
            f"[distributed] node_rank = {config.node_rank} must be below nnodes = {config.nnodes}"
        )
    py = python or sys.executable
    world = nproc * config.nnodes
    target = ("-m", "hybridrec.distributed", str(spec_path))
    argv: list[str]
    if config.engine == "torchrun":
        argv = [
            py, "-m", "torch.distributed.run",
            f"--nnodes={config.nnodes}",
            f"--nproc-per-node={nproc}",
            f"--node-rank={config.node_rank}",
            f"--master-addr={config.master_addr}",
            f"--master-port={config.master_port}",
            *config.extra_args,
            *target,
        ]
    else:
        argv = [
            py, "-m", "accelerate.commands.launch",
            "--num_processes", str(world),
            "--num_machines", str(config.nnodes),
            "--machine_rank", str(config.node_rank),
            "--main_process_ip", config.master_addr,
            "--main_process_port", str(config.master_port),
            "--mixed_precision", config.mixed_precision,
            # accelerate starts several processes only through its multi_gpu (torchrun) path,
            # which on a machine without GPUs runs them on CPU with gloo
            *(["--multi_gpu"] if world > 1 else ["--cpu"] if gpus == 0 else []),
            *config.extra_args,
            *target,
        ]
    return LaunchPlan(
        engine=config.engine,
        argv=tuple(argv),
        nproc_per_node=nproc,
        world_size=world,
        env={"HYBRIDREC_DISTRIBUTED_BACKEND": config.backend},
    )


# ---------------------------------------------------------------------------------------------
# The entry point callers use
# ---------------------------------------------------------------------------------------------


def fine_tune(
    config: DistributedConfig,
    *,
    generator_ref: PluginRef,
    fine_tuner_ref: PluginRef,
    catalog: ClusterCatalog,
    transitions: TransitionSet,
    window: TimeWindow,
    out_dir: Path,
    previous_adapter: Path | None = None,
    evidence_fn: EvidenceFn | None = None,
    generator: Generator | None = None,
    fine_tuner: FineTuner | None = None,
    progress: bool = False,
) -> FineTuneResult:
    """Run one fine-tune with the engine ``config`` chooses; same contract as
    :meth:`FineTuner.fine_tune`, including leaving ``generator`` (when given) with the new
    adapter active.

    ``single`` uses ``generator`` / ``fine_tuner`` when given (else builds them from the refs)
    and calls them in this process. The launch engines rebuild both in every rank from the refs.
    """
    if config.engine == "single":
        gen = generator if generator is not None else _build_generator(generator_ref, catalog)
        tuner = fine_tuner if fine_tuner is not None else _build_fine_tuner(fine_tuner_ref)
        return tuner.fine_tune(
            gen, transitions, window, out_dir, previous_adapter=previous_adapter,
            evidence_fn=evidence_fn, progress=progress,
        )
    tuner_cls = resolve_plugin("fine_tuner", fine_tuner_ref).cls
    if not supports_distributed(tuner_cls):
        raise ConfigError(
            f"[distributed] engine = {config.engine!r}: fine-tuner {fine_tuner_ref.plugin!r} does "
            "not declare supports_distributed = True, so several processes would each train on "
            "everything and race on the output; use engine = \"single\" or a distributed-aware "
            "fine-tuner (see hybridrec.distributed)"
        )
    if config.nnodes > 1 and config.run_dir is None:
        raise ConfigError(
            "[distributed] nnodes > 1 needs run_dir on storage that every node shares (the spec "
            "and the transitions are read there by every rank)"
        )
    temporary = config.run_dir is None
    run_dir = (
        Path(tempfile.mkdtemp(prefix="hybridrec-launch-")) if config.run_dir is None
        else Path(config.run_dir)
    )
    spec = FineTuneSpec(
        generator=generator_ref, fine_tuner=fine_tuner_ref, catalog=catalog, window=window,
        out_dir=Path(out_dir).resolve(),
        previous_adapter=None if previous_adapter is None else Path(previous_adapter).resolve(),
        backend=config.backend,
    )
    spec_path = write_spec(run_dir, spec, transitions, evidence_fn)
    plan = plan_launch(config, spec_path)
    result = _run_plan(plan, run_dir, timeout=config.timeout_s)
    if generator is not None:
        generator.load_adapter(result.adapter_path)
    if temporary:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def _run_plan(plan: LaunchPlan, run_dir: Path, *, timeout: float | None) -> FineTuneResult:
    log_path = run_dir / LOG_FILE
    (run_dir / RESULT_FILE).unlink(missing_ok=True)
    with open(log_path, "wb") as log:
        try:
            done = subprocess.run(
                plan.argv, env={**os.environ, **plan.env}, stdout=log, stderr=subprocess.STDOUT,
                timeout=timeout, check=False,
            )
        except subprocess.TimeoutExpired:
            raise HybridrecError(
                f"distributed fine-tune ({plan.engine}, {plan.world_size} processes) did not "
                f"finish within {timeout} s; log: {log_path}"
            ) from None
    result_path = run_dir / RESULT_FILE
    if not result_path.is_file():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise HybridrecError(
            f"distributed fine-tune ({plan.engine}, {plan.world_size} processes) failed with exit "
            f"code {done.returncode}; command: {plan.command_line()}\nlog {log_path} ends with:\n{tail}"
        )
    if done.returncode != 0:
        # Rank 0 publishes the result only after every rank passed the final barrier, so the job
        # finished; what failed is the process group's teardown (gloo can abort a rank whose peer
        # closed its sockets first).
        logger.warning("distributed fine-tune (%s, %d processes) finished, then exited with code %d "
                    "while tearing down its process group; log: %s", plan.engine,
                    plan.world_size, done.returncode, log_path)
    return FineTuneResult.model_validate_json(result_path.read_text())


def _build_generator(ref: PluginRef, catalog: ClusterCatalog) -> Generator:
    return build("generator", ref, catalog, source="distributed fine-tune")


def _build_fine_tuner(ref: PluginRef) -> FineTuner:
    return build("fine_tuner", ref, source="distributed fine-tune")


# ---------------------------------------------------------------------------------------------
# Worker entry point: python -m hybridrec.distributed SPEC
# ---------------------------------------------------------------------------------------------


def worker_main(argv: Sequence[str] | None = None) -> int:
    """Run the fine-tune described by the spec file ``argv[0]`` as one rank of the job."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m hybridrec.distributed SPEC.json", file=sys.stderr)
        return 2
    spec_path = Path(args[0])
    spec = FineTuneSpec.model_validate_json(spec_path.read_text())
    run_dir = spec_path.parent
    ctx = current()
    group = _init_process_group(ctx, os.environ.get("HYBRIDREC_DISTRIBUTED_BACKEND", spec.backend))
    try:
        transitions = load_transitions(_verified(run_dir, spec, TRANSITIONS_FILE))
        evidence_fn: EvidenceFn | None = None
        if spec.has_evidence_fn:
            evidence_fn = PrecomputedEvidence.load(_verified(run_dir, spec, EVIDENCE_FILE))
        generator = _build_generator(spec.generator, spec.catalog)
        tuner = _build_fine_tuner(spec.fine_tuner)
        started = time.perf_counter()
        result = tuner.fine_tune(
            generator, transitions, spec.window, spec.out_dir,
            previous_adapter=spec.previous_adapter, evidence_fn=evidence_fn,
        )
        if ctx.is_main:
            result = result.model_copy(update={
                "manifest": {**result.manifest, "world_size": ctx.world_size},
                "seconds": max(result.seconds, time.perf_counter() - started),
            })
            (run_dir / f".{RESULT_FILE}.tmp").write_text(result.model_dump_json(indent=2))
        ctx.barrier()
        # Published once every rank has finished (the barrier): a result file proves the whole
        # job did, so a rank that dies in the teardown below cannot fail a finished fine-tune.
        if ctx.is_main:
            os.replace(run_dir / f".{RESULT_FILE}.tmp", run_dir / RESULT_FILE)
    finally:
        if group:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


def _init_process_group(ctx: DistributedContext, backend: str) -> bool:
    """Join the launcher's process group (when world_size > 1) and pin this rank's GPU."""
    if not ctx.distributed:
        return False
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(ctx.local_rank)
    chosen = ("nccl" if cuda else "gloo") if backend == "auto" else backend
    dist.init_process_group(backend=chosen)
    return True


if __name__ == "__main__":
    sys.exit(worker_main())


__all__ = [
    "EVIDENCE_FILE",
    "LOG_FILE",
    "RESULT_FILE",
    "SPEC_FILE",
    "TRANSITIONS_FILE",
    "DistributedContext",
    "FineTuneSpec",
    "LaunchPlan",
    "PrecomputedEvidence",
    "current",
    "fine_tune",
    "load_transitions",
    "plan_launch",
    "precompute_evidence",
    "save_transitions",
    "supports_distributed",
    "visible_gpus",
    "worker_main",
    "write_spec",
]
