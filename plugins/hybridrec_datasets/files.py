"""The generic ``file`` dataset (alias ``csv``, ``parquet``): bring your own interaction log."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hybridrec.data.io import (
    MAX_TIMESTAMP,
    FileFormat,
    InteractionColumns,
    ItemColumns,
    TimestampUnit,
    ValidationOptions,
    load_interaction_files,
)
from hybridrec.interfaces import Dataset
from hybridrec.types import InteractionData


class FileDatasetOptions(BaseModel):
    """Where the two files are and how to read them.

    ``interactions``: one row per engagement (user, item, timestamp, optional rating);
    ``items``: one row per item (id, optional title, optional categories separated by
    ``category_separator``). Column names are mapped with ``columns`` / ``item_columns``.
    """

    model_config = ConfigDict(extra="forbid")

    interactions: Path
    items: Path
    name: str = Field(default="file", min_length=1)
    format: FileFormat = "auto"
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    quote_char: str | None = Field(default='"', min_length=1, max_length=1)
    columns: InteractionColumns = Field(default_factory=InteractionColumns)
    item_columns: ItemColumns = Field(default_factory=ItemColumns)
    category_separator: str = Field(default="|", min_length=1)
    timestamp_unit: TimestampUnit = Field(
        default="auto",
        description="How timestamps are written: 'auto' reads each value for itself (date "
        "types as such, numbers as Unix seconds -- milliseconds when most of the column is -- "
        "other text as ISO-8601); 's', 'ms' and 'iso' accept that form only.",
    )
    encoding: str = Field(
        default="utf-8",
        description="Text encoding of CSV/TSV files (for example 'latin-1'); a line that does "
        "not decode is quarantined.",
    )
    min_timestamp: int = 0
    max_timestamp: int = MAX_TIMESTAMP
    min_rating: float | None = None
    max_rating: float | None = None
    quarantine: Path | None = Field(
        default=None, description="Also write rejected rows here as JSON lines."
    )


    @model_validator(mode="after")
    def _quarantine_is_not_an_input(self) -> FileDatasetOptions:
        if self.quarantine is not None:
            target = Path(self.quarantine).resolve()
            for name in ("interactions", "items"):
                if target == Path(getattr(self, name)).resolve():
                    raise ValueError(f"quarantine must not be the {name} file ({self.quarantine}): "
                                     "writing rejected rows there would overwrite the input")
        return self

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r} (for example 'utf-8', 'latin-1')") from None
        return value


class FileDataset(Dataset):
    """Any interaction log plus item metadata, from CSV, TSV or Parquet (see the options)."""

    name: ClassVar[str] = "file"
    Options: ClassVar[type[BaseModel]] = FileDatasetOptions

    def load(self, *, quarantine: Path | None = None, progress: bool = False) -> InteractionData:
        o: FileDatasetOptions = self.options
        return load_interaction_files(
            name=o.name,
            interactions=o.interactions,
            items=o.items,
            columns=o.columns,
            item_columns=o.item_columns,
            fmt=o.format,
            delimiter=o.delimiter,
            quote_char=o.quote_char,
            category_separator=o.category_separator,
            timestamp_unit=o.timestamp_unit,
            validation=ValidationOptions(
                min_timestamp=o.min_timestamp,
                max_timestamp=o.max_timestamp,
                min_rating=o.min_rating,
                max_rating=o.max_rating,
            ),
            quarantine=quarantine if quarantine is not None else o.quarantine,
            encoding=o.encoding,
        )
