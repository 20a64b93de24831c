"""A small HTTP service over a workspace's served table (``hybridrec serve WS``).

Endpoints (``GET``, JSON answers):

* ``/lookup?c1=3&c2=17&k=5`` — the top ``k`` clusters for the context, with the backoff level;
* ``/recommend?items=a,b,c&k=5&exclude=history`` — :meth:`~hybridrec.workspace.Workspace.recommend`
  for a user's recent items (oldest first);
* ``/health`` — the served table version and catalog size (503 when no table is served).

Every answer names the table ``version`` it was read from, and each answer is read from one
table version: a request takes the workspace's reader once (one immutable version), so an update
that promotes a new table while requests run never mixes two versions in one answer; requests
after the promotion read the new one. Bad parameters get a 400 with a message naming the
parameter. The server uses the standard library's threading HTTP server: one thread per request;
put a reverse proxy in front of it for TLS and authentication.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import numpy as np

from hybridrec.errors import HybridrecError
from hybridrec.serving.base import LEVELS
from hybridrec.serving.recommend import recommend

if TYPE_CHECKING:
    from hybridrec.workspace import Workspace

MAX_K = 100


class BadRequest(HybridrecError):
    """A request parameter is missing or invalid (answered with 400)."""


def _one(query: dict[str, list[str]], name: str, default: str | None = None) -> str:
    values = query.get(name)
    if not values:
        if default is None:
            raise BadRequest(f"missing parameter {name!r}")
        return default
    return values[-1]


def _int(query: dict[str, list[str]], name: str, default: str | None = None, *,
         low: int = 0, high: int | None = None) -> int:
    raw = _one(query, name, default)
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"parameter {name!r} must be an integer, got {raw[:40]!r}") from None
    if value < low or (high is not None and value > high):
        raise BadRequest(f"parameter {name!r} must be in {low}..{high if high is not None else ''}, "
                         f"got {value}")
    return value


class Service:
    """The request logic, independent of the HTTP plumbing (tested directly and through HTTP)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def _table(self) -> tuple[Any, str]:
        version, reader = self.ws.served_reader()
        return reader, version

    def health(self) -> dict[str, Any]:
        reader, version = self._table()
        return {"status": "ok", "table": version, "clusters": reader.n_clusters,
                "problem": self.ws.serving_problem}

    def lookup(self, query: dict[str, list[str]]) -> dict[str, Any]:
        reader, version = self._table()
        n = reader.n_clusters
        c1 = _int(query, "c1", high=n - 1)
        c2 = _int(query, "c2", high=n - 1)
        if c1 == c2:
            raise BadRequest("parameters 'c1' and 'c2' must differ")
        k = _int(query, "k", "5", low=1, high=MAX_K)
        rankings, levels = reader.lookup_batch_with_levels(np.asarray([[c1, c2]], dtype=np.int64), k)
        ids = rankings.ids[0]
        keep = ids >= 0
        return {"table": version, "context": [c1, c2], "clusters": ids[keep].tolist(),
                "scores": [float(x) for x in rankings.scores[0][keep]],
                "level": LEVELS[int(levels[0])]}

    def recommend(self, query: dict[str, list[str]]) -> dict[str, Any]:
        items = [i for i in _one(query, "items").split(",") if i.strip()]
        if not items:
            raise BadRequest("parameter 'items' names no item")
        k = _int(query, "k", "5", low=1, high=MAX_K)
        exclude = _one(query, "exclude", "history")
        if exclude not in ("history", "context"):
            raise BadRequest(f"parameter 'exclude' must be 'history' or 'context', got {exclude[:40]!r}")
        reader, version = self._table()
        try:
            found = recommend(reader, self.ws.catalog(), self.ws.item_clusters(), items, k,
                              exclude=exclude)  # type: ignore[arg-type]
        except HybridrecError as exc:
            raise BadRequest(str(exc)) from None
        return {"table": version, **found.model_dump(mode="json")}


def make_server(ws: Workspace, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """A threading HTTP server answering :class:`Service`'s endpoints (not started)."""
    service = Service(ws)

    class Handler(BaseHTTPRequestHandler):
        server_version = "hybridrec"

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            return

        def _send(self, code: int, payload: dict[str, Any]) -> None:
            body = (json.dumps(payload) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # the http.server protocol names it
            url = urlparse(self.path)
            query = parse_qs(url.query)
            routes = {"/health": lambda: service.health(), "/lookup": lambda: service.lookup(query),
                      "/recommend": lambda: service.recommend(query)}
            route = routes.get(url.path)
            if route is None:
                self._send(404, {"error": f"no endpoint {url.path!r}; try /lookup, /recommend, /health"})
                return
            try:
                self._send(200, route())
            except BadRequest as exc:
                self._send(400, {"error": str(exc)})
            except HybridrecError as exc:  # no table yet, or none intact
                self._send(503, {"error": str(exc)})

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_thread(ws: Workspace, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start :func:`make_server` in a daemon thread (``port=0`` picks a free port: read
    ``server.server_address``); stop it with ``server.shutdown()``."""
    server = make_server(ws, host, port)
    thread = threading.Thread(target=server.serve_forever, name="hybridrec-serve", daemon=True)
    thread.start()
    return server, thread


__all__ = ["MAX_K", "BadRequest", "Service", "make_server", "serve_in_thread"]
