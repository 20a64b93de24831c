"""The ``synthetic`` dataset: seeded interactions from a known, drifting world."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field

from hybridrec.data.synthetic import SyntheticConfig, generate_interactions
from hybridrec.interfaces import Dataset
from hybridrec.types import InteractionData


class SyntheticDatasetOptions(SyntheticConfig):
    """The generator's :class:`~hybridrec.data.synthetic.SyntheticConfig` plus the log size."""

    n_interactions: int = Field(default=200_000, ge=3)
    items_per_cluster: int = Field(default=20, ge=1)


class SyntheticDataset(Dataset):
    """Users walking through drifting successor distributions; clusters are ``c0000``... so
    ``clustering="categories"`` recovers the generator's cluster ids. Never quarantines."""

    name: ClassVar[str] = "synthetic"
    Options: ClassVar[type[BaseModel]] = SyntheticDatasetOptions

    def load(self, *, quarantine: Path | None = None, progress: bool = False) -> InteractionData:
        o: SyntheticDatasetOptions = self.options
        config = SyntheticConfig(**o.model_dump(exclude={"n_interactions", "items_per_cluster"}))
        generated = generate_interactions(
            o.n_interactions, config, items_per_cluster=o.items_per_cluster
        )
        if quarantine is not None:
            from hybridrec.data.io import write_quarantine

            write_quarantine([], quarantine)
        return generated.as_interaction_data()
