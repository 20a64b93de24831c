"""The ``fault`` benchmark suite (``hybridrec bench fault --json``): SIGKILL ``init`` and ``update``.

Each run is a subprocess of the real CLI (:mod:`hybridrec.testing.crash_driver`, the fake
plugins slowed by ``sleep`` options so an update takes a fraction of a second of work), killed
with SIGKILL

* ``named``: at a named point (:data:`~hybridrec.testing.crash_driver.INIT_POINTS`,
  :data:`~hybridrec.testing.crash_driver.UPDATE_POINTS`), cycled;
* ``step``: just before a random durable file-system step (``fsync``/``replace``/``rename``),
  numbered out of the steps a reference run takes;
* ``timer`` (updates only): from outside, at a random moment of the command's work (after the
  driver has loaded its plugins and says ``ready``), uniform over the first 80 % of the shorter
  of two reference runs (a run that finishes first counts as ``finished_before_kill``).

All random choices come from one seed. After each kill the suite checks, in this process:

* the workspace opens, and ``hybridrec status --json`` exits 0, or 1 with the damage listed
  (anything else, a traceback included, is a *stuck* workspace);
* every version the ``state`` names passes :func:`hybridrec.artifacts.verify` with ``deep=True``,
  and the served table is exactly the old or the new one (otherwise a *torn* version);
* recovery works through the CLI: after an update, ``hybridrec update`` with the same data
  succeeds, serves the new table, and leaves no ``.staging-*`` folder and no unreferenced data
  version; after an init, the folder is either a complete, empty workspace (``status`` ok, and
  an ``update`` on it succeeds) or absent, and ``hybridrec init`` then succeeds and leaves no
  ``.NAME.init-*`` sibling. A failed recovery is a *stuck* workspace.

Targets (issue 15): 0 torn versions and 0 stuck workspaces over ≥ 100 killed runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.testing.crash_driver import INIT_POINTS, UPDATE_POINTS
from hybridrec.testing.fakes import workspace_config

#: Runs of the full suite; ``--quick`` runs :data:`QUICK_RUNS`.
FULL_RUNS = {"init": 40, "update": 80}
QUICK_RUNS = {"init": 4, "update": 8}
#: The fakes' per-call sleeps (seconds): an update then does about half a second of work.
SLEEPS = {"generator": 0.005, "fine_tuner": 0.1, "knowledge_store": 0.06}

JAN_NOW = "2000-02-01"
FEB_NOW = "2000-03-03"
KINDS = (("catalog", "catalog"), ("adapter", "adapters"), ("knowledge", "knowledge"), ("table", "tables"))


def _pythonpath() -> str:
    """The folders this process imports hybridrec and its built-in plugins from, first."""
    roots: list[str] = []
    for name in ("hybridrec", "hybridrec_policies"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            root = str(Path(spec.origin).resolve().parents[1])
            if root not in roots:
                roots.append(root)
    rest = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([*roots, *([rest] if rest else [])])


def _env(point: str = "", *, ready: bool = False, count: bool = False) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": _pythonpath(), "HF_HUB_OFFLINE": "1",
           "HYBRIDREC_LOAD_PLUGINS": "datasets,policies,costs,executors", "HYBRIDREC_KILL_AT": point}
    env.pop("HYBRIDREC_DRIVER_READY", None)
    env.pop("HYBRIDREC_COUNT_STEPS", None)
    if ready:
        env["HYBRIDREC_DRIVER_READY"] = "1"
    if count:
        env["HYBRIDREC_COUNT_STEPS"] = "1"
    return env


def _driver(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "hybridrec.testing.crash_driver", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.strip() == "hybridrec-driver: ready":
            return
    raise RuntimeError("the crash driver exited before it was ready")


def _reference(argv: list[str]) -> tuple[float, int]:
    """Run the driver once without a kill: seconds of work after ``ready``, and durable steps."""
    proc = _driver(argv, _env(ready=True, count=True))
    _wait_ready(proc)
    started = time.perf_counter()
    _, err = proc.communicate(timeout=300)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"reference run {argv[0]} failed ({proc.returncode}): {err[-2000:]}")
    steps = [int(line.split()[-1]) for line in err.splitlines() if line.startswith("hybridrec-driver: steps")]
    return seconds, steps[-1] if steps else 0


def _killed_run(argv: list[str], mode: str, arg: Any) -> int:
    """Run the driver, killed as ``mode`` says; its exit code (-9 when the kill landed)."""
    if mode == "timer":
        proc = _driver(argv, _env(ready=True))
        _wait_ready(proc)
        time.sleep(float(arg))
        proc.send_signal(signal.SIGKILL)
    else:
        proc = _driver(argv, _env(f"step:{arg}" if mode == "step" else str(arg)))
    proc.communicate(timeout=300)
    return proc.returncode


def _cli(argv: list[str]) -> tuple[int, str]:
    """``hybridrec ARGV`` in this process: exit code (``-1`` for a traceback) and stdout."""
    from hybridrec.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception as exc:  # a traceback: never acceptable
            code = -1
            err.write(f"{type(exc).__name__}: {exc}")
    return code, out.getvalue() + err.getvalue()


@contextlib.contextmanager
def _fakes_registered() -> Iterator[None]:
    from hybridrec.plugins import get_plugin_manager, register_plugin, unregister_plugin
    from hybridrec.testing import fakes

    if get_plugin_manager().is_registered(fakes):
        yield
        return
    name = register_plugin(fakes, "fault-bench-fakes")
    try:
        yield
    finally:
        unregister_plugin(name)


def _served(root: Path) -> np.ndarray:
    from hybridrec.generation import all_contexts
    from hybridrec.workspace import Workspace

    ws = Workspace(root)
    try:
        return ws.lookup_batch(all_contexts(len(ws.catalog())), 5).ids
    finally:
        ws.close()


def _torn_versions(root: Path) -> list[str]:
    """The versions the state names that fail a deep checksum verification."""
    from hybridrec.artifacts import verify
    from hybridrec.workspace import Workspace

    ws = Workspace(root)
    try:
        current = ws.current() or {}
        named = [(folder, current[kind]) for kind, folder in KINDS if current.get(kind)]
        named += [("data", v) for v in current.get("data") or []]
        torn = []
        for folder, version in named:
            try:
                verify(ws.store.get(folder, version).path, deep=True)
            except Exception as exc:
                torn.append(f"{folder} {version}: {type(exc).__name__}: {exc}")
        return torn
    finally:
        ws.close()


def _check(root: Path, trial: dict[str, Any]) -> bool:
    """Open the workspace and run ``status``: False (and ``trial['stuck']`` says why) when it
    cannot be opened or ``status`` neither exits 0 nor reports the damage."""
    from hybridrec.workspace import Workspace

    try:
        Workspace(root).close()
    except Exception as exc:
        trial["stuck"] = f"does not open: {type(exc).__name__}: {exc}"
        return False
    code, out = _cli(["status", str(root), "--json"])
    trial["status_exit"] = code
    if code == 1:
        try:
            trial["status_problems"] = json.loads(out[: out.rindex("}") + 1]).get("problems")
        except ValueError:
            trial["stuck"] = f"status exits 1 without a JSON report: {out[-300:]}"
            return False
    elif code != 0:
        trial["stuck"] = f"status exits {code}: {out[-300:]}"
        return False
    return True


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.glob("**/.staging-*"))


def _update_trial(base: Path, root: Path, feb: Path, mode: str, arg: Any,
                  old: np.ndarray, new: np.ndarray) -> dict[str, Any]:
    trial: dict[str, Any] = {"command": "update", "mode": mode, "at": arg}
    shutil.copytree(base, root)
    argv = ["update", str(root), "--data", str(feb), "--now", FEB_NOW]
    trial["exit"] = _killed_run(argv, mode, arg)
    trial["torn"] = []
    if not _check(root, trial):
        return trial
    trial["torn"] = _torn_versions(root)
    try:
        ids = _served(root)
    except Exception as exc:  # nothing servable although the old version was whole
        trial["stuck"] = f"lookup fails: {type(exc).__name__}: {exc}"
        return trial
    is_old, is_new = np.array_equal(ids, old), np.array_equal(ids, new)
    trial["outcome"] = "new" if is_new else "old" if is_old else "mixed"
    if trial["outcome"] == "mixed":
        trial["torn"].append("the served table is neither the old nor the new one")
    code, out = _cli(argv)
    if code != 0:
        trial["stuck"] = f"the recovering update exits {code}: {out[-500:]}"
        return trial
    trial["torn"] += [f"after recovery: {t}" for t in _torn_versions(root)]
    if not np.array_equal(_served(root), new):
        trial["stuck"] = "the recovering update does not serve the new table"
    if _leftovers(root):
        trial["stuck"] = f"staging folders left after recovery: {_leftovers(root)}"
    from hybridrec.workspace import Workspace

    ws = Workspace(root)
    data = {v.id for v in ws.store.versions("data")}
    trial["unreferenced_data_after_recovery"] = len(data - set((ws.current() or {}).get("data") or []))
    ws.close()
    return trial


def _init_trial(root: Path, config: Path, jan: Path, mode: str, arg: Any) -> dict[str, Any]:
    trial: dict[str, Any] = {"command": "init", "mode": mode, "at": arg, "torn": []}
    trial["exit"] = _killed_run(["init", str(root), "--config", str(config)], mode, arg)
    if root.exists():
        trial["outcome"] = "complete"
        if not _check(root, trial):
            return trial
        if trial.get("status_exit") != 0:
            trial["stuck"] = f"a fresh workspace reports damage: {trial.get('status_problems')}"
            return trial
        code, out = _cli(["update", str(root), "--data", str(jan), "--now", JAN_NOW])
        if code != 0:
            trial["stuck"] = f"update on the killed init's workspace exits {code}: {out[-500:]}"
            return trial
        trial["torn"] = _torn_versions(root)
    else:
        trial["outcome"] = "absent"
        code, out = _cli(["init", str(root), "--config", str(config)])
        if code != 0:
            trial["stuck"] = f"init after a killed init exits {code}: {out[-500:]}"
            return trial
        if not _check(root, trial) or trial.get("status_exit") != 0:
            trial.setdefault("stuck", "status after the rerun init reports damage")
            return trial
    left = sorted(p.name for p in root.parent.glob(f".{root.name}.init-*"))
    if left:
        trial["stuck"] = f"init staging folders left: {left}"
    return trial


def _plan(n: int, points: list[str], steps: int, rng: random.Random, *,
          timer_seconds: float | None) -> list[tuple[str, Any]]:
    """``n`` kills: a quarter at named points (cycled), the rest split between random durable
    steps and (with ``timer_seconds``) random moments."""
    n_named = max(1, n // 4) if n >= 2 else 0
    rest = n - n_named
    n_timer = rest * 2 // 3 if timer_seconds is not None else 0
    plan: list[tuple[str, Any]] = [("named", points[i % len(points)]) for i in range(n_named)]
    plan += [("timer", round(rng.uniform(0.0, 0.8) * (timer_seconds or 0.0), 4)) for _ in range(n_timer)]
    plan += [("step", rng.randint(1, max(1, steps))) for _ in range(rest - n_timer)]
    rng.shuffle(plan)
    return plan


def run_fault_bench(n_init: int, n_update: int, *, seed: int = 0, sleeps: dict[str, float] | None = None,
                    workdir: Path | None = None, log: Any = None) -> dict[str, Any]:
    """Kill ``n_init`` inits and ``n_update`` updates (see the module docstring); counts, and
    the details of every trial that tore a version or left a workspace stuck."""
    from hybridrec.testing.fakes import write_log
    from hybridrec.types import UTC

    say = log or (lambda msg: print(f"bench fault: {msg}", file=sys.stderr, flush=True))
    rng = random.Random(seed)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hybridrec-bench-fault-")))
        stack.enter_context(_fakes_registered())
        config = workdir / "pipeline.toml"
        config.write_text(workspace_config(sleeps={**SLEEPS, **(sleeps or {})}))
        jan = write_log(workdir / "jan.csv", datetime(2000, 1, 1, tzinfo=UTC), 31)
        feb = write_log(workdir / "feb.csv", datetime(2000, 2, 1, tzinfo=UTC), 31, seed=3)

        say("reference runs (init, update, update)")
        base, reference = workdir / "base", workdir / "reference"
        init_seconds, init_steps = _reference(["init", str(base), "--config", str(config)])
        code, out = _cli(["update", str(base), "--data", str(jan), "--now", JAN_NOW])
        if code != 0:
            raise RuntimeError(f"the first update of the base workspace failed: {out[-2000:]}")
        runs = []
        for _ in range(2):  # the shorter of two, so that most timed kills land
            shutil.rmtree(reference, ignore_errors=True)
            shutil.copytree(base, reference)
            runs.append(_reference(["update", str(reference), "--data", str(feb), "--now", FEB_NOW]))
        update_seconds, update_steps = min(runs)
        old, new = _served(base), _served(reference)
        if np.array_equal(old, new):
            raise RuntimeError("the old and the new table are identical: outcomes would be ambiguous")

        trials: list[dict[str, Any]] = []
        jobs = [("init", m, a) for m, a in _plan(n_init, INIT_POINTS, init_steps, rng, timer_seconds=None)]
        jobs += [("update", m, a) for m, a in _plan(n_update, UPDATE_POINTS, update_steps, rng,
                                                    timer_seconds=update_seconds)]
        for i, (command, mode, arg) in enumerate(jobs):
            root = workdir / f"t{i}"
            if command == "init":
                trial = _init_trial(root, config, jan, mode, arg)
            else:
                trial = _update_trial(base, root, feb, mode, arg, old, new)
            trials.append(trial)
            if trial["torn"] or trial.get("stuck"):
                say(f"trial {i} {command} {mode} {arg}: torn {trial['torn']} stuck {trial.get('stuck')}")
            if (i + 1) % 10 == 0:
                say(f"{i + 1}/{len(jobs)} runs")
            shutil.rmtree(root, ignore_errors=True)

    def count(command: str) -> dict[str, Any]:
        mine = [t for t in trials if t["command"] == command]
        killed = [t for t in mine if t["exit"] == -signal.SIGKILL]
        return {
            "runs": len(mine),
            "killed": len(killed),
            "finished_before_kill": sum(t["exit"] == 0 for t in mine),
            "failed_otherwise": sum(t["exit"] not in (0, -signal.SIGKILL) for t in mine),
            "by_mode": dict(Counter(t["mode"] for t in mine)),
            "outcomes": dict(Counter(str(t.get("outcome", "unchecked")) for t in killed)),
            "status_reported_damage": sum(t.get("status_exit") == 1 for t in mine),
            "torn_runs": sum(bool(t["torn"]) for t in mine),
            "stuck": sum(bool(t.get("stuck")) for t in mine),
        }

    init, update = count("init"), count("update")
    return {
        "seed": seed,
        "killed_runs": init["killed"] + update["killed"],
        "torn_versions": sum(len(t["torn"]) for t in trials),
        "stuck_workspaces": init["stuck"] + update["stuck"],
        "init": init,
        "update": update,
        "update_outcome_old": update["outcomes"].get("old", 0),
        "update_outcome_new": update["outcomes"].get("new", 0),
        "init_outcome_absent": init["outcomes"].get("absent", 0),
        "init_outcome_complete": init["outcomes"].get("complete", 0),
        "unreferenced_data_after_recovery": sum(t.get("unreferenced_data_after_recovery", 0) for t in trials),
        "reference_update_work_seconds": round(update_seconds, 3),
        "reference_init_seconds": round(init_seconds, 3),
        "durable_steps": {"init": init_steps, "update": update_steps},
        "failures": [t for t in trials if t["torn"] or t.get("stuck")][:20],
        "seconds": round(time.perf_counter() - started, 1),
    }


def fault_suite(quick: bool) -> dict[str, Any]:
    """SIGKILL `init` and `update` at random and named moments: torn versions, stuck workspaces
    (target 0 and 0 over ≥ 100 kills)."""
    runs = QUICK_RUNS if quick else FULL_RUNS
    seed = int(os.environ.get("HYBRIDREC_BENCH_FAULT_SEED", "0"))
    return run_fault_bench(runs["init"], runs["update"], seed=seed)


__all__ = [
    "FULL_RUNS",
    "QUICK_RUNS",
    "SLEEPS",
    "fault_suite",
    "run_fault_bench",
]
