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
* **Never a traceback for a bad byte.** CSV/TSV files are read by Arrow when they are clean; a
  file Arrow cannot split (a row with extra fields, bytes that are not valid in ``encoding``, a
  stray or unterminated quote, binary data) is read again line by line, and each line that fails
  becomes one quarantine record (``field="*"``) while every other line is kept. A header that
  cannot be read (binary, undecodable) or that repeats a column name is a ``DataError``. Header
  names are stripped of spaces and of a UTF-8 byte-order mark.
* **Bounded fields.** A user or item id longer than :data:`MAX_ID_CHARS` characters, any field
  longer than :data:`MAX_FIELD_CHARS`, and a line longer than :data:`MAX_LINE_BYTES` bytes are
  quarantined with that reason.
* **Timestamps**: ``timestamp_unit="auto"`` takes a date-typed column as such and reads every
  other value for itself: a number is Unix seconds (milliseconds when most numbers of the column
  are that large), other text an ISO-8601 date-time (UTC without a zone). One odd row is one
  quarantine record; it never changes how the other rows are read.
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
    "MAX_FIELD_CHARS",
    "MAX_ID_CHARS",
    "MAX_LINE_BYTES",
    "MAX_TIMESTAMP",
    "FileFormat",
    "InteractionColumns",
    "ItemColumns",
    "RawTable",
    "TimestampUnit",
    "detect_format",
    "detect_timestamp_unit",
    "load_interaction_files",
    "read_table",
    "write_interaction_file",
    "write_item_file",
    "write_quarantine",
]

FileFormat = Literal["auto", "csv", "tsv", "parquet"]
TimestampUnit = Literal["auto", "s", "ms", "iso"]
MAX_TIMESTAMP = 4_102_444_800  # 2100-01-01T00:00:00Z: later timestamps are taken as corrupt.
_VALUE_CHARS = 200
#: Longest user or item id accepted (characters); longer ones are quarantined.
MAX_ID_CHARS = 256
#: Longest field of any column accepted (characters).
MAX_FIELD_CHARS = 10_000
#: Longest line the line-by-line reader accepts (bytes).
MAX_LINE_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"


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


def _split_line(text: str, delimiter: str, quote_char: str | None) -> list[str]:
    """The fields of one line; ``csv.Error`` for broken quoting."""
    if quote_char is None:
        return text.split(delimiter)
    rows = list(csv.reader([text], delimiter=delimiter, quotechar=quote_char, strict=True))
    return rows[0] if rows else [""]


def _read_header(path: Path, delimiter: str, quote_char: str | None, encoding: str = "utf-8") -> list[str]:
    with open(path, "rb") as fh:
        first = fh.readline(MAX_LINE_BYTES + 1)
    if first.startswith(_BOM):
        first = first[len(_BOM):]
    if not first.strip():
        raise DataError(f"{path}: the file is empty (no header line); expected a header row")
    if b"\r" in first.rstrip(b"\r\n"):
        raise DataError(
            f"{path}: lines end with a bare carriage return (\\r, old Mac style); convert the "
            "line endings to \\n or \\r\\n"
        )
    if len(first) > MAX_LINE_BYTES or b"\0" in first:
        raise DataError(
            f"{path}: the first line is not a header row (binary data or a line over "
            f"{MAX_LINE_BYTES} bytes); expected a CSV/TSV file with a header, or a .parquet file"
        )
    try:
        text = first.decode(encoding).rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: the header line is not valid {encoding} text ({exc.reason} at byte "
            f"{exc.start}); set the dataset option encoding (for example \"latin-1\")"
        ) from None
    try:
        names = [c.strip() for c in _split_line(text, delimiter, quote_char)]
    except csv.Error as exc:
        raise DataError(f"{path}: cannot read the header line ({exc})") from None
    _check_names(path, names)
    return names


def _check_names(path: Path, names: list[str]) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(
            f"{path}: the header repeats column name(s) {', '.join(repr(r) for r in repeated)}; "
            "each column needs its own name (rename one, then map it with the column options)"
        )


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
    encoding: str = "utf-8",
    list_separator: str = "|",
) -> RawTable:
    """Read the ``required`` and present ``optional`` columns of ``path``.

    Parquet columns arrive as text, numbers or date-times: dictionary and binary columns are
    decoded (a value that is not UTF-8 is quarantined), a list column (categories) is joined
    with ``list_separator``, and any other nested type is a :class:`DataError`.

    ``types`` requests Arrow types per column; if a value does not convert, the file is read again
    with every column as a string (callers then validate value by value). Rows that cannot be
    split into the header's fields (wrong count, broken quoting, undecodable bytes, binary data,
    over-long lines) are quarantined (field ``"*"``), and fields longer than
    :data:`MAX_FIELD_CHARS` (field named); every other row is kept.
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
        return _bounded(_read_parquet(path, list(required), list(optional), what, list_separator))

    sep = delimiter if delimiter is not None else ("\t" if kind == "tsv" else ",")
    header = _read_header(path, sep, quote_char, encoding)
    missing = [c for c in required if c not in header]
    if missing:
        raise _missing_columns_error(path, missing, header, what or "data")
    columns = [*required, *(c for c in optional if c in header and c not in required)]
    bad_rows: list[tuple[int, str, int, int]] = []

    def on_invalid(row: Any) -> str:
        bad_rows.append((0, "", 0, 0))  # the line reader below reports it (row.text may not decode)
        return "skip"

    def read(column_types: dict[str, pa.DataType]) -> pa.Table:
        bad_rows.clear()
        return pacsv.read_csv(
            path,
            # Single-threaded parsing reports the line number of unsplittable rows.
            read_options=pacsv.ReadOptions(
                use_threads=False, block_size=1 << 24, column_names=header, skip_rows=1,
            ),
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
    table: pa.Table | None = None
    if encoding.replace("_", "-").lower() in {"utf-8", "utf8"} and _is_utf8(path):
        try:
            table = read(wanted)
        except pa.ArrowException as exc:
            if "conversion error" in str(exc).lower() and "utf8" not in str(exc).lower():
                with_strings: pa.Table | None = None
                try:
                    with_strings = read(strings)
                except pa.ArrowException:
                    with_strings = None
                table = with_strings
    if table is not None and not bad_rows and table.num_rows != _count_lines(path) - 1:
        table = None  # a quoted value spanned lines: row numbers would no longer be line numbers
    if table is None or bad_rows:
        # Arrow could not split or decode every line: read the file line by line, so one bad
        # line costs one quarantine record and nothing else.
        raw = _read_lines(path, header, columns, sep, quote_char, encoding)
    else:
        k = np.arange(table.num_rows, dtype=np.int64)
        raw = RawTable(path=path, table=table, row_numbers=k + 2)
    if raw.table.num_rows == 0 and not raw.quarantine:
        raise DataError(f"{path}: the file has a header but no data rows")
    return _bounded(raw)


def _is_utf8(path: Path) -> bool:
    """Whether the whole file decodes as UTF-8 (else the line reader quarantines the lines)."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 24):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _count_lines(path: Path) -> int:
    """Physical lines of ``path`` (a last line without a newline counts)."""
    count, last = 0, b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _read_lines(
    path: Path, header: list[str], columns: list[str], sep: str, quote_char: str | None,
    encoding: str,
) -> RawTable:
    """The tolerant reader: every physical line is one record (as Arrow reads them); a line that
    fails becomes a quarantine record and the next line is read as if nothing happened."""
    index = [header.index(c) for c in columns]
    expected = len(header)
    values: list[list[str | None]] = [[] for _ in columns]
    numbers: list[int] = []
    quarantine: list[QuarantineRecord] = []

    def reject(line: int, reason: str, raw: bytes) -> None:
        quarantine.append(QuarantineRecord(
            file=str(path), row=line, field="*", reason=reason,
            value=_truncate(raw[: 4 * _VALUE_CHARS].decode(encoding, errors="backslashreplace")),
        ))

    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for i in range(1, len(lines)):
        line = i + 1
        raw = lines[i].removesuffix(b"\r")
        if len(raw) > MAX_LINE_BYTES:
            reject(line, f"line longer than {MAX_LINE_BYTES} bytes", raw)
            continue
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            reject(line, f"not valid {encoding} text ({exc.reason} at byte {exc.start}); set the "
                         "dataset option encoding if the file is not UTF-8 (for example \"latin-1\")", raw)
            continue
        if not text.strip():
            fields: list[str] = [""] * expected  # a blank line: every field missing
        else:
            try:
                fields = _split_line(text, sep, quote_char)
            except csv.Error as exc:
                reject(line, f"broken quoting ({exc}); an unterminated or stray quote character", raw)
                continue
        if len(fields) != expected:
            reject(line, f"expected {expected} fields, found {len(fields)}", raw)
            continue
        numbers.append(line)
        for j, col in enumerate(index):
            values[j].append(fields[col] if fields[col] != "" else None)
    table = pa.table({c: pa.array(v, type=pa.string()) for c, v in zip(columns, values, strict=True)})
    return RawTable(path=path, table=table, row_numbers=np.asarray(numbers, dtype=np.int64),
                    quarantine=quarantine)


def _bounded(raw: RawTable) -> RawTable:
    """``raw`` without the rows that have a field over :data:`MAX_FIELD_CHARS` characters (each
    quarantined, naming the field)."""
    table = raw.table
    if table.num_rows == 0:
        return raw
    too_long = np.zeros(table.num_rows, dtype=bool)
    records: list[QuarantineRecord] = []
    for name in table.column_names:
        column = table.column(name)
        if not pa.types.is_string(column.type):
            continue
        lengths = np.asarray(pc.fill_null(pc.utf8_length(column), 0), dtype=np.int64)
        rows = np.flatnonzero((lengths > MAX_FIELD_CHARS) & ~too_long)
        if rows.size:
            too_long[rows] = True
            records += _records(raw, rows, name, f"longer than {MAX_FIELD_CHARS} characters", column)
    if not too_long.any():
        return raw
    keep = np.flatnonzero(~too_long)
    return RawTable(
        path=raw.path, table=table.take(pa.array(keep)), row_numbers=raw.row_numbers[keep],
        quarantine=sorted([*raw.quarantine, *records], key=lambda r: r.row),
    )


def _read_parquet(
    path: Path, required: list[str], optional: list[str], what: str, list_separator: str = "|"
) -> RawTable:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    names = list(schema.names)
    present = [n.strip().removeprefix("\ufeff") for n in names]
    _check_names(path, present)
    missing = [c for c in required if c not in present]
    if missing:
        raise _missing_columns_error(path, missing, present, what or "data")
    columns = [*required, *(c for c in optional if c in present and c not in required)]
    try:
        table = pq.read_table(path, columns=[names[present.index(c)] for c in columns])
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    table = table.rename_columns(columns)
    if table.num_rows == 0:
        raise DataError(f"{path}: the file has no rows")
    bad = np.zeros(table.num_rows, dtype=bool)
    quarantine: list[QuarantineRecord] = []
    arrays = []
    for name in columns:
        column, undecodable = _plain_column(path, name, table.column(name), list_separator)
        arrays.append(column)
        for r in np.flatnonzero(undecodable & ~bad).tolist():
            quarantine.append(QuarantineRecord(
                file=str(path), row=r + 1, field=name, reason="not valid UTF-8 text",
                value=None,
            ))
        bad |= undecodable
    table = pa.table(dict(zip(columns, arrays, strict=True)))
    rows = np.arange(1, table.num_rows + 1, dtype=np.int64)
    if bad.any():
        keep = np.flatnonzero(~bad)
        table, rows = table.take(pa.array(keep)), rows[keep]
    return RawTable(path=path, table=table, row_numbers=rows,
                    quarantine=sorted(quarantine, key=lambda q: q.row))


def _plain_column(
    path: Path, name: str, column: pa.ChunkedArray, list_separator: str
) -> tuple[pa.ChunkedArray, np.ndarray]:
    """A Parquet column as the readers expect it -- text, numbers, booleans or date-times -- and
    the rows whose bytes are not UTF-8 text. Dictionary columns are decoded, large strings
    narrowed, binary decoded value by value, lists of values joined with ``list_separator``
    (a categories list); any other nested type is a :class:`DataError`."""
    kind = column.type
    none = np.zeros(len(column), dtype=bool)
    if pa.types.is_dictionary(kind):
        return _plain_column(path, name, pc.cast(column, kind.value_type), list_separator)
    if pa.types.is_large_string(kind):
        return pc.cast(column, pa.string()), none
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        texts: list[str | None] = []
        bad = np.zeros(len(column), dtype=bool)
        for i, value in enumerate(column.to_pylist()):
            try:
                texts.append(None if value is None else value.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(None)
                bad[i] = True
        return pa.chunked_array([pa.array(texts, type=pa.string())]), bad
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        values = kind.value_type
        if pa.types.is_dictionary(values):
            values = values.value_type
        if not (pa.types.is_string(values) or pa.types.is_large_string(values)
                or pa.types.is_integer(values) or pa.types.is_floating(values)):
            raise _type_error(path, name, kind)
        as_text = pc.cast(column, pa.list_(pa.string()))
        return pc.binary_join(as_text, list_separator), none
    if (pa.types.is_string(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind)
            or pa.types.is_decimal(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind)
            or pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        return column, none
    raise _type_error(path, name, kind)


def _type_error(path: Path, name: str, kind: pa.DataType) -> DataError:
    return DataError(
        f"{path}: column {name!r} has the Parquet type {kind}; expected text, numbers, a "
        "date-time, or a list of text (categories)"
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


def _too_long(column: pa.ChunkedArray, limit: int = MAX_ID_CHARS) -> np.ndarray:
    lengths = pc.utf8_length(pc.utf8_trim_whitespace(_strings(column)))
    return np.asarray(pc.fill_null(pc.greater(lengths, limit), False), dtype=bool)


def _strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def _parse_number(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values, missing, non_numeric)`` for a numeric or text column."""
    if (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
            or pa.types.is_decimal(column.type) or pa.types.is_boolean(column.type)):
        missing = np.asarray(pc.is_null(column), dtype=bool)
        # safe=False: a 64-bit integer beyond 2**53 becomes the nearest float (then range-checked)
        as_float = pc.cast(column, pa.float64(), safe=False)
        values = np.asarray(pc.fill_null(as_float, np.nan), dtype=np.float64)
        return values, missing, ~missing & ~np.isfinite(values)
    missing = _text_missing(column)
    text = _strings(column).to_pandas()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values, missing, ~missing & ~np.isfinite(values)


def detect_timestamp_unit(column: pa.ChunkedArray) -> Literal["s", "iso"]:
    """How most of a timestamp column is written: numeric and date types by their type; text by
    whether more values read as numbers or as ISO-8601 date-times. (``timestamp_unit="auto"``
    no longer depends on it: it reads every value as a number or a date-time.)"""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return "s"
    text = _strings(column).to_pandas()
    present = text.notna() & (text.str.strip() != "")
    numbers = int(pd.to_numeric(text[present], errors="coerce").notna().sum())
    dates = int(pd.to_datetime(text[present], utc=True, errors="coerce", format="ISO8601").notna().sum())
    return "iso" if dates > numbers else "s"


#: Numbers this large are milliseconds when most of a column is (in seconds they are after 5138).
_MS_FROM = 1e11


def _iso_seconds(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(seconds, bad)`` of ISO-8601 date-times (no zone: UTC)."""
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna().to_numpy()
    nanos = parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return np.where(bad, 0, np.floor_divide(nanos, 1_000_000_000)), bad


def _parse_timestamp(column: pa.ChunkedArray, unit: TimestampUnit, bounds: ValidationOptions) -> _Parsed:
    """Seconds since the epoch per row, with the problem of each row that has none.

    ``auto`` reads each value for itself: a number is Unix seconds (milliseconds when most
    numbers of the column are, by magnitude), any other text an ISO-8601 date-time, so one odd
    row never changes how the others are read. ``s``, ``ms`` and ``iso`` accept that form only.
    """
    reasons = ["missing value", "", f"outside [{bounds.min_timestamp}, {bounds.max_timestamp}) Unix seconds"]
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        missing = np.asarray(pc.is_null(column), dtype=bool)
        cast = pc.cast(pc.cast(column, pa.timestamp("s", tz="UTC")), pa.int64())
        seconds = np.asarray(pc.fill_null(cast, 0), dtype=np.int64)
        bad = np.zeros_like(missing)
    elif unit == "iso":
        missing = _text_missing(column)
        seconds, bad = _iso_seconds(_strings(column).to_pandas())
        bad = bad & ~missing
        seconds = np.where(missing | bad, 0, seconds)
        reasons[1] = "not an ISO-8601 date-time"
    else:
        values, missing, bad = _parse_number(column)
        ok = ~missing & ~bad
        if unit == "auto":
            large = np.abs(values[ok]) >= _MS_FROM
            scale = 1000.0 if large.size and large.mean() > 0.5 else 1.0
        else:
            scale = 1000.0 if unit == "ms" else 1.0
        seconds = np.zeros(values.shape[0], dtype=np.int64)
        scaled = np.floor(values[ok] / scale)
        # Values far outside int64 would wrap; clip before casting so the range check sees them.
        seconds[ok] = np.clip(scaled, -(2.0**62), 2.0**62).astype(np.int64)
        text_like = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        if unit == "auto" and text_like and bad.any():
            rows = np.flatnonzero(bad)
            iso, still_bad = _iso_seconds(_strings(column).take(pa.array(rows)).to_pandas())
            seconds[rows[~still_bad]] = iso[~still_bad]
            bad[rows[~still_bad]] = False
        reasons[1] = (
            "neither a number (Unix seconds) nor an ISO-8601 date-time" if unit == "auto"
            else f"not a number (expected Unix {'milliseconds' if unit == 'ms' else 'seconds'})"
        )
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
    if dictionary.shape[0] == 0:  # every value missing
        return np.full(indices.shape[0], -1, dtype=np.int64), dictionary
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
    encoding: str = "utf-8",
) -> tuple[ItemTable, list[QuarantineRecord]]:
    optional = [c for c in (columns.title, columns.categories) if c is not None]
    raw = read_table(
        path, [columns.item], optional, fmt=fmt, delimiter=delimiter, quote_char=quote_char,
        what="item metadata", encoding=encoding, list_separator=category_separator,
    )
    quarantine = list(raw.quarantine)
    ids_col = raw.table.column(columns.item)
    missing = _text_missing(ids_col)
    quarantine += _records(raw, np.flatnonzero(missing), columns.item, "missing item id", ids_col)
    long_ids = _too_long(ids_col) & ~missing
    quarantine += _records(raw, np.flatnonzero(long_ids), columns.item,
                           f"item id longer than {MAX_ID_CHARS} characters", ids_col)
    missing = missing | long_ids
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
    timestamp_unit: TimestampUnit = "auto",
    validation: ValidationOptions | None = None,
    quarantine: Path | None = None,
    metadata: dict[str, Any] | None = None,
    encoding: str = "utf-8",
) -> InteractionData:
    """Load and validate an interaction log and its item file (see the module docstring).

    The rating column is optional: when the file has no column of that name, rows are unrated.
    """
    columns = columns or InteractionColumns()
    item_columns = item_columns or ItemColumns()
    bounds = validation or ValidationOptions()
    item_table, records = _load_items(
        Path(items), item_columns, fmt=fmt, delimiter=delimiter, quote_char=quote_char,
        category_separator=category_separator, encoding=encoding,
    )
    if len(item_table) == 0:
        raise DataError(f"{items}: no valid item rows (see the quarantine records)")

    required = [columns.user, columns.item, columns.timestamp]
    optional = [columns.rating] if columns.rating is not None else []
    types: dict[str, pa.DataType] = {}
    if timestamp_unit != "iso":
        types[columns.timestamp] = pa.float64()
    if columns.rating is not None:
        types[columns.rating] = pa.float64()
    raw = read_table(
        Path(interactions), required, optional, fmt=fmt, delimiter=delimiter, quote_char=quote_char,
        types=types, what="interaction", encoding=encoding,
    )
    if columns.rating is not None and columns.rating not in raw.table.column_names:
        columns = columns.model_copy(update={"rating": None})
    records += raw.quarantine
    table = raw.table
    n = table.num_rows

    # First failing field wins: user, item, timestamp, rating.
    field_of = np.full(n, -1, dtype=np.int8)
    checks: list[tuple[str, np.ndarray, list[str]]] = []

    too_long = f"longer than {MAX_ID_CHARS} characters"
    user_missing = _text_missing(table.column(columns.user))
    user_long = _too_long(table.column(columns.user))
    checks.append((columns.user, np.where(user_missing, 0, np.where(user_long, 1, -1)).astype(np.int8),
                   ["missing value", too_long]))
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
    item_problem = np.where(
        item_missing, 0, np.where(_too_long(item_col), 2, np.where(item_code < 0, 1, -1))
    ).astype(np.int8)
    checks.append(
        (columns.item, item_problem, ["missing value", f"unknown item (not in {items})", too_long])
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


def _ids(codes: np.ndarray, names: np.ndarray, prefix: str, coded: bool) -> Any:
    # Coded ids are the dense codes zero-padded, so that sorting them as text keeps the codes'
    # order (ties in the transition protocol break by it): a reader of the file rebuilds the
    # same transitions.
    return np.char.add(prefix, np.char.zfill(codes.astype(str), 9)) if coded else names[codes]


def write_interaction_file(data: InteractionData, path: Path, *, rows: np.ndarray | None = None,
                           coded_ids: bool = False) -> Path:
    """``data``'s interactions (``rows``: a mask or indices; default all) as a CSV the ``file``
    dataset and ``hybridrec update --data`` read: ``user,item,timestamp,rating`` (Unix seconds;
    an unrated row has an empty rating). ``coded_ids``: ids from the dense codes, not the
    source's (see :func:`write_item_file`)."""
    inter = data.interactions
    take = np.arange(len(inter)) if rows is None else np.asarray(rows)
    pd.DataFrame({
        "user": _ids(inter.user[take], inter.user_ids, "u", coded_ids),
        "item": _ids(inter.item[take], inter.item_ids, "i", coded_ids),
        "timestamp": inter.ts[take], "rating": inter.rating[take],
    }).to_csv(path, index=False)
    return Path(path)


def write_item_file(data: InteractionData, path: Path, *, coded_ids: bool = False) -> Path:
    """``data``'s items as ``item,title,categories`` (categories ``|``-separated), with the ids
    :func:`write_interaction_file` writes for the same ``coded_ids``."""
    items = data.items
    pd.DataFrame({
        "item": _ids(np.arange(len(items)), items.item_ids, "i", coded_ids),
        "title": list(items.titles), "categories": ["|".join(c) for c in items.categories],
    }).to_csv(path, index=False)
    return Path(path)

