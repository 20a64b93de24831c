"""The core without any extra, in an environment of its own that `make core-check` builds (the
project alone, plus pytest and hypothesis): nothing heavy is there, and a platform team's
commands work. Run by `make core-check` (and CI), never inside the project's venv."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

HEAVY = ("torch", "transformers", "peft", "safetensors", "annoy", "matplotlib", "starlette", "uvicorn")


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "hybridrec", *args], capture_output=True, text=True,
                          timeout=600)
    if ok and done.returncode != 0:
        raise SystemExit(f"hybridrec {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


def main() -> None:
    present = [m for m in HEAVY if importlib.util.find_spec(m) is not None]
    assert not present, f"the core environment has {present}: not a core-only install"

    listed = cli("plugins")
    assert "not installed: plugin 'hf'" in listed.stderr and "hybridrec[hf]" in listed.stderr, listed.stderr
    assert "not installed: plugin 'lora'" in listed.stderr, listed.stderr
    assert "markov" not in listed.stderr

    with tempfile.TemporaryDirectory(prefix="hybridrec-core-") as tmp:
        root = Path(tmp)
        study = root / "study.toml"
        study.write_text('dataset = "synthetic"\nbootstrap = 100\n'
                         "dataset_options = { n_interactions = 6000, days = 40, n_clusters = 10 }\n")
        cli("backtest", "--config", str(study), "--arms", "markov-all,markov-best,popularity",
            "--start", "2000-01-21", "--end", "2000-02-01", "--quiet", "--out", str(root / "report"))
        report = json.loads((root / "report" / "report.json").read_text())
        assert [a["name"] for a in report["arms"]] == ["markov-all", "markov-best", "popularity"]
        assert "hybridrec[report]" in report["plots_skipped"]

        # A workspace (built here with the package's test fakes, numpy only) served by the core.
        from hybridrec.config import load_config
        from hybridrec.engine import run_update
        from hybridrec.plugins import register_plugin
        from hybridrec.testing import fakes
        from hybridrec.types import UTC
        from hybridrec.workspace import Workspace

        register_plugin(fakes, name="core-check-fakes")
        config = root / "ws.toml"
        config.write_text(fakes.workspace_config())
        ws = Workspace.init(root / "ws", load_config(config))
        run_update(ws, fakes.write_log(root / "jan.csv", datetime(2000, 1, 1, tzinfo=UTC), 31),
                   now=datetime(2000, 2, 1, tzinfo=UTC))
        looked = json.loads(cli("lookup", str(ws.root), "0", "1", "--json").stdout)
        assert looked["clusters"] == list(ws.lookup(0, 1, 5).clusters)
        items = sorted(ws.item_clusters())[:4]
        found = json.loads(cli("recommend", str(ws.root), "--items", ",".join(items), "--json").stdout)
        assert found["clusters"], found
        cli("export", str(ws.root), "--out", str(root / "export"))
        cli("export", str(ws.root), "--out", str(root / "export-parquet"), "--format", "parquet")
        refused = cli("serve", str(ws.root), ok=False)
        assert refused.returncode == 2 and "hybridrec[serve]" in refused.stderr, refused.stderr
    print("core-only check: plugins listed with their extras, a counting backtest, lookup, "
          "recommend, export (jsonl, parquet) all work; serve names its extra")


if __name__ == "__main__":
    main()
