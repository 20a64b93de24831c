"""Reading and validating interaction logs and item metadata (CSV, TSV or Parquet).

:func:`load_interaction_files` is the engine behind the dataset plugins. Its contract:

* **Structural problems raise** :class:`~hybridrec.errors.DataError` naming what is missing: a
  missing file, an empty file (no header, or a header and no rows), a required column that the
  file does not have (the message lists the columns it does have).
* **Row problems never raise and never vanish.** A row with the wrong number of fields, a missing
  user/item/timestamp (or rating, when a rating column is mapped), a non-numeric or out-of-range
  timestamp or rating, an item absent from the item file, or an item-file row without an id or
  with a repeated id becomes one :class:`~hybridrec.types.QuarantineRecord` (file, row, field,
  reason, raw value), reported for the first failing field of the row in column order. The
  records are returned in :attr:`InteractionData.quarantine`, counted in its ``metadata``, and
  written as JSON lines to ``quarantine`` if given. Every other row is kept.
* ``row`` is the line number for CSV/TSV files (the header is line 1, blank lines count), and
  the 1-based row index for Parquet files.
* **Codes are canonical.** User and item codes are positions in the *sorted* identifiers
  (``user_ids``/``item_ids``), so they do not depend on row order; item codes index the item
  table (every item of the item file, interacted with or not).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from pydantic import BaseModel, ConfigDict, Field

from hybridrec.errors import DataError
from hybridrec.types import InteractionData, InteractionTable, ItemTable, QuarantineRecord

__all__ = [
    "MAX_TIMESTAMP",
    "FileFormat",
    "InteractionColumns",
    "ItemColumns",
    "RawTable",
    "TimestampUnit",
    "detect_format",
    "load_interaction_files",
    "read_table",
    "write_quarantine",
]

FileFormat = Literal["auto", "csv", "tsv", "parquet"]
TimestampUnit = Literal["s", "ms", "iso"]
MAX_TIMESTAMP = 4_102_444_800  # 2100-01-01T00:00:00Z: later timestamps are taken as corrupt.
_VALUE_CHARS = 200


class InteractionColumns(BaseModel):
    """Which column of the interaction file holds each field (``rating=None``: no ratings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str = "user"
    item: str = "item"
    timestamp: str = "timestamp"
    rating: str | None = "rating"


class ItemColumns(BaseModel):
    """Which column of the item file holds each field (``None``: the file has no such column)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item: str = "item"
    title: str | None = "title"
    categories: str | None = "categories"


class ValidationOptions(BaseModel):
    """Ranges outside which a value is quarantined (timestamps in Unix seconds, inclusive low,
    exclusive high; ratings inclusive)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_timestamp: int = 0
    max_timestamp: int = Field(default=MAX_TIMESTAMP, gt=0)
    min_rating: float | None = None
    max_rating: float | None = None


@dataclass
class RawTable:
    """A file read as Arrow columns plus the rows the parser could not split."""

    path: Path
    table: pa.Table
    row_numbers: np.ndarray
    quarantine: list[QuarantineRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.table.num_rows)


def detect_format(path: Path, fmt: FileFormat = "auto") -> Literal["csv", "tsv", "parquet"]:
    """The file format: ``fmt`` unless ``auto``, else from the suffix (``.tsv``/``.inter``/
    ``.item`` are tab-separated, ``.parquet``/``.pq`` Parquet, anything else CSV)."""
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        return "parquet"
    if suffix in {".tsv", ".tab", ".inter", ".item", ".user"}:
        return "tsv"
    return "csv"


def _truncate(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."


def _read_header(path: Path, delimiter: str, quote_char: str | None) -> list[str]:
    with open(path, encoding="utf-8", newline="", errors="replace") as fh:
        first = fh.readline()
    if not first.strip():
        raise DataError(f"{path}: the file is empty (no header line); expected a header row")
    if quote_char is None:
        return [c.strip() for c in first.rstrip("\r\n").split(delimiter)]
    row = next(csv.reader([first], delimiter=delimiter, quotechar=quote_char))
    return [c.strip() for c in row]


def _missing_columns_error(path: Path, missing: list[str], present: list[str], what: str) -> DataError:
    return DataError(
        f"{path}: missing required {what} column(s) {', '.join(repr(m) for m in missing)}; "
        f"the file has {', '.join(repr(p) for p in present)}. Map your column names with the "
        "dataset's column options (for example columns.user=\"user_id\")."
    )


def read_table(
    path: Path,
    required: Sequence[str],
    optional: Sequence[str] = (),
    *,
    fmt: FileFormat = "auto",
    delimiter: str | None = None,
    quote_char: str | None = '"',
    types: dict[str, pa.DataType] | None = None,
    what: str = "",
) -> RawTable:
    """Read the ``required`` and present ``optional`` columns of ``path``.

    ``types`` requests Arrow types per column; if a value does not convert, the file is read again
    with every column as a string (callers then validate value by value). Rows with the wrong
    number of fields are quarantined (field ``"*"``).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what + ' ' if what else ''}file {path} does not exist")
    if path.is_dir():
        raise DataError(f"{path} is a directory; expected a {what or 'data'} file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; expected a header row and data rows")
    kind = detect_format(path, fmt)
    if kind == "parquet":
        return _read_parquet(path, list(required), list(optional), what)

    sep = delimiter if delimiter is not None else ("\t" if kind == "tsv" else ",")
    header = _read_header(path, sep, quote_char)
    missing = [c for c in required if c not in header]
    if missing:
        raise _missing_columns_error(path, missing, header, what or "data")
    columns = [*required, *(c for c in optional if c in header and c not in required)]
    bad_rows: list[tuple[int, str, int, int]] = []

    def on_invalid(row: Any) -> str:
        bad_rows.append((int(row.number or 0), str(row.text), int(row.actual_columns), int(row.expected_columns)))
        return "skip"

    def read(column_types: dict[str, pa.DataType]) -> pa.Table:
        bad_rows.clear()
        return pacsv.read_csv(
            path,
            # Single-threaded parsing reports the line number of unsplittable rows.
            read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(
                delimiter=sep,
                quote_char=quote_char if quote_char is not None else False,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=columns,
                column_types=column_types,
                # Only an empty field is missing: "NA" or "null" may be a real user or item id.
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )

    strings = dict.fromkeys(columns, pa.string())
    wanted = {**strings, **{k: v for k, v in (types or {}).items() if k in columns}}
    try:
        table = read(wanted)
    except pa.ArrowInvalid as exc:
        if "conversion error" not in str(exc).lower():
            raise DataError(f"{path}: cannot parse the file: {exc}") from None
        table = read(strings)
    if table.num_rows == 0 and not bad_rows:
        raise DataError(f"{path}: the file has a header but no data rows")

    skipped = np.array(sorted(r[0] for r in bad_rows), dtype=np.int64)
    # Line of the k-th parsed record: k + 2 (header, 1-based) + skipped lines before it.
    good_before = skipped - 2 - np.arange(skipped.shape[0])
    k = np.arange(table.num_rows, dtype=np.int64)
    row_numbers = k + 2 + np.searchsorted(good_before, k, side="right")
    quarantine = [
        QuarantineRecord(
            file=str(path),
            row=number,
            field="*",
            reason=f"expected {expected} fields, found {actual}",
            value=_truncate(text),
        )
        for number, text, actual, expected in sorted(bad_rows)
    ]
    return RawTable(path=path, table=table, row_numbers=row_numbers, quarantine=quarantine)


def _read_parquet(path: Path, required: list[str], optional: list[str], what: str) -> RawTable:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    present = list(schema.names)
    missing = [c for c in required if c not in present]
    if missing:
        raise _missing_columns_error(path, missing, present, what or "data")
    columns = [*required, *(c for c in optional if c in present and c not in required)]
    table = pq.read_table(path, columns=columns)
    if table.num_rows == 0:
        raise DataError(f"{path}: the file has no rows")
    return RawTable(
        path=path, table=table, row_numbers=np.arange(1, table.num_rows + 1, dtype=np.int64)
    )


# ---------------------------------------------------------------------------------------------
# Column coercion
# ---------------------------------------------------------------------------------------------


@dataclass
class _Parsed:
    """A column turned into numbers: ``values`` plus per-row problems (``problem`` holds reason
    indices into ``reasons``; ``-1`` means fine)."""

    values: np.ndarray
    problem: np.ndarray
    reasons: list[str]


def _text_missing(column: pa.ChunkedArray) -> np.ndarray:
    text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
    blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0)
    return np.asarray(pc.fill_null(pc.or_kleene(pc.is_null(text), blank), True), dtype=bool)


def _strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def _parse_number(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values, missing, non_numeric)`` for a numeric or text column."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        missing = np.asarray(pc.is_null(column), dtype=bool)
        values = np.asarray(pc.fill_null(pc.cast(column, pa.float64()), np.nan), dtype=np.float64)
        return values, missing, ~missing & ~np.isfinite(values)
    missing = _text_missing(column)
    text = _strings(column).to_pandas()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values, missing, ~missing & ~np.isfinite(values)


def _parse_timestamp(column: pa.ChunkedArray, unit: TimestampUnit, bounds: ValidationOptions) -> _Parsed:
    reasons = ["missing value", "", f"outside [{bounds.min_timestamp}, {bounds.max_timestamp}) Unix seconds"]
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        missing = np.asarray(pc.is_null(column), dtype=bool)
        cast = pc.cast(pc.cast(column, pa.timestamp("s", tz="UTC")), pa.int64())
        seconds = np.asarray(pc.fill_null(cast, 0), dtype=np.int64)
        bad = np.zeros_like(missing)
    elif unit == "iso":
        missing = _text_missing(column)
        parsed = pd.to_datetime(
            _strings(column).to_pandas(), utc=True, errors="coerce", format="ISO8601"
        )
        bad = ~missing & parsed.isna().to_numpy()
        nanos = parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        seconds = np.where(missing | bad, 0, np.floor_divide(nanos, 1_000_000_000))
        reasons[1] = "not an ISO-8601 date-time"
    else:
        values, missing, bad = _parse_number(column)
        scale = 1000.0 if unit == "ms" else 1.0
        ok = ~missing & ~bad
        seconds = np.zeros(values.shape[0], dtype=np.int64)
        scaled = np.floor(values[ok] / scale)
        # Values far outside int64 would wrap; clip before casting so the range check sees them.
        seconds[ok] = np.clip(scaled, -(2.0**62), 2.0**62).astype(np.int64)
        reasons[1] = f"not a number (expected Unix {'milliseconds' if unit == 'ms' else 'seconds'})"
    problem = np.full(seconds.shape[0], -1, dtype=np.int8)
    out = (seconds < bounds.min_timestamp) | (seconds >= bounds.max_timestamp)
    problem[out & ~missing & ~bad] = 2
    problem[bad] = 1
    problem[missing] = 0
    return _Parsed(values=seconds, problem=problem, reasons=reasons)


def _parse_rating(column: pa.ChunkedArray, bounds: ValidationOptions) -> _Parsed:
    values, missing, bad = _parse_number(column)
    low = -np.inf if bounds.min_rating is None else bounds.min_rating
    high = np.inf if bounds.max_rating is None else bounds.max_rating
    problem = np.full(values.shape[0], -1, dtype=np.int8)
    with np.errstate(invalid="ignore"):
        out = ~missing & ~bad & ((values < low) | (values > high))
    problem[out] = 2
    problem[bad] = 1
    problem[missing] = 0
    reasons = ["missing value", "not a finite number", f"outside [{low}, {high}]"]
    return _Parsed(values=values, problem=problem, reasons=reasons)


def _sorted_codes(values: pa.ChunkedArray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes in sorted order of the distinct values of ``values[keep]``; ``-1`` elsewhere."""
    encoded = pc.dictionary_encode(_strings(values)).combine_chunks()
    dictionary = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    indices = np.asarray(pc.fill_null(encoded.indices, -1), dtype=np.int64)
    used = np.zeros(dictionary.shape[0], dtype=bool)
    used[indices[keep & (indices >= 0)]] = True
    order = np.argsort(dictionary[used].astype(str), kind="stable")
    rank = np.full(dictionary.shape[0], -1, dtype=np.int64)
    rank[np.flatnonzero(used)[order]] = np.arange(order.shape[0])
    codes = np.where(indices >= 0, rank[np.maximum(indices, 0)], -1)
    return codes, dictionary[used][order]


def _records(
    raw: RawTable, rows: np.ndarray, field_name: str, reason: str, column: pa.ChunkedArray | None
) -> list[QuarantineRecord]:
    values = column.take(pa.array(rows)).to_pylist() if column is not None and rows.size else []
    return [
        QuarantineRecord(
            file=str(raw.path),
            row=int(raw.row_numbers[r]),
            field=field_name,
            reason=reason,
            value=_truncate(values[i]) if values else None,
        )
        for i, r in enumerate(rows.tolist())
    ]


# ---------------------------------------------------------------------------------------------
# Items and interactions
# ---------------------------------------------------------------------------------------------


def _load_items(
    path: Path,
    columns: ItemColumns,
    *,
    fmt: FileFormat,
    delimiter: str | None,
    quote_char: str | None,
    category_separator: str,
) -> tuple[ItemTable, list[QuarantineRecord]]:
    optional = [c for c in (columns.title, columns.categories) if c is not None]
    raw = read_table(
        path, [columns.item], optional, fmt=fmt, delimiter=delimiter, quote_char=quote_char,
        what="item metadata",
    )
    quarantine = list(raw.quarantine)
    ids_col = raw.table.column(columns.item)
    missing = _text_missing(ids_col)
    quarantine += _records(raw, np.flatnonzero(missing), columns.item, "missing item id", ids_col)
    ids = np.asarray(_strings(ids_col).to_pylist(), dtype=object)
    ids = np.array([s.strip() if isinstance(s, str) else s for s in ids], dtype=object)
    present = np.flatnonzero(~missing)
    _, first = np.unique(ids[present].astype(str), return_index=True)
    first_rows = np.sort(present[first])
    duplicate = np.setdiff1d(present, first_rows)
    if duplicate.size:
        first_of = {ids[r]: int(raw.row_numbers[r]) for r in first_rows.tolist()}
        for r in duplicate.tolist():
            quarantine.append(
                QuarantineRecord(
                    file=str(path), row=int(raw.row_numbers[r]), field=columns.item,
                    reason=f"duplicate item id (first defined on row {first_of[ids[r]]}); "
                    "this row is ignored",
                    value=_truncate(ids[r]),
                )
            )
    keep = first_rows[np.argsort(ids[first_rows].astype(str), kind="stable")]

    def text_column(name: str | None) -> list[str | None]:
        if name is None or name not in raw.table.column_names:
            return [None] * keep.shape[0]
        values = _strings(raw.table.column(name)).take(pa.array(keep)).to_pylist()
        return [v.strip() if isinstance(v, str) else None for v in values]

    titles = [t or str(i) for t, i in zip(text_column(columns.title), ids[keep], strict=True)]
    categories = tuple(
        tuple(dict.fromkeys(p.strip() for p in (c or "").split(category_separator) if p.strip()))
        for c in text_column(columns.categories)
    )
    items = ItemTable(
        item_ids=ids[keep].astype(str).astype(object), titles=tuple(titles), categories=categories
    )
    return items, quarantine


def load_interaction_files(
    *,
    name: str,
    interactions: Path,
    items: Path,
    columns: InteractionColumns | None = None,
    item_columns: ItemColumns | None = None,
    fmt: FileFormat = "auto",
    delimiter: str | None = None,
    quote_char: str | None = '"',
    category_separator: str = "|",
    timestamp_unit: TimestampUnit = "s",
    validation: ValidationOptions | None = None,
    quarantine: Path | None = None,
    metadata: dict[str, Any] | None = None,
) -> InteractionData:
    """Load and validate an interaction log and its item file (see the module docstring)."""
    columns = columns or InteractionColumns()
    item_columns = item_columns or ItemColumns()
    bounds = validation or ValidationOptions()
    item_table, records = _load_items(
        Path(items), item_columns, fmt=fmt, delimiter=delimiter, quote_char=quote_char,
        category_separator=category_separator,
    )
    if len(item_table) == 0:
        raise DataError(f"{items}: no valid item rows (see the quarantine records)")

    required = [columns.user, columns.item, columns.timestamp]
    if columns.rating is not None:
        required.append(columns.rating)
    types: dict[str, pa.DataType] = {}
    if timestamp_unit != "iso":
        types[columns.timestamp] = pa.float64()
    if columns.rating is not None:
        types[columns.rating] = pa.float64()
    raw = read_table(
        Path(interactions), required, fmt=fmt, delimiter=delimiter, quote_char=quote_char,
        types=types, what="interaction",
    )
    records += raw.quarantine
    table = raw.table
    n = table.num_rows

    # First failing field wins: user, item, timestamp, rating.
    field_of = np.full(n, -1, dtype=np.int8)
    checks: list[tuple[str, np.ndarray, list[str]]] = []

    user_missing = _text_missing(table.column(columns.user))
    checks.append((columns.user, np.where(user_missing, 0, -1).astype(np.int8), ["missing value"]))
    item_col = table.column(columns.item)
    item_missing = _text_missing(item_col)
    lookup = {str(v): i for i, v in enumerate(item_table.item_ids.tolist())}
    encoded = pc.dictionary_encode(pc.utf8_trim_whitespace(_strings(item_col))).combine_chunks()
    dictionary_codes = np.array(
        [lookup.get(str(v), -1) for v in encoded.dictionary.to_pylist()], dtype=np.int64
    )
    item_indices = np.asarray(pc.fill_null(encoded.indices, 0), dtype=np.int64)
    item_code = (
        dictionary_codes[item_indices] if dictionary_codes.size else np.full(n, -1, dtype=np.int64)
    )
    item_problem = np.where(item_missing, 0, np.where(item_code < 0, 1, -1)).astype(np.int8)
    checks.append(
        (columns.item, item_problem, ["missing value", f"unknown item (not in {items})"])
    )
    ts = _parse_timestamp(table.column(columns.timestamp), timestamp_unit, bounds)
    checks.append((columns.timestamp, ts.problem, ts.reasons))
    rating_values = np.full(n, np.nan, dtype=np.float64)
    if columns.rating is not None:
        rating = _parse_rating(table.column(columns.rating), bounds)
        checks.append((columns.rating, rating.problem, rating.reasons))
        rating_values = rating.values

    reason_index = np.full(n, -1, dtype=np.int8)
    for position in range(len(checks) - 1, -1, -1):
        problem = checks[position][1]
        bad = problem >= 0
        field_of[bad] = position
        reason_index[bad] = problem[bad]
    for position, (field_name, _, reasons) in enumerate(checks):
        for r, reason in enumerate(reasons):
            rows = np.flatnonzero((field_of == position) & (reason_index == r))
            if rows.size:
                records += _records(raw, rows, field_name, reason, table.column(field_name))

    valid = field_of < 0
    user_code, user_ids = _sorted_codes(
        pc.utf8_trim_whitespace(_strings(table.column(columns.user))), valid
    )
    interactions_table = InteractionTable(
        user=user_code[valid],
        item=item_code[valid],
        ts=ts.values[valid].astype(np.int64),
        rating=rating_values[valid],
        user_ids=user_ids,
        item_ids=item_table.item_ids,
    )
    records.sort(key=lambda r: (r.file, r.row))
    if quarantine is not None:
        write_quarantine(records, quarantine)
    counts = {
        "rows_read": int(n + len(raw.quarantine)),
        "rows_loaded": int(valid.sum()),
        "rows_quarantined": int(n - valid.sum()) + len(raw.quarantine),
        "item_rows_quarantined": len(records) - int(n - valid.sum()) - len(raw.quarantine),
        "items": len(item_table),
    }
    return InteractionData(
        name=name,
        interactions=interactions_table,
        items=item_table,
        quarantine=tuple(records),
        source=str(interactions),
        metadata={**(metadata or {}), "counts": counts},
    )


def write_quarantine(records: list[QuarantineRecord] | tuple[QuarantineRecord, ...], path: Path) -> Path:
    """Write ``records`` as JSON lines to ``path`` (replaced atomically; empty when none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # raw user ids: owner only
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record.model_dump(mode="json"), ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path
