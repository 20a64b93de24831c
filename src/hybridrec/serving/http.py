"""The HTTP service over a workspace's served table (``hybridrec serve WS``; the ``serve`` extra).

Endpoints (``GET``, JSON answers):

* ``/recommend?items=a,b,c&k=5&exclude=history&top_items=0`` — :meth:`~hybridrec.workspace.Workspace.recommend`
  for a user's recent items (oldest first);
* ``/lookup?c1=3&c2=17&k=5`` — the top ``k`` clusters for a context, with the backoff level;
* ``/health`` — ``ok`` with the served table version (503 when no intact table is served);
* ``/version`` — the served table version and its manifest.

Every answer names the table ``version`` it was read from, and each is read from one version:
a request takes the workspace's reader once (one immutable version, verified against its
manifest before first use: a damaged version is never served), so an update that promotes a new
table while requests run never mixes two versions in one answer, and the next request reads the
new one without a restart. Bad parameters get a 400 naming the parameter.

Why Starlette on uvicorn: an ASGI app of a few routes needs no more than Starlette (FastAPI's own
core, without the validation layer these four query strings do not need), and uvicorn with
``httptools`` and ``uvloop`` is the standard production ASGI server; both are small, pure
dependencies of the ``serve`` extra. Handlers are ``async`` and answer from memory-mapped or
SQLite reads of well under a millisecond, so one event loop serves many clients; run several
processes behind a proxy for more, and put TLS and authentication in the proxy.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from hybridrec.errors import HybridrecError
from hybridrec.serving.recommend import BadItems

if TYPE_CHECKING:
    from hybridrec.workspace import Workspace

MAX_K = 100


class BadRequest(HybridrecError):
    """A request parameter is missing or invalid (answered with 400)."""


def _one(query: Any, name: str, default: str | None = None) -> str:
    value = query.get(name)
    if value is None or value == "":
        if default is None:
            raise BadRequest(f"missing parameter {name!r}")
        return default
    return str(value)


def _int(query: Any, name: str, default: str | None = None, *, low: int = 0,
         high: int | None = None) -> int:
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
    """The request logic, independent of the HTTP plumbing. ``query`` is any mapping of
    parameter names to strings."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def _table(self) -> tuple[Any, str]:
        version, reader = self.ws.served_reader()
        return reader, version

    def health(self) -> dict[str, Any]:
        reader, version = self._table()
        return {"status": "ok", "table": version, "clusters": reader.n_clusters,
                "problem": self.ws.serving_problem}

    def version(self) -> dict[str, Any]:
        _, version = self._table()
        return {"table": version, "manifest": self.ws.store.get("tables", version).manifest}

    def lookup(self, query: Any) -> dict[str, Any]:
        reader, version = self._table()
        n = reader.n_clusters
        c1 = _int(query, "c1", high=n - 1)
        c2 = _int(query, "c2", high=n - 1)
        if c1 == c2:
            raise BadRequest("parameters 'c1' and 'c2' must differ")
        k = _int(query, "k", "5", low=1, high=MAX_K)
        found = reader.lookup((c1, c2), k)
        return {"table": version, **found.model_dump(mode="json")}

    def recommend(self, query: Any) -> dict[str, Any]:
        items = [i for i in _one(query, "items").split(",") if i.strip()]
        if not items:
            raise BadRequest("parameter 'items' names no item")
        k = _int(query, "k", "5", low=1, high=MAX_K)
        exclude = _one(query, "exclude", "history")
        if exclude not in ("history", "context"):
            raise BadRequest(f"parameter 'exclude' must be 'history' or 'context', got {exclude[:40]!r}")
        top = _int(query, "top_items", "0", low=0, high=MAX_K)
        reader, version = self._table()
        try:
            found = self.ws.recommend(items, k, exclude=exclude, top_items=top,  # type: ignore[arg-type]
                                      reader=reader)
        except BadItems as exc:  # the items cannot support a recommendation
            raise BadRequest(str(exc)) from None
        return {"table": version, **found.model_dump(mode="json")}


def make_app(ws: Workspace) -> Any:
    """The Starlette app answering :class:`Service`'s endpoints."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    service = Service(ws)

    def endpoint(answer: Any) -> Any:
        async def handle(request: Request) -> JSONResponse:
            try:
                return JSONResponse(answer(request.query_params))
            except BadRequest as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except HybridrecError as exc:  # no table yet, or none intact
                return JSONResponse({"error": str(exc)}, status_code=503)

        return handle

    routes = [
        Route("/recommend", endpoint(service.recommend)),
        Route("/lookup", endpoint(service.lookup)),
        Route("/health", endpoint(lambda _q: service.health())),
        Route("/version", endpoint(lambda _q: service.version())),
    ]
    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"no endpoint {request.url.path!r}; try /recommend, "
                                      "/lookup, /health, /version"}, status_code=404)

    return Starlette(routes=routes, exception_handlers={404: not_found})


def _server(ws: Workspace, host: str, port: int) -> Any:
    import uvicorn

    config = uvicorn.Config(make_app(ws), host=host, port=port, log_level="warning",
                            access_log=False, lifespan="off")
    return uvicorn.Server(config)


def serve(ws: Workspace, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve until interrupted (uvicorn in this process)."""
    _server(ws, host, port).run()


def serve_in_thread(ws: Workspace, host: str = "127.0.0.1", port: int = 0) -> tuple[Any, int]:
    """Start the server in a daemon thread; returns ``(server, port)`` (``port=0`` picks a free
    one). Stop it with ``server.should_exit = True``."""
    server = _server(ws, host, port)
    thread = threading.Thread(target=server.run, name="hybridrec-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise HybridrecError(f"the HTTP server did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, int(bound)


__all__ = ["MAX_K", "BadRequest", "Service", "make_app", "serve", "serve_in_thread"]
