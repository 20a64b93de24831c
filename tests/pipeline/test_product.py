"""From a workspace to production: recommendations from a user's items, an export with its
version and checksums, and an HTTP service that never mixes two table versions."""

from __future__ import annotations

import json
import stat
import threading
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybridrec.config import load_config
from hybridrec.engine import run_update
from hybridrec.errors import HybridrecError
from hybridrec.serving.export import export_table, verify_export
from hybridrec.serving.http import serve_in_thread
from hybridrec.serving.recommend import cluster_history
from hybridrec.testing.cli import run_cli
from hybridrec.types import UTC
from hybridrec.workspace import Workspace

JAN = datetime(2000, 1, 1, tzinfo=UTC)
FEB = datetime(2000, 2, 1, tzinfo=UTC)


@pytest.fixture
def ws(fake_plugins: Any, tmp_path: Path, config_file: Path) -> Workspace:
    workspace = Workspace.init(tmp_path / "ws", load_config(config_file))
    run_update(workspace, fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31), now=FEB)
    return workspace


def _items_of_clusters(ws: Workspace, clusters: list[int]) -> list[str]:
    """One known item per cluster, in order."""
    by_cluster: dict[int, str] = {}
    for item, cluster in sorted(ws.item_clusters().items()):
        by_cluster.setdefault(cluster, item)
    return [by_cluster[c] for c in clusters]


def test_recommendations_from_a_users_items_drop_the_history(ws: Workspace) -> None:
    mapping = ws.item_clusters()
    assert mapping and all(0 <= c < len(ws.catalog()) for c in mapping.values())
    a, b, c = sorted(set(mapping.values()))[:3]
    # a, a, b, c, c: collapsed history [a, b, c]; the context is (b, c); a is dropped
    items = _items_of_clusters(ws, [a, a, b, c, c])
    found = ws.recommend([*items, "never-seen"], k=5)
    assert found.history == [a, b, c] and tuple(found.context) == (b, c)
    assert found.unknown_items == ["never-seen"] and found.excluded == [a]
    assert len(found.clusters) == 5 and not set(found.clusters) & {a, b, c}
    served = ws.lookup_batch(np.array([[b, c]]), 8).ids[0].tolist()
    assert found.clusters == [x for x in served if x != a][:5]
    # exclude="context": exactly the table's list
    assert ws.recommend(items, k=5, exclude="context").clusters == served[:5]
    assert cluster_history(["x", "y"], {"x": 1, "y": 1}) == ([1], [])
    # One known cluster: the table's backoff for it; none known: popularity (cold start).
    one = ws.recommend(_items_of_clusters(ws, [a, a]), k=3)
    assert one.context == [a] and one.level == "last" and a not in one.clusters and len(one.clusters) == 3
    backoff = ws.reader().backoff
    assert backoff is not None
    assert one.clusters == [int(c) for c in backoff.by_last[a] if c >= 0 and c != a][:3]
    cold = ws.recommend(["never-seen"], k=3)
    assert cold.level == "popularity" and cold.unknown_items == ["never-seen"]
    assert cold.clusters == [int(c) for c in backoff.popular if c >= 0][:3]
    # With each cluster's most popular items.
    top = ws.recommend(items, k=2, top_items=2)
    assert top.popular_items is not None and set(top.popular_items) == set(top.clusters)
    for cluster, popular in top.popular_items.items():
        assert popular and all(ws.item_clusters()[i] == cluster for i in popular)
    assert ws.popular_items(top.clusters[0], 2) == top.popular_items[top.clusters[0]]


def test_recommend_from_the_shell(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = sorted(set(ws.item_clusters().values()))[:2]
    items = _items_of_clusters(ws, [a, b])
    code, out, err = run_cli(capsys, "recommend", str(ws.root), "--items", ",".join(items), "-k", "3", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["context"] == [a, b] and len(payload["clusters"]) == 3
    code, out, err = run_cli(capsys, "recommend", str(ws.root), "--items", f"{items[0]},nope", "--top-items", "1")
    assert code == 0, err
    assert "[last]" in out and "(e.g. " in out and "nope" in err
    code, out, err = run_cli(capsys, "recommend", str(ws.root), "--items", " , ")
    assert code == 2 and "--items names no item" in err


def test_the_export_holds_every_context_with_its_version_and_checksums(
        ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "export"
    code, printed, err = run_cli(capsys, "export", str(ws.root), "--out", str(out))
    assert code == 0, err
    assert f"exported table {ws.current()['table']}" in printed  # type: ignore[index]
    manifest = json.loads((out / "manifest.json").read_text())
    n = len(ws.catalog())
    assert manifest["table"] == ws.current()["table"] and manifest["rows"] == n * (n - 1)  # type: ignore[index]
    assert manifest["catalog_hash"] == ws.catalog().hash
    lines = [json.loads(line) for line in (out / "table.jsonl").read_text().splitlines()]
    assert len(lines) == n * (n - 1)
    contexts = np.array([[r["c1"], r["c2"]] for r in lines])
    served = ws.lookup_batch(contexts, manifest["k"])
    assert [r["clusters"] for r in lines] == served.ids.tolist()
    items = (out / "items.csv").read_text().splitlines()
    assert items[0] == "item,cluster" and len(items) - 1 == len(ws.item_clusters())
    assert verify_export(out) == []
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out.iterdir())
    with open(out / "items.csv", "a") as fh:
        fh.write("tampered,0\n")
    assert verify_export(out) == [f"{out / 'items.csv'}: checksum differs from the manifest's"]
    # never into a folder that holds something, and nothing half-written is left behind
    with pytest.raises(HybridrecError, match="must be new or empty"):
        export_table(ws.reader(), ws.catalog(), ws.item_clusters(), out)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".export")) == []


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_export_reads_back_in_each_format(ws: Workspace, tmp_path: Path, fmt: str) -> None:
    import pandas as pd

    out = tmp_path / fmt
    manifest = export_table(ws.reader(), ws.catalog(), ws.item_clusters(), out, fmt=fmt)  # type: ignore[arg-type]
    assert manifest["table_file"] == f"table.{fmt}" and verify_export(out) == []
    frame = pd.read_csv(out / "table.csv") if fmt == "csv" else pd.read_parquet(out / "table.parquet")
    assert len(frame) == manifest["rows"]
    contexts = frame[["c1", "c2"]].to_numpy()
    served = ws.lookup_batch(contexts, manifest["k"]).ids.tolist()
    got = ([[int(x) for x in str(v).split("|")] for v in frame["clusters"]] if fmt == "csv"
           else [list(v) for v in frame["clusters"]])
    assert got == served


def _until(done: Any, tries: int = 600) -> None:
    import time

    for _ in range(tries):
        if done():
            return
        time.sleep(0.05)
    raise AssertionError("the readers never got there")


def _get(base: str, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(base + path, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_http_service_answers_and_never_mixes_versions_during_updates(
        ws: Workspace, fake_plugins: Any, tmp_path: Path) -> None:
    server, port = serve_in_thread(Workspace(ws.root))
    base = f"http://127.0.0.1:{port}"
    try:
        code, health = _get(base, "/health")
        assert code == 200 and health["table"] == ws.current()["table"]  # type: ignore[index]
        code, got = _get(base, "/lookup?c1=0&c2=1&k=4")
        assert code == 200 and got["clusters"] == list(ws.lookup(0, 1, 4).clusters) and got["level"] == "pair"
        a, b = sorted(set(ws.item_clusters().values()))[:2]
        items = ",".join(_items_of_clusters(ws, [a, b]))
        code, got = _get(base, f"/recommend?items={items}&k=3&top_items=1")
        assert code == 200 and got["context"] == [a, b] and len(got["clusters"]) == 3
        assert set(got["popular_items"]) == {str(c) for c in got["clusters"]}
        code, got = _get(base, "/version")
        assert code == 200 and got["table"] == got["manifest"]["version"] == health["table"]
        for path, needle in (("/lookup?c1=0&c2=0", "must differ"), ("/lookup?c1=0", "'c2'"),
                             ("/lookup?c1=0&c2=1&k=x", "integer"), ("/lookup?c1=0&c2=999", "'c2'"),
                             ("/recommend?items=", "'items'"), ("/recommend?items=a,b&exclude=z", "'exclude'"),
                             ("/recommend?items=a&k=0", "'k'")):
            code, got = _get(base, path)
            assert code == 400 and needle in got["error"], (path, got)
        assert _get(base, "/nothing")[0] == 404

        # Readers keep asking while two updates promote new tables.
        answers: list[tuple[str, list[int]]] = []
        stop = threading.Event()

        def ask() -> None:
            while not stop.is_set():
                code, got = _get(base, "/lookup?c1=2&c2=3&k=5")
                assert code == 200
                answers.append((got["table"], got["clusters"]))

        readers = [threading.Thread(target=ask) for _ in range(3)]
        for thread in readers:
            thread.start()
        _until(lambda: len(answers) > 0)  # the first table is being read
        for day in (3, 6):
            log = fake_plugins.write_log(tmp_path / f"feb{day}.csv", FEB + timedelta(days=day - 3), 3, seed=day)
            run_update(ws, log, now=FEB + timedelta(days=day))
        last = ws.current()["table"]  # type: ignore[index]
        _until(lambda: any(v == last for v, _ in answers))  # ... and the last one
        stop.set()
        for thread in readers:
            thread.join()
    finally:
        server.should_exit = True
    versions = {version for version, _ in answers}
    assert len(versions) >= 2  # answers from before and after the promotions
    for version in versions:  # each answer is exactly its version's row
        table = ws._open_table(version)
        expected = table.lookup_batch(np.array([[2, 3]]), 5).ids[0].tolist()
        assert all(clusters == expected for v, clusters in answers if v == version)


class ShortSnapshot:
    """Wraps a snapshot and returns one evidence row fewer than asked (a broken third-party store)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.id, self.window, self.manifest = inner, inner.id, inner.window, inner.manifest

    def evidence(self, contexts: np.ndarray, m: int | None = None) -> Any:
        batch = self.inner.evidence(contexts, m)
        return batch.take(np.arange(max(0, len(batch) - 1)))


class ShortStorePlugin:
    from hybridrec import hookimpl

    @hookimpl
    def register_knowledge_stores(self, register: Any) -> None:
        from typing import ClassVar

        from hybridrec.testing.fakes import FakeStore

        class ShortStore(FakeStore):
            name: ClassVar[str] = "short-store"

            def open(self, path: Path) -> Any:
                return ShortSnapshot(super().open(path))

            def build(self, transitions: Any, window: Any, out_dir: Path) -> Any:
                return ShortSnapshot(super().build(transitions, window, out_dir))

        register(ShortStore)


def test_a_store_that_returns_too_few_evidence_rows_is_named(
        fake_plugins: Any, hybridrec_plugin: Any, tmp_path: Path, config_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    hybridrec_plugin(ShortStorePlugin(), "short-store")
    config = load_config(config_file, overrides=["knowledge_store.plugin=short-store"])
    ws = Workspace.init(tmp_path / "short", config)
    log = fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31)
    code, _, err = run_cli(capsys, "update", str(ws.root), "--data", str(log), "--now", "2000-02-01")
    assert code == 2 and "Traceback" not in err
    assert "knowledge store 'short-store' returned" in err and "evidence rows for" in err


def test_the_serve_bench_runs_a_live_server_through_promotions() -> None:
    from hybridrec.plugins import registry
    from hybridrec.serving.loadbench import serve_suite

    assert "serve" in registry().bench_suites
    result = serve_suite(quick=True, clients=2)
    assert result["requests"] > 0 and result["errors"] == 0
    assert result["tables_promoted_during_run"] >= 1 and result["table_versions_answered"] >= 2
    assert result["lookup_answers_checked"] > 0 and result["mixed_version_answers"] == 0
