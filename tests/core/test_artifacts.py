"""Versions appear whole or not at all; corruption is detected; pointers swap atomically."""

import json

import pytest

from hybridrec.artifacts import ArtifactStore, Pointer, verify
from hybridrec.errors import CorruptArtifactError


def test_commit_verify_and_detect_truncation(tmp_path):
    store = ArtifactStore(tmp_path)
    with store.writing("tables", {"rows": 2}) as staging:
        (staging.path / "data.bin").write_bytes(b"x" * 100)
    version = staging.version
    assert version.manifest["rows"] == 2
    assert verify(version.path)["files"]["data.bin"]["bytes"] == 100
    (version.path / "data.bin").write_bytes(b"x" * 50)
    with pytest.raises(CorruptArtifactError, match="truncated"):
        verify(version.path)
    (version.path / "data.bin").write_bytes(b"y" * 100)
    with pytest.raises(CorruptArtifactError, match="checksum"):
        verify(version.path)


def test_failed_write_leaves_nothing_visible(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(RuntimeError), store.writing("tables", {}) as staging:
        (staging.path / "part").write_text("half")
        raise RuntimeError("crash")
    assert store.versions("tables") == []
    assert list((tmp_path / "tables").iterdir()) == []


def test_versions_are_ordered_and_gc_keeps_protected(tmp_path):
    store = ArtifactStore(tmp_path)
    ids = []
    for i in range(4):
        with store.writing("knowledge", {"i": i}) as s:
            (s.path / "f").write_text(str(i))
        ids.append(s.version.id)
    assert [v.id for v in store.versions("knowledge")] == ids
    removed = store.gc("knowledge", keep=1, protect={ids[0]})
    assert removed == ids[1:3]
    assert [v.id for v in store.versions("knowledge")] == [ids[0], ids[3]]
    (tmp_path / "knowledge" / ".staging-leftover").mkdir()
    assert store.clean_staging() == 1


def test_pointer_history_and_rollback(tmp_path):
    pointer = Pointer(tmp_path / "state")
    assert pointer.read() is None
    pointer.write({"table": "v1"})
    pointer.write({"table": "v2"})
    assert pointer.read() == {"table": "v2"}
    assert pointer.rollback() == {"table": "v1"}
    assert json.loads((tmp_path / "state").read_text())["current"] == {"table": "v1"}
    with pytest.raises(CorruptArtifactError, match="no previous version"):
        pointer.rollback()
