"""The bodies of the two actions that build an artifact, once for both drivers.

A fine-tune and a knowledge refresh do the same work in a workspace (``hybridrec update``, the
artifact written into a staging folder and promoted by :func:`~hybridrec.engine.actions.execute`)
and in a backtest (the artifact written into the study's work folder and shared by the arms that
ask for it): each driver says only where the artifact goes. A fine-tune goes through
:func:`hybridrec.distributed.fine_tune` in both, so a study's ``[distributed]`` engine would run
the same launcher a workspace runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from hybridrec import distributed
from hybridrec.config import DistributedConfig, PluginRef
from hybridrec.interfaces import (
    EvidenceFn,
    FineTuner,
    FineTuneResult,
    Generator,
    KnowledgeSnapshot,
    KnowledgeStore,
)
from hybridrec.types import ClusterCatalog, TimeWindow, TransitionSet


@dataclass(frozen=True)
class Trainer:
    """What a fine-tune runs with: the generator and fine-tuner (used in this process), their
    references and the catalog (what a launched process rebuilds them from) and the engine."""

    generator: Generator
    fine_tuner: FineTuner
    generator_ref: PluginRef
    fine_tuner_ref: PluginRef
    catalog: ClusterCatalog
    engine: DistributedConfig = field(default_factory=DistributedConfig)

    def with_fine_tuner(self, ref: PluginRef, fine_tuner: FineTuner) -> Trainer:
        """The same, with another fine-tuner (the first fine-tune's options, say)."""
        return replace(self, fine_tuner_ref=ref, fine_tuner=fine_tuner)


def fine_tune(trainer: Trainer, transitions: TransitionSet, window: TimeWindow, out_dir: Path, *,
              previous_adapter: Path | None = None, evidence_fn: EvidenceFn | None = None,
              progress: bool = False) -> tuple[FineTuneResult, float]:
    """Train an adapter on ``window`` of ``transitions`` into ``out_dir`` (warm-started from
    ``previous_adapter`` when given; training prompts' evidence from ``evidence_fn`` when given,
    else the fine-tuner's own). Returns the result and the seconds it took. The generator is
    left with the new adapter active (the :class:`~hybridrec.interfaces.FineTuner` contract)."""
    started = time.perf_counter()
    result = distributed.fine_tune(
        trainer.engine, generator_ref=trainer.generator_ref, fine_tuner_ref=trainer.fine_tuner_ref,
        catalog=trainer.catalog, transitions=transitions, window=window, out_dir=out_dir,
        previous_adapter=previous_adapter, evidence_fn=evidence_fn, generator=trainer.generator,
        fine_tuner=trainer.fine_tuner, progress=progress,
    )
    return result, time.perf_counter() - started


def refresh(store: KnowledgeStore, transitions: TransitionSet, window: TimeWindow,
            out_dir: Path) -> tuple[KnowledgeSnapshot, float]:
    """Build the knowledge snapshot of ``window`` of ``transitions`` into ``out_dir``. Returns
    it opened and the seconds it took."""
    started = time.perf_counter()
    snapshot = store.build(transitions, window, out_dir)
    return snapshot, time.perf_counter() - started


__all__ = ["Trainer", "fine_tune", "refresh"]
