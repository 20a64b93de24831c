"""``hybridrec new-plugin``: a generated package registers, is listed, passes its generated tests
and runs as a free-named arm of a backtest study, with its name in the report table.

Nothing is installed into the environment: each generated package is made visible to the
subprocesses as a distribution on their PYTHONPATH (its ``src`` folder plus a ``.dist-info``
with the entry points of its ``pyproject.toml``), as the ``installed`` fixture of conftest.py
does for examples/third_party_plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridrec.cli import main
from hybridrec.scaffold import ScaffoldError, new_plugin

#: The fake LLM stack (hybridrec.testing.fakes) swapped into the generated study, so the study
#: runs in seconds; the arms, the policy and the window are the generated ones.
FAKE_STACK = """
[llm]
initial_fine_tune_options = {}
[llm.generator]
plugin = "fake-gen"
[llm.fine_tuner]
plugin = "fake-ft"
[llm.knowledge_store]
plugin = "fake-store"
[llm.cost_model]
plugin = "fake-cost"
"""


def distribution(site: Path, name: str, version: str, entry_points: dict[str, str]) -> None:
    """A ``.dist-info`` in ``site`` that ``importlib.metadata`` reads as an installed
    distribution with these ``hybridrec`` entry points."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[hybridrec]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def as_installed(package: Path, site: Path) -> Path:
    """Make the package in ``package`` (a ``src`` layout) a distribution in ``site``; returns
    its ``src`` folder (to put on PYTHONPATH beside ``site``)."""
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    distribution(site, project["name"], project["version"], project["entry-points"]["hybridrec"])
    return package / "src"


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


@pytest.fixture
def generated_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, dict[str, str]]]:
    """``hybridrec new-plugin update_policy my-policy``, its package made an installed
    distribution (with the fake LLM stack as one too) for this process and for subprocesses
    (the environment returned); the plugin manager is rebuilt before and after."""
    from hybridrec import plugins

    main(["new-plugin", "update_policy", "my-policy", "--dir", str(tmp_path)])
    package = tmp_path / "hybridrec-my-policy"
    site = tmp_path / "site"
    src = as_installed(package, site)
    distribution(site, "hybridrec-test-fakes", "0.0.1", {"fakes": "hybridrec.testing.fakes"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(site), str(src), os.environ.get("PYTHONPATH", "")) if p)}
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("HYBRIDREC_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("HYBRIDREC_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    plugins.reset()
    try:
        yield package, env
    finally:
        plugins.reset()
        for module in [m for m in sys.modules if m.startswith("hybridrec_my_policy")]:
            del sys.modules[module]


def test_a_generated_policy_is_listed_passes_its_tests_and_runs_as_a_free_named_arm(
        generated_policy: tuple[Path, dict[str, str]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    package, env = generated_policy
    main(["plugins", "--json"])
    rows = {(r["role"], r["name"]): r for r in json.loads(capsys.readouterr().out)}
    row = rows[("update_policy", "my-policy")]
    assert row["builtin"] is False and row["distribution"] == "hybridrec-my-policy"

    tests = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"], env, package)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "6 passed" in tests.stdout and "skipped" not in tests.stdout  # installed: none skipped

    study = package / "study-fast.toml"
    study.write_text("bootstrap = 100\n" + (package / "study.toml").read_text() + FAKE_STACK)
    out = tmp_path / "report"
    main(["backtest", "--config", str(study), "--out", str(out), "--quiet"])
    report = json.loads((out / "report.json").read_text())
    arms = {a["name"]: a for a in report["arms"]}
    assert list(arms) == ["my-policy", "hybrid", "markov-all"]
    assert arms["my-policy"]["config"]["policy"] == {"plugin": "my-policy",
                                                     "options": {"refresh_every_days": 2.0}}
    reasons = {d["reason"] for day in arms["my-policy"]["per_day"] for d in day["decisions"]}
    assert "knowledge 2 days behind the data" in reasons
    table = (out / "report.md").read_text()
    assert "| my-policy | " in table and "| (reference) |" in table.split("\n| hybrid |")[0]


def test_a_generated_cost_model_passes_its_tests_uninstalled(tmp_path: Path) -> None:
    root = new_plugin("cost_model", "flat-rate", tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(root / "src"), os.environ.get("PYTHONPATH", "")) if p)}
    tests = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"], env, root)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "7 passed, 1 skipped" in tests.stdout  # the by-name lookup needs it installed
    assert "class FlatRateCostModel(CostModel)" in (root / "src/hybridrec_flat_rate/cost.py").read_text()


@pytest.mark.parametrize(("role", "name", "message"), [
    ("generator", "mine", r"update_policy and cost_model plugins, not 'generator'"),
    ("update_policy", "My_Policy", r"lowercase letters and digits"),
])
def test_new_plugin_refuses_what_it_cannot_write(tmp_path: Path, role: str, name: str, message: str) -> None:
    with pytest.raises(ScaffoldError, match=message):
        new_plugin(role, name, tmp_path)


def test_new_plugin_does_not_overwrite_a_folder_unless_forced(tmp_path: Path) -> None:
    root = new_plugin("update_policy", "gate", tmp_path)
    (root / "notes.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="already exists"):
        new_plugin("update_policy", "gate", tmp_path)
    assert new_plugin("update_policy", "gate", tmp_path, force=True) == root
    assert (root / "notes.txt").read_text() == "mine"
