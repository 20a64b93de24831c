"""A separately distributed package plugs in with no change to hybridrec (examples/third_party_plugin).

Nothing is pip-installed: the example is made visible to subprocesses as a distribution on their
PYTHONPATH (see the ``installed`` fixture in ``tests/core/conftest.py``).
"""

import json
import subprocess
import sys

USE_IT = """
import sys
import numpy as np
from datetime import datetime, timezone
from hybridrec.config import load_config
from hybridrec.plugins import build
from hybridrec.types import ClusterCatalog, TimeWindow, TransitionSet

cfg = load_config(sys.argv[1], environ={})
catalog = ClusterCatalog.from_descriptions(["a x", "b x", "c x", "d x"])
store = build("knowledge_store", cfg.knowledge_store, catalog)
ts = np.array([10, 20, 30, 40])
tset = TransitionSet(np.array([0, 0, 0, 1]), np.array([1, 1, 1, 2]), np.array([2, 3, 2, 3]), ts, ts, 4)
window = TimeWindow(start=datetime.fromtimestamp(0, timezone.utc), end=datetime.fromtimestamp(35, timezone.utc))
snap = store.build(tset, window, sys.argv[2])
again = store.open(sys.argv[2])
ev = again.evidence(np.array([[0, 1], [1, 2], [2, 3]]))
print(ev.cluster.tolist())
"""


def test_installed_plugin_is_listed_and_usable_by_name(installed, tmp_path):
    listing = subprocess.run(
        [sys.executable, "-m", "hybridrec", "plugins", "--json"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    rows = {(r["role"], r["name"]): r for r in json.loads(listing.stdout)}
    row = rows[("knowledge_store", "lastseen")]
    assert row["builtin"] is False
    assert row["distribution"] == "hybridrec-lastseen" and row["version"] == "0.2.0"

    options = subprocess.run(
        [sys.executable, "-m", "hybridrec", "plugins", "--options", "lastseen"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.splitlines()
    assert options[0] == ("knowledge_store lastseen (hybridrec-lastseen 0.2.0, third-party) - "
                          "hybridrec_lastseen.store.LastSeenStore")
    assert options[-2:] == ["  m: int = 1  [ge=1, le=50]", "      successors returned per context"]

    config = tmp_path / "pipeline.toml"
    config.write_text('[knowledge_store]\nplugin = "lastseen"\noptions = { m = 2 }\n')
    used = subprocess.run(
        [sys.executable, "-c", USE_IT, str(config), str(tmp_path / "snap")],
        capture_output=True, text=True, timeout=120,
    )
    assert used.returncode == 0, used.stderr
    # context (0,1): 3 then 2 were seen; 2 last at t=30 > 3 at t=20 -> [2, 3]; (1,2) is after the window
    assert json.loads(used.stdout) == [[2, 3], [-1, -1], [-1, -1]]

    bad = tmp_path / "bad.toml"
    bad.write_text('[knowledge_store]\nplugin = "lastseen"\noptions = { m = "many" }\n')
    result = subprocess.run(
        [sys.executable, "-m", "hybridrec", "config", "validate", str(bad)],
        capture_output=True, text=True, timeout=120,
    )
    assert "knowledge_store plugin 'lastseen'" in result.stderr and "m" in result.stderr
