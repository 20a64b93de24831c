"""The malformed-input corpus (issue 15): 50 valid rows plus one defect, read by the ``file``
dataset and by the ``hybridrec update --data`` ingest path. Every kind ends in quarantine
records (file, row, field, reason) with all 50 valid rows kept, a clean read, or one clear
``DataError`` (exit code 2 on the command line) -- never a traceback, never a lost valid row."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybridrec.data.io import load_interaction_files
from hybridrec.errors import DataError
from hybridrec.ingest import read_batch
from hybridrec.types import UTC

T0 = 946_684_800  # 2000-01-01
NOW = datetime(2000, 3, 1, tzinfo=UTC)
ITEMS = {"A": "x|y", "B": "y", "C": "z", "D": "x"}
N_GOOD = 50

Rows = list[list[str]]
Build = Callable[[list[str], Rows], bytes]


def good_rows(with_categories: bool) -> Rows:
    rows = []
    for i in range(N_GOOD):
        item = "ABCD"[i % 4]
        row = [f"good{i:02d}", item, str(T0 + 3600 * i), str(3 + i % 3)]
        if with_categories:
            row.append(ITEMS[item])
        rows.append(row)
    return rows


def csv_bytes(header: list[str], rows: Rows, *, newline: str = "\n", final: bool = True) -> bytes:
    text = newline.join([",".join(header), *(",".join(r) for r in rows)])
    return (text + (newline if final else "")).encode()


def bad(*cells: str) -> Callable[[list[str]], list[str]]:
    """A defective row: the given cells, padded with valid values to the header's width."""

    def row(header: list[str]) -> list[str]:
        base = ["bad", "A", str(T0), "4", ITEMS["A"]][: len(header)]
        return [*cells, *base[len(cells):]]

    return row


def inserted(line: Callable[[list[str]], bytes], at: int = 25) -> Build:
    """The valid file with the raw line ``line(header)`` inserted before valid row ``at``."""

    def build(header: list[str], rows: Rows) -> bytes:
        head = csv_bytes(header, rows[:at])
        return head + line(header) + b"\n" + csv_bytes(header, rows[at:])[len(",".join(header)) + 1:]

    return build


def row_line(make: Callable[[list[str]], list[str]]) -> Callable[[list[str]], bytes]:
    return lambda header: ",".join(make(header)).encode("utf-8", errors="surrogateescape")


def raw_line(data: bytes) -> Callable[[list[str]], bytes]:
    """A raw line written for the update format; without a categories column, its last field
    is dropped."""
    return lambda header: data if "categories" in header or not data.endswith(b",x|y") else data[:-4]


def whole(make: Callable[[list[str], Rows], bytes]) -> Build:
    return make


@dataclass(frozen=True)
class Kind:
    name: str
    build: Build
    #: "quarantine" (>= 1 record, the 50 valid rows kept), "clean" (no record, 50 kept), "kept"
    #: (the 50 valid rows kept; the odd row may be kept or quarantined), "error" (one DataError)
    outcome: str
    suffix: str = ".csv"


def _parquet(header: list[str], rows: Rows) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {name: [r[i] for r in rows] for i, name in enumerate(header)}
    columns["timestamp"] = [int(v) for v in columns["timestamp"]]  # type: ignore[misc]
    columns["rating"] = [float(v) for v in columns["rating"]]  # type: ignore[misc]
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


def _parquet_with(change: Callable[[dict], None]) -> Build:
    """The valid rows as Parquet after one more row (user ``bad``, first), with ``change``
    applied to the Arrow columns by name (a defect goes into the first row)."""

    def build(header: list[str], rows: Rows) -> bytes:
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [["bad", *rows[0][1:]], *rows]
        columns: dict = {name: pa.array([r[i] for r in rows]) for i, name in enumerate(header)}
        columns["timestamp"] = pa.array([int(r[2]) for r in rows])
        columns["rating"] = pa.array([float(r[3]) for r in rows])
        change(columns)
        sink = io.BytesIO()
        pq.write_table(pa.table(columns), sink)
        return sink.getvalue()

    return build


def _pa() -> Any:
    import pyarrow as pa

    return pa


def _iso(ts: str) -> str:
    return datetime.fromtimestamp(int(ts), UTC).isoformat()


def _timestamps(change: Callable[[int, str], str], defects: tuple[str, ...] = ()) -> Build:
    """The valid file with each row's timestamp written as ``change(index, epoch_seconds)``,
    after one row (user ``bad<n>``) per timestamp in ``defects``."""

    def build(h: list[str], rows: Rows) -> bytes:
        first = [[f"bad{n}", *rows[0][1:2], ts, *rows[0][3:]] for n, ts in enumerate(defects)]
        return csv_bytes(h, [*first, *([*r[:2], change(i, r[2]), *r[3:]] for i, r in enumerate(rows))])

    return build


def _with_header(change: Callable[[list[str]], list[str]]) -> Build:
    return lambda header, rows: csv_bytes(change(header), rows)


KINDS = [
    # -- one bad row among 50 good ones: quarantined, the rest kept --------------------------
    Kind("extra-field", inserted(row_line(lambda h: [*bad()(h), "extra"])), "quarantine"),
    Kind("missing-field", inserted(row_line(lambda h: bad()(h)[:-1])), "quarantine"),
    Kind("only-delimiters", inserted(raw_line(b",,,,,,,")), "quarantine"),
    Kind("non-utf8-byte", inserted(raw_line(b"bad\xff,A,946684800,4,x|y")), "quarantine"),
    Kind("latin1-text", inserted(raw_line("Jos\u00e9,A,946684800,4,x|y".encode("latin-1"))), "quarantine"),
    Kind("truncated-utf8", inserted(raw_line(b"bad\xe2\x82,A,946684800,4,x|y")), "quarantine"),
    Kind("overlong-utf8", inserted(raw_line(b"bad\xc0\xaf,A,946684800,4,x|y")), "quarantine"),
    Kind("nul-byte", inserted(raw_line(b"bad\x00,A,946684800,4,x|y")), "kept"),
    Kind("binary-line", inserted(raw_line(bytes(range(256)).replace(b"\n", b""))), "quarantine"),
    Kind("unterminated-quote", inserted(raw_line(b'"bad,A,946684800,4,x|y')), "quarantine"),
    Kind("unterminated-quote-first-row", inserted(raw_line(b'"bad,A,946684800,4,x|y'), at=0), "quarantine"),
    Kind("unterminated-quote-last-row", inserted(raw_line(b'bad,"A,946684800,4,x|y'), at=N_GOOD), "quarantine"),
    Kind("stray-quote", inserted(raw_line(b'"bad"x,A,946684800,4,x|y')), "kept"),
    Kind("newline-in-quoted-field", inserted(raw_line(b'"bad\nuser",A,946684800,4,x|y')), "quarantine"),
    Kind("blank-line", inserted(raw_line(b"")), "quarantine"),
    Kind("whitespace-line", inserted(raw_line(b"   ")), "quarantine"),
    Kind("tab-separated-row", inserted(raw_line(b"bad\tA\t946684800\t4\tx|y")), "quarantine"),
    Kind("semicolon-row", inserted(raw_line(b"bad;A;946684800;4;x|y")), "quarantine"),
    Kind("empty-user", inserted(row_line(bad(""))), "quarantine"),
    Kind("blank-user", inserted(row_line(bad("   "))), "quarantine"),
    Kind("empty-item", inserted(row_line(bad("bad", ""))), "quarantine"),
    Kind("unknown-item", inserted(row_line(bad("bad", "Z", str(T0), "4", ""))), "quarantine"),
    Kind("empty-timestamp", inserted(row_line(bad("bad", "A", ""))), "quarantine"),
    Kind("word-timestamp", inserted(row_line(bad("bad", "A", "yesterday"))), "quarantine"),
    Kind("word-timestamp-first-row", inserted(row_line(bad("bad", "A", "yesterday")), at=0), "quarantine"),
    Kind("iso-timestamp-in-epoch-column", inserted(row_line(bad("bad", "A", "2000-01-02T00:00:00Z")), at=0), "clean"),
    Kind("negative-timestamp", inserted(row_line(bad("bad", "A", "-5"))), "quarantine"),
    Kind("huge-timestamp", inserted(row_line(bad("bad", "A", "99999999999999"))), "quarantine"),
    Kind("milliseconds-timestamp", inserted(row_line(bad("bad", "A", "946684800000"))), "quarantine"),
    Kind("inf-timestamp", inserted(row_line(bad("bad", "A", "1e400"))), "quarantine"),
    Kind("nan-timestamp", inserted(row_line(bad("bad", "A", "nan"))), "quarantine"),
    Kind("word-rating", inserted(row_line(bad("bad", "A", str(T0), "great"))), "quarantine"),
    Kind("nan-rating", inserted(row_line(bad("bad", "A", str(T0), "nan"))), "quarantine"),
    Kind("inf-rating", inserted(row_line(bad("bad", "A", str(T0), "inf"))), "quarantine"),
    Kind("empty-rating", inserted(row_line(bad("bad", "A", str(T0), ""))), "quarantine"),
    Kind("2mb-user-id", inserted(row_line(bad("u" * 2_000_000))), "quarantine"),
    Kind("long-user-id", inserted(row_line(bad("u" * 300))), "quarantine"),
    Kind("long-item-id", inserted(row_line(bad("bad", "i" * 300))), "quarantine"),
    Kind("long-field", inserted(row_line(bad("bad", "A", "9" * 20_000))), "quarantine"),
    Kind("repeated-header-line", inserted(lambda h: ",".join(h).encode()), "quarantine"),
    Kind("truncated-last-line", lambda h, r: csv_bytes(h, r) + b"bad,A,9466", "quarantine"),
    # -- valid variants: read cleanly -------------------------------------------------------
    Kind("crlf-line-endings", lambda h, r: csv_bytes(h, r, newline="\r\n"), "clean"),
    Kind("no-final-newline", lambda h, r: csv_bytes(h, r, final=False), "clean"),
    Kind("utf8-bom", lambda h, r: b"\xef\xbb\xbf" + csv_bytes(h, r), "clean"),
    Kind("spaces-in-header", _with_header(lambda h: [f" {c} " for c in h]), "clean"),
    Kind("no-rating-column", lambda h, r: csv_bytes([c for c in h if c != "rating"],
                                                    [[v for j, v in enumerate(x) if j != 3] for x in r]), "clean"),
    Kind("quoted-fields", lambda h, r: csv_bytes(h, [[f'"{v}"' for v in x] for x in r]), "clean"),
    Kind("comma-in-quoted-user", inserted(raw_line(b'"bad,user",A,946684800,4,x|y')), "clean"),
    Kind("emoji-user", inserted(raw_line("bad\U0001f600,A,946684800,4,x|y".encode())), "clean"),
    Kind("fractional-timestamp", inserted(row_line(bad("bad", "A", "946684800.5"))), "clean"),
    Kind("duplicate-row", lambda h, r: csv_bytes(h, [*r, r[0]]), "clean"),
    Kind("parquet", _parquet, "clean", suffix=".parquet"),
    # -- timestamps: each value read for itself, never one row deciding for the column -------
    Kind("iso-column", _timestamps(lambda i, t: _iso(t)), "clean"),
    Kind("iso-column-one-epoch-first", _timestamps(lambda i, t: t if i == 0 else _iso(t)), "clean"),
    Kind("half-iso-half-epoch", _timestamps(lambda i, t: _iso(t) if i % 2 else t), "clean"),
    Kind("iso-dates-only", _timestamps(lambda i, t: _iso(t)[:10]), "clean"),
    Kind("iso-without-zone", _timestamps(lambda i, t: _iso(t)[:19]), "clean"),
    Kind("milliseconds-column", _timestamps(lambda i, t: t + "000"), "clean"),
    Kind("milliseconds-column-one-word", _timestamps(lambda i, t: t + "000", ("soon",)), "quarantine"),
    Kind("spaces-around-timestamps", _timestamps(lambda i, t: f" {t} "), "clean"),
    Kind("scientific-timestamps", _timestamps(lambda i, t: f"{int(t):.9e}"), "clean"),
    Kind("word-timestamps-first-rows", _timestamps(lambda i, t: t, ("n/a",) * 5), "quarantine"),
    Kind("iso-timestamps-first-rows", _timestamps(lambda i, t: t, ("2000-01-02T00:00:00Z",) * 5), "clean"),
    # -- more layouts -------------------------------------------------------------------------
    Kind("quoted-header", lambda h, r: csv_bytes([f'"{c}"' for c in h], r), "clean"),
    Kind("trailing-delimiter", lambda h, r: csv_bytes([*h, ""], [[*x, ""] for x in r]), "clean"),
    Kind("unused-extra-column", lambda h, r: csv_bytes([*h, "note"], [[*x, "hello"] for x in r]), "clean"),
    Kind("tsv-file", lambda h, r: "\n".join("\t".join(x) for x in [h, *r]).encode() + b"\n", "clean", suffix=".tsv"),
    # -- Parquet: the same rules as CSV ------------------------------------------------------
    Kind("parquet-timestamp-type", _parquet_with(lambda c: c.update(timestamp=_pa().array(
        [x * 1000 for x in c["timestamp"].to_pylist()], _pa().timestamp("ms")))), "clean", suffix=".parquet"),
    Kind("parquet-iso-text-timestamps", _parquet_with(lambda c: c.update(timestamp=_pa().array(
        [_iso(str(x)) for x in c["timestamp"].to_pylist()]))), "clean", suffix=".parquet"),
    Kind("parquet-dictionary-ids", _parquet_with(lambda c: c.update(item=c["item"].dictionary_encode())), "clean", suffix=".parquet"),
    Kind("parquet-large-strings", _parquet_with(lambda c: c.update(user=c["user"].cast(_pa().large_string()))), "clean", suffix=".parquet"),
    Kind("parquet-no-rating", _parquet_with(lambda c: c.pop("rating")), "clean", suffix=".parquet"),
    Kind("parquet-text-rating", _parquet_with(lambda c: c.update(rating=c["rating"].cast(_pa().string()))), "clean", suffix=".parquet"),
    Kind("parquet-null-values", _parquet_with(lambda c: c.update(user=_pa().array(
        [None, *c["user"].to_pylist()[1:]]))), "quarantine", suffix=".parquet"),
    Kind("parquet-binary-ids-one-invalid", _parquet_with(lambda c: c.update(user=_pa().array(
        [b"\xff\xfe", *(u.encode() for u in c["user"].to_pylist()[1:])], _pa().binary()))), "quarantine", suffix=".parquet"),
    Kind("parquet-uint64-overflow", _parquet_with(lambda c: c.update(timestamp=_pa().array(
        [2**63 + 5, *c["timestamp"].to_pylist()[1:]], _pa().uint64()))), "quarantine", suffix=".parquet"),
    Kind("parquet-long-id", _parquet_with(lambda c: c.update(user=_pa().array(
        ["u" * 3000, *c["user"].to_pylist()[1:]]))), "quarantine", suffix=".parquet"),
    Kind("parquet-spaced-names", _parquet_with(lambda c: c.update({" user ": c.pop("user")})), "clean", suffix=".parquet"),
    # -- whole-file problems: one clear error -----------------------------------------------
    Kind("bare-carriage-returns", lambda h, r: csv_bytes(h, r, newline="\r"), "error"),
    Kind("utf16-file", lambda h, r: csv_bytes(h, r).decode().encode("utf-16"), "error"),
    Kind("gzip-compressed", lambda h, r: __import__("gzip").compress(csv_bytes(h, r)), "error"),
    Kind("parquet-struct-column", _parquet_with(lambda c: c.update(user=_pa().array(
        [{"id": u} for u in c["user"].to_pylist()]))), "error", suffix=".parquet"),
    Kind("empty-file", lambda h, r: b"", "error"),
    Kind("header-only", lambda h, r: csv_bytes(h, []), "error"),
    Kind("binary-garbage", lambda h, r: bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "error"),
    Kind("duplicated-header-name", _with_header(lambda h: ["user", "user", *h[2:]]), "error"),
    Kind("missing-required-column", _with_header(lambda h: ["user", "thing", *h[2:]]), "error"),
    Kind("non-utf8-header", lambda h, r: b"us\xffer" + csv_bytes(h, r)[4:], "error"),
    Kind("csv-named-parquet", lambda h, r: csv_bytes(h, r), "error", suffix=".parquet"),
    Kind("truncated-parquet", lambda h, r: _parquet(h, r)[:200], "error", suffix=".parquet"),
]

assert len({k.name for k in KINDS}) == len(KINDS) >= 80


def _good_users() -> set[str]:
    return {f"good{i:02d}" for i in range(N_GOOD)}


def _check(kind: Kind, loaded_users: set[str], quarantine: list) -> None:
    assert _good_users() <= loaded_users, "every valid row is kept"
    if kind.outcome == "quarantine":
        assert quarantine, "the defect is recorded"
    if kind.outcome == "clean":
        assert not [r for r in quarantine if "item" not in r.file], "a valid variant reads cleanly"
    for record in quarantine:
        assert record.file and record.row >= 1 and record.field and record.reason


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_file_dataset(kind: Kind, tmp_path: Path) -> None:
    header = ["user", "item", "timestamp", "rating"]
    data = tmp_path / f"log{kind.suffix}"
    data.write_bytes(kind.build(header, good_rows(False)))
    items = tmp_path / "items.csv"
    items.write_text("item,title,categories\n" + "".join(f"{k},{k},{v}\n" for k, v in ITEMS.items()))
    sink = tmp_path / "quarantine.jsonl"
    if kind.outcome == "error":
        with pytest.raises(DataError, match=r"\S") as info:
            load_interaction_files(name="t", interactions=data, items=items, quarantine=sink)
        assert str(data) in str(info.value) and "\n" not in str(info.value)
        return
    loaded = load_interaction_files(name="t", interactions=data, items=items, quarantine=sink)
    users = set(loaded.interactions.user_ids[loaded.interactions.user].tolist())
    _check(kind, users, list(loaded.quarantine))
    assert len(sink.read_text().splitlines()) == len(loaded.quarantine)
    assert len(loaded.interactions) == loaded.metadata["counts"]["rows_loaded"]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_update_data(kind: Kind, tmp_path: Path) -> None:
    header = ["user", "item", "timestamp", "rating", "categories"]
    data = tmp_path / f"new{kind.suffix}"
    data.write_bytes(kind.build(header, good_rows(True)))
    if kind.outcome == "error":
        with pytest.raises(DataError, match=r"\S") as info:
            read_batch(data, items=None, now=NOW, catalog=None, known_items={})
        assert "\n" not in str(info.value)
        return
    batch, _ = read_batch(data, items=None, now=NOW, catalog=None, known_items={})
    _check(kind, set(batch.user.tolist()), batch.quarantine)


@pytest.mark.parametrize("name", ["binary-garbage", "empty-file", "duplicated-header-name", "extra-field"])
def test_cli_update_exits_2_with_one_line_or_quarantines(
    name: str, tmp_path: Path, hybridrec_plugin: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    from hybridrec.cli import main
    from hybridrec.testing import fakes

    hybridrec_plugin(fakes, "corpus-fakes")
    kind = next(k for k in KINDS if k.name == name)
    config = tmp_path / "pipeline.toml"
    config.write_text('[generator]\nplugin = "fake-gen"\n[fine_tuner]\nplugin = "fake-ft"\n'
                      '[knowledge_store]\nplugin = "fake-store"\n[update_policy]\nplugin = "hybrid"\n')
    data = tmp_path / "new.csv"
    data.write_bytes(kind.build(["user", "item", "timestamp", "rating", "categories"], good_rows(True)))
    ws = str(tmp_path / "ws")
    main(["init", ws, "--config", str(config)])
    capsys.readouterr()
    if kind.outcome == "error":
        with pytest.raises(SystemExit) as exit_info:
            main(["update", ws, "--data", str(data), "--now", "2000-03-01"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err and "Traceback" not in err and len(err.splitlines()) == 1
        return
    main(["update", ws, "--data", str(data), "--now", "2000-03-01", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["rows_ingested"] == N_GOOD and out["rows_quarantined"] == 1
    records = [json.loads(x) for x in (tmp_path / "ws" / "quarantine.jsonl").read_text().splitlines()]
    assert [(r["row"], r["field"]) for r in records] == [(27, "*")]


def test_item_file_defects_and_the_encoding_option(tmp_path: Path) -> None:
    """The item file goes through the same reader: a latin-1 line is quarantined (or read, with
    encoding = "latin-1"), a repeated header name is one error, a BOM and spaces are fine."""
    data = tmp_path / "log.csv"
    data.write_bytes(csv_bytes(["user", "item", "timestamp", "rating"], good_rows(False)))
    items = tmp_path / "items.csv"
    lines = [f"{k},{k},{v}" for k, v in ITEMS.items()]
    items.write_bytes(b"\xef\xbb\xbf item , title ,categories\n" + "\n".join(lines).encode()
                      + "\nE,Caf\u00e9,x\n".encode("latin-1"))
    loaded = load_interaction_files(name="t", interactions=data, items=items)
    assert len(loaded.interactions) == N_GOOD and len(loaded.items) == 4
    assert [(q.row, q.field) for q in loaded.quarantine] == [(6, "*")] and "latin-1" in loaded.quarantine[0].reason
    loaded = load_interaction_files(name="t", interactions=data, items=items, encoding="latin-1")
    assert len(loaded.items) == 5 and "Caf\u00e9" in loaded.items.titles and not loaded.quarantine
    items.write_text("item,item,categories\nA,A,x\n")
    with pytest.raises(DataError, match="repeats column name"):
        load_interaction_files(name="t", interactions=data, items=items)


def test_parquet_category_lists_are_categories_not_their_repr(tmp_path: Path) -> None:
    import pyarrow as pa

    data = tmp_path / "new.parquet"
    data.write_bytes(_parquet_with(lambda c: c.update(categories=pa.array(
        [v.split("|") for v in c["categories"].to_pylist()])))(
        ["user", "item", "timestamp", "rating", "categories"], good_rows(True)))
    batch, catalog = read_batch(data, items=None, now=NOW, catalog=None, known_items={})
    assert len(batch) == N_GOOD + 1 and not batch.quarantine
    assert sorted(catalog.description(c) for c in range(len(catalog))) == ["x", "x y", "y", "z"]


def test_a_header_and_blank_lines_quarantines_them_without_a_traceback(tmp_path: Path) -> None:
    data = tmp_path / "log.csv"
    data.write_bytes(b"user,item,timestamp,rating\n\n\n\n")
    items = tmp_path / "items.csv"
    items.write_text("item,title,categories\nA,A,x\n")
    loaded = load_interaction_files(name="t", interactions=data, items=items)
    assert len(loaded.interactions) == 0 and [q.row for q in loaded.quarantine] == [2, 3, 4]
