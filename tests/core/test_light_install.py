"""The core without the extras, simulated in a subprocess of the project's venv: with the extras'
modules unimportable, the CLI lists plugins, runs a backtest of the counting arms, serves a
workspace's table, and names the extra a plugin needs. (`make core-check` checks the same in a
real environment built without them: .ci/core_only_check.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from hybridrec.config import load_config
from hybridrec.engine import run_update
from hybridrec.testing import fakes
from hybridrec.types import UTC
from hybridrec.workspace import Workspace

# Runs the CLI with the extras' modules made unimportable, as if they were not installed.
BLOCKED_CLI = """
import sys
BLOCKED = {"torch", "transformers", "peft", "safetensors", "annoy", "matplotlib", "starlette", "uvicorn"}

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
from hybridrec.cli import main
main(sys.argv[1:])
for name in sorted(sys.modules):
    assert name.split(".")[0] not in BLOCKED, name
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKED_CLI, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


def test_the_core_works_without_the_extras(tmp_path: Path, hybridrec_plugin: Any) -> None:
    listed = run("plugins", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "not installed: plugin 'hf'" in listed.stderr and "hybridrec[hf]" in listed.stderr
    assert "markov" not in listed.stderr and "Traceback" not in listed.stderr

    study = tmp_path / "study.toml"
    study.write_text('dataset = "synthetic"\nbootstrap = 100\n'
                     "dataset_options = { n_interactions = 6000, days = 40, n_clusters = 10 }\n")
    out = tmp_path / "report"
    done = run("backtest", "--config", str(study), "--arms", "markov-all,popularity", "--start",
               "2000-01-21", "--end", "2000-02-01", "--quiet", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert [a["name"] for a in report["arms"]] == ["markov-all", "popularity"]
    assert "hybridrec[report]" in report["plots_skipped"] and report["plots"] == {}

    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text('[generator]\nplugin = "hf"\n')
    refused = run("config", "validate", str(pipeline), cwd=tmp_path)
    assert refused.returncode == 2 and "'hybridrec[hf]'" in refused.stderr
    assert "Traceback" not in refused.stderr

    # A workspace built elsewhere (here with the test fakes) is served by the light core.
    hybridrec_plugin(fakes, "light-fakes")
    config_file = tmp_path / "ws.toml"
    config_file.write_text(fakes.workspace_config())
    ws = Workspace.init(tmp_path / "ws", load_config(config_file))
    run_update(ws, fakes.write_log(tmp_path / "jan.csv", datetime(2000, 1, 1, tzinfo=UTC), 31),
               now=datetime(2000, 2, 1, tzinfo=UTC))
    looked = run("lookup", str(ws.root), "0", "1", "--json", cwd=tmp_path)
    assert looked.returncode == 0, looked.stderr
    assert json.loads(looked.stdout)["clusters"] == list(ws.lookup(0, 1, 5).clusters)
    exported = run("export", str(ws.root), "--out", str(tmp_path / "export"), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
