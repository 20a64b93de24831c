"""``lora`` trains any generator that offers the TrainableGenerator capability, not only ``hf``:
a generator class unrelated to HFGenerator that implements the protocol (here by delegating to
one) is fine-tuned, and its new adapter is served."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from generator_support import tiny, tuner, window_of
from hybridrec_hf import HFGenerator

from hybridrec.capabilities import PromptEncoder, TrainableGenerator
from hybridrec.interfaces import Generator
from hybridrec.types import ClusterCatalog, EvidenceBatch, Rankings, TransitionSet


class ThirdPartyGenerator(Generator):
    """Not an HFGenerator: wraps one and offers its capabilities by delegation."""

    name: ClassVar[str] = "third-party"

    def __init__(self, options: Any, catalog: ClusterCatalog) -> None:
        super().__init__(options, catalog)
        self.inner = tiny(catalog)

    def __getattr__(self, name: str) -> Any:  # everything the capability protocols ask for
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def rank(self, contexts: np.ndarray, evidence: EvidenceBatch | None = None, k: int = 5, *,
             progress: bool = False, as_of: np.ndarray | None = None, model: Any | None = None) -> Rankings:
        return self.inner.rank(contexts, evidence, k, progress=progress, as_of=as_of, model=model)

    def generate(self, contexts: np.ndarray, evidence: EvidenceBatch | None = None, *,
                 progress: bool = False, as_of: np.ndarray | None = None, model: Any | None = None) -> list[str]:
        return self.inner.generate(contexts, evidence, progress=progress, as_of=as_of, model=model)

    def load_adapter(self, path: Path | None) -> None:
        self.inner.load_adapter(path)

    @property
    def adapter(self) -> str | None:
        return self.inner.adapter

    def num_parameters(self) -> int:
        return self.inner.num_parameters()


def test_lora_fine_tunes_a_generator_that_is_not_hf(catalog: ClusterCatalog, planted: TransitionSet, tmp_path: Path) -> None:
    gen = ThirdPartyGenerator(None, catalog)
    assert not isinstance(gen, HFGenerator)
    assert isinstance(gen, TrainableGenerator) and isinstance(gen, PromptEncoder)
    result = tuner(rag_fraction=0.0, max_steps=3).fine_tune(gen, planted, window_of(planted), tmp_path / "a")
    assert gen.adapter == str(tmp_path / "a")
    assert {"exact_match_rate", "recall"} <= set(result.metrics)
    ranked = gen.rank(planted.contexts()[:8], None, 3)
    ranked.validate()
