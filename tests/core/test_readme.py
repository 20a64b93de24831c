"""The README's Python blocks work as a newcomer pastes them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.integration
def test_the_quickstart_deploys_the_preset_and_serves_novel_clusters(tmp_path: Path) -> None:
    (tmp_path / "quickstart.py").write_text(BLOCKS[0])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "quickstart.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "[('fine_tune', 'ok'), ('refresh_knowledge', 'ok'), ('regenerate_table', 'ok')]"
    assert len(eval(lines[1])) == 5  # five cluster descriptions


def test_the_plugin_example_registers_and_decides(hybridrec_plugin) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime

    import hybridrec
    from hybridrec.types import SystemState

    namespace: dict[str, object] = {"__name__": "readme_plugin"}
    exec(compile(BLOCKS[1], str(README), "exec"), namespace)
    module = type(sys)("readme_plugin")
    module.__dict__.update(namespace)
    hybridrec_plugin(module, "readme-plugin")
    clock = datetime(2000, 2, 1, tzinfo=UTC)
    actions = hybridrec.build("update_policy", "daily").decide(SystemState(now=clock, data_until=clock))
    assert [a.kind for a in actions] == ["refresh_knowledge", "regenerate_table"]
