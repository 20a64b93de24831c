"""The ``serve`` bench suite (``hybridrec bench serve --json``): the HTTP service under load while
updates promote new tables.

A workspace is built on the package's test fakes (numpy only, so the numbers are the service's,
not a model's) and served by ``hybridrec serve`` in its own process. Client threads keep HTTP
keep-alive connections and alternate ``/recommend`` (a user's items) and ``/lookup`` (a fixed set
of contexts) for the measured seconds, while another process runs one ``hybridrec update`` after
another (a pause of :data:`PAUSE` seconds between them), promoting new tables all along. Reported: requests per second, p50/p99 latency, errors
(non-200 answers or failed connections), promotions during the run, and mixed-version answers —
each ``/lookup`` answer is checked afterwards against the table of the version it names, so an
answer mixing two versions (or naming one it was not read from) is counted.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.errors import HybridrecError

#: the updater process: one update per day of new data, as fast as it can
UPDATER = """
import sys, time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from hybridrec.engine import run_update
from hybridrec.plugins import register_plugin
from hybridrec.testing import fakes
from hybridrec.workspace import Workspace

register_plugin(fakes, name="bench-fakes")
ws, pause = Workspace(sys.argv[1]), float(sys.argv[2])
start = datetime(2000, 2, 1, tzinfo=timezone.utc)
day = 0
while True:  # until the bench stops it
    log = fakes.write_log(Path(sys.argv[1]).parent / f"day{day}.csv", start + timedelta(days=day), 1, seed=100 + day)
    run_update(ws, log, now=start + timedelta(days=day + 1))
    day += 1
    time.sleep(pause)
"""
#: seconds between the end of one update and the start of the next
PAUSE = 0.2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _workspace(root: Path) -> Any:
    from hybridrec.config import load_config
    from hybridrec.engine import run_update
    from hybridrec.plugins import register_plugin, registry, unregister_plugin
    from hybridrec.testing import fakes
    from hybridrec.types import UTC
    from hybridrec.workspace import Workspace

    # The fakes are registered for building the workspace only (the process's plugins are left
    # as they were: the server and the updater run in processes of their own).
    mine = None if "fake-gen" in registry().names("generator") else register_plugin(fakes, name="bench-fakes")
    try:
        config_file = root / "ws.toml"
        config_file.write_text(fakes.workspace_config() + "keep_versions = 1000\n")
        ws = Workspace.init(root / "ws", load_config(config_file))
        run_update(ws, fakes.write_log(root / "jan.csv", datetime(2000, 1, 1, tzinfo=UTC), 31, users=200),
                   now=datetime(2000, 2, 1, tzinfo=UTC))
    finally:
        if mine is not None:
            unregister_plugin(mine)
    return ws


def _sequence(version: Any) -> int:
    """The sequence number of a version id ``vNNNNNN-digest``."""
    return int(str(version)[1:].split("-", 1)[0])


def serve_suite(quick: bool = False, clients: int = 8) -> dict[str, Any]:
    """Run the load (see the module docstring): 3 s quick, 20 s otherwise."""
    from hybridrec.workspace import Workspace

    seconds = 3.0 if quick else 20.0
    with tempfile.TemporaryDirectory(prefix="hybridrec-bench-serve-") as tmp:
        root = Path(tmp)
        ws = _workspace(root)
        port = _free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        server = subprocess.Popen([sys.executable, "-m", "hybridrec", "serve", str(ws.root),
                                   "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("GET", "/health")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise HybridrecError(f"the server did not start: {server.stderr.read() if server.stderr else ''}")
                time.sleep(0.1)
            items = sorted(ws.item_clusters())
            rng = np.random.default_rng(0)
            users = [",".join(rng.choice(items, size=6, replace=False).tolist()) for _ in range(64)]
            contexts = [(int(a), int(b)) for a, b in rng.integers(0, len(ws.catalog()), (64, 2)) if a != b]
            latencies: list[list[float]] = [[] for _ in range(clients)]
            errors = [0] * clients
            answers: list[list[tuple[str, tuple[int, int], list[int]]]] = [[] for _ in range(clients)]
            stop = threading.Event()

            def client(i: int) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                n = 0
                while not stop.is_set():
                    n += 1
                    lookup = n % 2 == 0
                    ctx = contexts[(n + i) % len(contexts)]
                    path = (f"/lookup?c1={ctx[0]}&c2={ctx[1]}&k=5" if lookup
                            else f"/recommend?items={users[(n + i) % len(users)]}&k=5")
                    t0 = time.perf_counter()
                    try:
                        conn.request("GET", path)
                        response = conn.getresponse()
                        body = response.read()
                        latencies[i].append(time.perf_counter() - t0)
                        if response.status != 200:
                            errors[i] += 1
                        elif lookup:
                            got = json.loads(body)
                            answers[i].append((got["table"], ctx, got["clusters"]))
                    except (OSError, http.client.HTTPException, ValueError):
                        errors[i] += 1
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

            before = (ws.current() or {}).get("table")
            updater = subprocess.Popen([sys.executable, "-c", UPDATER, str(ws.root), str(PAUSE)],
                                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       text=True)
            watcher = Workspace(ws.root)
            deadline = time.monotonic() + 120
            while (watcher.current() or {}).get("table") == before:  # updates are promoting
                if updater.poll() is not None or time.monotonic() > deadline:
                    raise HybridrecError(f"the updater promoted nothing: {updater.stderr.read() if updater.stderr else ''}")
                time.sleep(0.05)
            first_promoted = (watcher.current() or {}).get("table")
            threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            time.sleep(seconds)
            deadline = time.monotonic() + 60
            while (watcher.current() or {}).get("table") == first_promoted and time.monotonic() < deadline:
                time.sleep(0.05)  # the run spans at least one promotion, however slow the machine
            time.sleep(0.5)  # ... and answers after it
            stop.set()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            last_promoted = (watcher.current() or {}).get("table")
            if updater.poll() is not None:
                raise HybridrecError(f"the updater stopped: {updater.stderr.read()[-2000:] if updater.stderr else ''}")
            updater.terminate()
            updater.wait(timeout=60)
        finally:
            server.terminate()
            server.wait(timeout=30)
        every = np.array([x for lat in latencies for x in lat])
        seen = [a for per in answers for a in per]
        fresh = Workspace(ws.root)
        mixed = 0
        expected: dict[tuple[str, tuple[int, int]], list[int]] = {}
        for version, ctx, clusters in seen:
            key = (version, ctx)
            if key not in expected:
                table = fresh._open_table(version)
                expected[key] = table.lookup_batch(np.array([ctx]), 5).ids[0].tolist()
            mixed += clusters != expected[key]
        versions = {v for v, _, _ in seen}
        return {
            "clients": clients,
            "seconds": round(elapsed, 2),
            "requests": int(every.size),
            "requests_per_s": round(every.size / elapsed, 1),
            "p50_ms": round(float(np.percentile(every, 50)) * 1000, 3) if every.size else None,
            "p99_ms": round(float(np.percentile(every, 99)) * 1000, 3) if every.size else None,
            "errors": int(sum(errors)),
            "tables_promoted_during_run": _sequence(last_promoted) - _sequence(first_promoted),
            "table_versions_answered": len(versions),
            "lookup_answers_checked": len(seen),
            "mixed_version_answers": int(mixed),
        }


__all__ = ["serve_suite"]
