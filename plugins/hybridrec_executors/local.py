"""The in-process table executor."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from hybridrec.generation import TableJob, batches
from hybridrec.interfaces import Generator, TableExecutor, snapshot_evidence
from hybridrec.types import Rankings


class LocalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int | None = Field(default=None, ge=1, description="Overrides the job's batch size.")


class LocalExecutor(TableExecutor):
    """Ranks the job's contexts batch by batch in this process; holds one batch of outputs."""

    name: ClassVar[str] = "local"
    Options: ClassVar[type[BaseModel]] = LocalOptions

    def run(
        self,
        job: TableJob,
        sink: Callable[[Rankings], None],
        *,
        generator: Generator | None = None,
        progress: bool = False,
    ) -> int:
        gen = generator if generator is not None else job.build_generator()
        snapshot = job.open_snapshot()
        size = self.options.batch_size or job.batch_size
        n = int(job.contexts.shape[0])
        written = 0
        with tqdm(total=n, desc="table", unit="ctx", disable=not progress, leave=False) as bar:
            for part in batches(n, size):
                ctx = job.contexts[part]
                evidence = (snapshot_evidence(snapshot, ctx, store=job.store_name)
                            if snapshot is not None else None)
                rankings = gen.rank(ctx, evidence, job.k)
                sink(rankings)
                written += len(rankings)
                bar.update(len(rankings))
        return written
