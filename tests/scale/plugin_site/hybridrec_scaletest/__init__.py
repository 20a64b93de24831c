"""Test-only hybridrec plugin for tests/scale, visible to Ray workers through ``PYTHONPATH``.

It is a real entry-point plugin (see the ``.dist-info`` folder beside it), so worker processes
find it the way they find an installed third-party plugin; a plugin registered in the test
process only would not exist in the workers.

* ``crash-once`` (generator) wraps another generator and kills its own process (``os._exit``) on
  its ``after_calls``-th ``rank`` call, once per marker file: the fault the Ray executor must
  survive.
* ``ddp-probe`` (fine-tuner, ``supports_distributed``) fits ``y = w·x`` to ``x = c3`` of its
  shard of the window with one DDP gradient step, and records the gradient, the rows it saw and
  the world size: a data-parallel run must give the single-process gradient.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hybridrec import hookimpl
from hybridrec.config import PluginRef
from hybridrec.distributed import current
from hybridrec.interfaces import EvidenceFn, FineTuner, FineTuneResult, Generator
from hybridrec.plugins import build
from hybridrec.types import (
    ClusterCatalog,
    EvidenceBatch,
    Rankings,
    TimeWindow,
    TransitionSet,
    Workload,
)


class CrashOnceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inner: dict[str, Any] = Field(description="PluginRef of the wrapped generator.")
    marker: str = Field(description="File created by the crashing process; its presence disarms.")
    after_calls: int = Field(default=2, ge=1)


class CrashOnceGenerator(Generator):
    """Delegates to ``inner``; the first process to reach ``after_calls`` rank calls dies."""

    name: ClassVar[str] = "crash-once"
    Options: ClassVar[type[BaseModel]] = CrashOnceOptions

    def __init__(self, options: BaseModel | None, catalog: ClusterCatalog) -> None:
        super().__init__(options, catalog)
        self.inner: Generator = build("generator", PluginRef.model_validate(self.options.inner), catalog)
        self.calls = 0

    def rank(
        self,
        contexts: np.ndarray,
        evidence: EvidenceBatch | None = None,
        k: int = 5,
        *,
        progress: bool = False,
    ) -> Rankings:
        self.calls += 1
        if self.calls == self.options.after_calls:
            try:
                fd = os.open(self.options.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os._exit(17)
        return self.inner.rank(contexts, evidence, k)

    def generate(
        self, contexts: np.ndarray, evidence: EvidenceBatch | None = None, *, progress: bool = False
    ) -> list[str]:
        return self.inner.generate(contexts, evidence)

    def load_adapter(self, path: Path | None) -> None:
        self.inner.load_adapter(path)

    @property
    def adapter(self) -> str | None:
        return self.inner.adapter

    def num_parameters(self) -> int:
        return self.inner.num_parameters()


class DdpProbeFineTuner(FineTuner):
    """One data-parallel gradient step; rank 0 writes ``probe.json`` into ``out_dir``."""

    name: ClassVar[str] = "ddp-probe"
    supports_distributed: ClassVar[bool] = True

    def fine_tune(
        self,
        generator: Generator,
        transitions: TransitionSet,
        window: TimeWindow,
        out_dir: Path,
        *,
        previous_adapter: Path | None = None,
        evidence_fn: EvidenceFn | None = None,
        progress: bool = False,
    ) -> FineTuneResult:
        import torch

        ctx = current()
        rows = transitions.window(window)
        mine = torch.as_tensor(rows.c3[ctx.shard(len(rows))], dtype=torch.float64)[:, None]
        layer = torch.nn.Linear(1, 1, bias=False).double()
        torch.nn.init.zeros_(layer.weight)
        model = ctx.wrap_model(layer)
        ((model(mine) - mine) ** 2).mean().backward()  # DDP averages this over ranks
        seen = ctx.all_reduce_sum(torch.tensor([float(len(mine))], dtype=torch.float64))
        metrics = {
            "exact_match_rate": 1.0, "recall": 1.0,
            "grad": float(layer.weight.grad.item()), "rows_seen": float(seen.item()),
            "world_size": float(ctx.world_size),
        }
        if ctx.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "probe.json").write_text(json.dumps(metrics))
        ctx.barrier()
        return FineTuneResult(adapter_path=out_dir, manifest={"probe": True}, metrics=metrics,
                              train_tokens=len(rows), seconds=0.0)

    def workload(self, n_transitions: int, generator: Generator) -> Workload:
        return Workload(train_tokens=n_transitions)


@hookimpl
def register_generators(register: Any) -> None:
    register(CrashOnceGenerator)


@hookimpl
def register_fine_tuners(register: Any) -> None:
    register(DdpProbeFineTuner)
