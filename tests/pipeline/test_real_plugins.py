"""End to end with the real reference plugins: ``hf`` (tiny) + ``lora`` + ``annoy``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from hybridrec import plugins
from hybridrec.config import load_config
from hybridrec.engine import run_update
from hybridrec.generation import all_contexts
from hybridrec.types import UTC
from hybridrec.workspace import Workspace

CONFIG = """
[generator]
plugin = "hf"
options = { preset = "tiny" }
[fine_tuner]
plugin = "lora"
options = { max_steps = 4, batch_size = 32, guardrail_samples = 16, holdout_max = 64 }
[knowledge_store]
plugin = "annoy"
[update_policy]
plugin = "hybrid"
[serving]
k = 5
"""


RERANK = Path(__file__).resolve().parents[2] / "examples" / "pipelines" / "rerank.toml"
#: The preset's stack with fine-tunes small enough for a test.
SMALL = """
[fine_tuner.options]
max_examples = 2000
base_epochs = 1
guardrail_samples = 16
holdout_max = 64
[initial_fine_tune.options]
max_examples = 2000
base_epochs = 1
[serving]
k = 5
"""


def _config(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.toml"
    if kind == "default":
        path.write_text(CONFIG)
    else:  # the demo's learned stack (the example file starts from the preset)
        path.write_text(RERANK.read_text() + SMALL)
    return path


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["default", "rerank"])
def test_workspace_update_with_the_reference_plugins(tmp_path: Path, kind: str) -> None:
    registry = plugins.registry()
    for role, name in (("generator", "hf"), ("fine_tuner", "lora"), ("knowledge_store", "annoy")):
        if name not in registry.names(role):
            pytest.skip(f"the reference {role} plugin {name!r} is not installed yet")
    from hybridrec.testing import fakes

    ws = Workspace.init(tmp_path / "ws", load_config(_config(kind, tmp_path)))
    log = fakes.write_log(tmp_path / "jan.csv", datetime(2000, 1, 1, tzinfo=UTC), 31, users=20, per_user=15)
    report = run_update(ws, log, now=datetime(2000, 2, 1, tzinfo=UTC))
    kinds = [(a.kind, a.status) for a in report.actions]
    assert kinds[0][0] == "fine_tune" and kinds[0][1] in {"ok", "held"}
    if kinds[0][1] == "held":  # an untrained base is never served
        assert kinds[1:] == [("refresh_knowledge", "ok"), ("regenerate_table", "failed")]
        assert ws.current().get("table") is None  # type: ignore[union-attr]
        return
    assert kinds[1:] == [("refresh_knowledge", "ok"), ("regenerate_table", "ok")]
    served = ws.lookup_batch(all_contexts(len(ws.catalog())), 5)
    served.validate()
    assert (served.ids[:, 0] >= 0).all()
    records: Any = ws.ledger.records()
    assert records[0].flops > 0 and records[0].action == "fine_tune"


@pytest.mark.integration
def test_an_untrained_model_is_never_served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The first fine-tune is held (a recall floor no model reaches): no table is built from the
    untrained base, and `update` says so and exits 1."""
    from hybridrec.cli import main
    from hybridrec.testing import fakes

    path = tmp_path / "pipeline.toml"
    path.write_text(CONFIG.replace("[serving]", "[guardrails]\nmin_recall = 1.0\n[serving]"))
    main(["init", str(tmp_path / "ws"), "--config", str(path)])
    log = fakes.write_log(tmp_path / "jan.csv", datetime(2000, 1, 1, tzinfo=UTC), 31, users=20, per_user=15)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["update", str(tmp_path / "ws"), "--data", str(log), "--now", "2000-02-01"])
    assert exit_info.value.code == 1
    out, err = capsys.readouterr()
    assert "fine_tune          held" in out and "regenerate_table   failed" in out
    assert "no adapter has passed its guardrails" in err and "untrained base model" in err
    ws = Workspace(tmp_path / "ws")
    assert (ws.current() or {}).get("table") is None and (ws.current() or {}).get("held_adapters")
