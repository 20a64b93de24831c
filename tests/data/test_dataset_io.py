"""Loading user files: bad rows go to quarantine with file/row/field/reason, never lost or fatal;
structural problems raise DataError naming what is missing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hybridrec.config import PluginRef
from hybridrec.data import prepare
from hybridrec.data.io import InteractionColumns, ItemColumns, load_interaction_files
from hybridrec.errors import DataError
from hybridrec.plugins import build, resolve_plugin

ITEMS_CSV = "item,title,categories\nA,Alpha,x|y\nB,Beta,y\nC,Gamma,z\nD,Delta,x|y\nE,Epsilon,\n"

Write = Callable[[str, str], Path]

GOOD = [
    "u1,A,946684800,5",
    "u1,B,946684801,4",
    "u1,C,946684802,4",
    "u2,D,946684800,5",
]


def load(write: Write, rows: list[str], header: str = "user,item,timestamp,rating", **kw: object):
    inter = write("log.csv", "\n".join([header, *rows]) + "\n")
    items = write("items.csv", ITEMS_CSV)
    return load_interaction_files(name="t", interactions=inter, items=items, **kw)  # type: ignore[arg-type]


def test_clean_file_loads_with_sorted_codes(write: Write) -> None:
    data = load(write, ["u2,D,946684800,5", *GOOD[:3]])
    assert len(data.interactions) == 4 and data.quarantine == ()
    assert data.interactions.user_ids.tolist() == ["u1", "u2"]
    assert data.items.item_ids.tolist() == ["A", "B", "C", "D", "E"]
    assert data.interactions.user.tolist() == [1, 0, 0, 0]
    assert data.interactions.item.tolist() == [3, 0, 1, 2]
    assert data.items.categories[0] == ("x", "y") and data.items.categories[4] == ()
    assert data.metadata["counts"]["rows_loaded"] == 4


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        (",A,946684803,5", "user", "missing value"),
        ("u3,,946684803,5", "item", "missing value"),
        ("u3,Z,946684803,5", "item", "unknown item"),
        ("u3,A,,5", "timestamp", "missing value"),
        ("u3,A,yesterday,5", "timestamp", "neither a number"),
        ("u3,A,-5,5", "timestamp", "outside"),
        ("u3,A,99999999999999,5", "timestamp", "outside"),
        ("u3,A,946684803,great", "rating", "not a finite number"),
        ("u3,A,946684803,", "rating", "missing value"),
        ("u3,A,946684803,nan", "rating", "not a finite number"),
        ("u3,A,946684803", "*", "expected 4 fields, found 3"),
        ("u3,A,946684803,5,extra", "*", "expected 4 fields, found 5"),
    ],
)
def test_a_bad_row_is_quarantined_and_the_good_rows_survive(
    write: Write, tmp_path: Path, row: str, field: str, reason: str
) -> None:
    sink = tmp_path / "q" / "quarantine.jsonl"
    data = load(write, [*GOOD[:2], row, *GOOD[2:]], quarantine=sink)
    assert len(data.interactions) == len(GOOD), "every valid row is kept"
    assert len(data.quarantine) == 1
    record = data.quarantine[0]
    assert (record.field, record.row) == (field, 4), "line 4: header, two good rows, then it"
    assert reason in record.reason
    assert record.file.endswith("log.csv")
    lines = [json.loads(x) for x in sink.read_text().splitlines()]
    assert lines == [record.model_dump(mode="json")]
    assert data.metadata["counts"]["rows_quarantined"] == 1


def test_rating_range_and_first_failing_field(write: Write) -> None:
    data = load(write, [*GOOD, "u3,Z,x,9", "u3,A,946684803,9"], validation=None)
    assert [(q.row, q.field) for q in data.quarantine] == [(6, "item")]
    from hybridrec.data.io import ValidationOptions

    data = load(write, [*GOOD, "u3,A,946684803,9"], validation=ValidationOptions(min_rating=1, max_rating=5))
    assert [(q.row, q.field, q.value) for q in data.quarantine] == [(6, "rating", "9.0")]


def test_blank_lines_are_quarantined_and_row_numbers_stay_line_numbers(write: Write) -> None:
    data = load(write, [GOOD[0], "", "u3,A,946684803", GOOD[1], "u3,A,oops,4", GOOD[2]])
    assert [(q.row, q.field) for q in data.quarantine] == [(3, "user"), (4, "*"), (6, "timestamp")]
    assert len(data.interactions) == 3


def test_item_file_problems_are_quarantined(write: Write) -> None:
    inter = write("log.csv", "user,item,timestamp\n" + "\n".join(r.rsplit(",", 1)[0] for r in GOOD) + "\n")
    items = write("items.csv", ITEMS_CSV + ",Nameless,x\nA,Again,y\n")
    data = load_interaction_files(
        name="t", interactions=inter, items=items, columns=InteractionColumns(rating=None)
    )
    assert [(q.file.endswith("items.csv"), q.row, q.field) for q in data.quarantine] == [
        (True, 7, "item"), (True, 8, "item"),
    ]
    assert "duplicate" in data.quarantine[1].reason
    assert data.items.titles[0] == "Alpha", "the first definition wins"
    assert np.isnan(data.interactions.rating).all(), "no rating column: unrated"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("user,item,timestamp,rating\n", "no data rows"),
        ("user,thing,timestamp\nu,A,1\n", r"column\(s\) 'item';"),  # rating is optional
    ],
)
def test_structural_problems_raise_data_error(write: Write, text: str, message: str) -> None:
    inter = write("log.csv", text)
    items = write("items.csv", ITEMS_CSV)
    with pytest.raises(DataError, match=message) as info:
        load_interaction_files(name="t", interactions=inter, items=items)
    assert "log.csv" in str(info.value)


def test_missing_files_and_item_columns_raise(write: Write, tmp_path: Path) -> None:
    items = write("items.csv", ITEMS_CSV)
    with pytest.raises(DataError, match="does not exist"):
        load_interaction_files(name="t", interactions=tmp_path / "nope.csv", items=items)
    inter = write("log.csv", "user,item,timestamp,rating\n" + "\n".join(GOOD) + "\n")
    with pytest.raises(DataError, match="'sku'"):
        load_interaction_files(
            name="t", interactions=inter, items=items, item_columns=ItemColumns(item="sku")
        )


def test_file_plugin_reads_parquet_with_column_mapping_and_iso_times(tmp_path: Path, write: Write) -> None:
    frame = pd.DataFrame(
        {
            "uid": ["u1", "u1", "u1", "u1", None],
            "sku": ["A", "B", "C", "A", "B"],
            "when": ["2000-01-01T00:00:00Z", "2000-01-01T00:00:05Z", "2000-01-02T10:00:00+02:00", "not a date", "2000-01-03T00:00:00Z"],
        }
    )
    log = tmp_path / "log.parquet"
    frame.to_parquet(log)
    items = write("items.tsv", "sku\tname\ttags\nA\tAlpha\tx y\nB\tBeta\ty\nC\tGamma\tz\n")
    dataset = build(
        "dataset",
        PluginRef(
            plugin="parquet",
            options={
                "interactions": str(log), "items": str(items), "name": "mine",
                "columns": {"user": "uid", "item": "sku", "timestamp": "when", "rating": None},
                "item_columns": {"item": "sku", "title": "name", "categories": "tags"},
                "category_separator": " ", "timestamp_unit": "iso",
            },
        ),
    )
    data = dataset.load()
    assert data.name == "mine"
    assert [(q.row, q.field) for q in data.quarantine] == [(4, "when"), (5, "uid")]
    assert data.interactions.ts.tolist() == [946684800, 946684805, 946800000]
    prepared = prepare(data, min_rating=None)
    assert len(prepared.catalog) == 3 and len(prepared.transitions) == 1


def test_unknown_options_are_rejected() -> None:
    from hybridrec.errors import ConfigError

    with pytest.raises(ConfigError, match="colums"):
        resolve_plugin("dataset", PluginRef(plugin="csv", options={"interactions": "a", "items": "b", "colums": {}}))


def test_loaded_transitions_do_not_depend_on_file_row_order(write: Write) -> None:
    rng = np.random.default_rng(0)
    rows = [f"u{rng.integers(4)},{'ABCDE'[rng.integers(5)]},{946684800 + int(rng.integers(20))},{int(rng.integers(1, 6))}" for _ in range(200)]
    a = prepare(load(write, rows))
    b = prepare(load(write, list(reversed(rows))))
    assert len(a.transitions) > 0
    for name in ("c1", "c2", "c3", "ts", "user"):
        np.testing.assert_array_equal(getattr(a.transitions, name), getattr(b.transitions, name))
