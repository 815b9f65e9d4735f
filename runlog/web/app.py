"""The web viewer's ASGI application: two pages, a JSON API and a live event stream.

Routes (``docs/web.md`` has the details)::

    GET /                              the runs list (static page; data from the API)
    GET /runs/{run_id}                 one run: tree, details, streamed text, timeline
    GET /static/...                    the page's own JS, CSS and icon (package data)
    GET /api/info                      the store's location and the version
    GET /api/runs?q=&name=&type=&tag=&meta=KEY=VALUE&status=&all=&limit=&tokens=
    GET /api/tokens?run=ID&run=ID...   token counts (for rows listed with tokens=cached)
    GET /api/runs/{run_id}             the run and its descendants
    GET /api/runs/{run_id}/events?after=&limit=
    GET /api/runs/{run_id}/export?format=jsonl|otlp|chrome   (formats runlog.exporters has)
    GET /api/runs/{run_id}/content?run=ID...  inputs and outputs of the subtree, readable
    GET /api/runs/{run_id}/state?seq=  the RunState as of a seq (the page's scrubber)
    GET /compare?a=&b=                 two runs side by side (static page)
    GET /api/compare?a=&b=             runlog diff of two runs, with both sides' values
    GET /api/stream?after=&run=&kinds=&until_end=&idle_timeout=   Server-Sent Events

The HTML pages are fixed files with no data in them: every value a user recorded
reaches the browser as JSON and is put in the page with ``textContent``, so a run name
or a token holding HTML shows as text. A Content-Security-Policy allowing only the
app's own scripts backs that up, and requests whose ``Host`` is not the address the
server was bound to are refused (a web page elsewhere cannot read the log through DNS
rebinding).
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.to_thread
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from runlog.api import Store
from runlog.errors import RunlogError, UnknownRunError
from runlog.web.content import compare, run_content, state_at
from runlog.web.export import ExportResponse
from runlog.web.model import (
    MAX_LIMIT,
    Previews,
    RunsQuery,
    TokenCounter,
    events_page,
    list_runs,
    run_detail,
    store_unavailable,
    token_counts,
)
from runlog.web.stream import EventStream, parse_kinds

__all__ = [
    "LOOPBACK_HOSTS",
    "MAX_SEQ",
    "close_streams",
    "create_app",
    "error_answer",
    "export_formats",
    "host_of",
]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_SECURITY_HEADERS = [
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]

_EXPORT_TYPES = {
    "jsonl": ("application/x-ndjson", "jsonl"),
    "otlp": ("application/json", "otlp.json"),
    "chrome": ("application/json", "trace.json"),
}


def export_formats() -> tuple[str, ...]:
    """The export formats :mod:`runlog.exporters` provides in this installation."""
    try:
        from runlog.exporters import FORMATS
    except ImportError:  # pragma: no cover - exporters ship with the package
        return ()
    return tuple(f for f in FORMATS if f in _EXPORT_TYPES)


class _SecurityHeaders:
    """Adds the CSP and friends to every response (pages, API and static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def host_of(header: str) -> str:
    """The host part of a ``Host`` header: ``[::1]:8765`` -> ``::1``, ``a:80`` -> ``a``."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        return header[1:end] if end > 0 else ""
    return header.split(":", 1)[0]


class _HostCheck:
    """Refuses requests whose ``Host`` is not one the server was bound for (400).

    A page on another site can point its own host name at 127.0.0.1 (DNS rebinding)
    and then read from a local server as if same-origin; its requests still carry
    that foreign name in ``Host``, so they are refused here.
    """

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app = app
        self.allowed = frozenset(host_of(h) if h.startswith("[") else h.lower()
                                 for h in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = ""
            for key, value in scope["headers"]:
                if key == b"host":
                    host = host_of(value.decode("latin-1"))
                    break
            if host not in self.allowed:
                response = PlainTextResponse(
                    f"runlog serve answers only to {', '.join(sorted(self.allowed))}: "
                    "this request's Host header names another site", status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _page(name: str) -> bytes:
    return importlib.resources.files("runlog.web").joinpath("templates", name).read_bytes()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


MAX_SEQ = 2**63 - 1
"""The largest ``seq`` a store can hold (a signed 64-bit column on every backend):
cursors beyond it are refused with 400 instead of overflowing in the driver."""
MAX_IDLE_TIMEOUT = 86_400.0
_DIGITS = re.compile(r"[0-9]{1,19}")
_INTEGER = re.compile(r"-?[0-9]{1,19}")


def _int_param(request: Request, name: str, default: int, *, low: int = 0,
               high: int = MAX_SEQ) -> int:
    text = request.query_params.get(name, "")
    if text == "":
        return default
    value = int(text) if _INTEGER.fullmatch(text) else None
    if value is None or not low <= value <= high:
        raise ValueError(f"{name} {text[:40]!r} is not a whole number between {low} and "
                         f"{high}")
    return value


def _last_event_id(text: str) -> int:
    """The seq a reconnecting EventSource saw last (the SSE ``id:`` we sent)."""
    if not _DIGITS.fullmatch(text) or int(text) > MAX_SEQ:
        raise ValueError(f"Last-Event-ID {text[:40]!r} is not a seq (a whole number "
                         f"from 0 to {MAX_SEQ}); drop the header to follow from now")
    return int(text)


def _idle_timeout(text: str) -> float | None:
    """Seconds without an event before the stream closes; ``None``: stay open."""
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_IDLE_TIMEOUT:  # also refuses nan and inf
        raise ValueError(f"idle_timeout {text[:40]!r} must be a number of seconds from 0 "
                         f"to {MAX_IDLE_TIMEOUT:g}; leave it out to keep the stream open")
    return value


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def error_answer(exc: Exception) -> Response | None:
    """The JSON answer for an error a request ran into; ``None`` for a bug (500).

    An unknown run is 404; the store failing is 503, runlog's store errors and the
    database drivers' errors alike (:func:`~runlog.web.model.store_unavailable`);
    anything else the request asked for that cannot be (a bad parameter, an ambiguous
    id prefix) is 400.
    """
    if isinstance(exc, UnknownRunError):
        return _error(404, str(exc))
    if store_unavailable(exc):
        return _error(503, f"the store cannot be read: {type(exc).__name__}: {exc}")
    if isinstance(exc, ValueError | RunlogError):
        return _error(400, str(exc))
    return None


def _api(fn: Callable[..., Any]) -> Callable[[Request], Any]:
    """Answers a handler's errors with :func:`error_answer`."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        try:
            result: Response = await fn(request)
            return result
        except Exception as e:
            answer = error_answer(e)
            if answer is None:
                raise
            return answer

    return wrapper


def create_app(store: Store, *, allowed_hosts: Sequence[str] | None = LOOPBACK_HOSTS,
               keepalive: float = 15.0) -> Starlette:
    """The viewer for one open store (the caller keeps and closes the store).

    Args:
        store: the store to show.
        allowed_hosts: ``Host`` header values to accept; ``None`` accepts any (only
            for a server bound to a non-loopback address on purpose).
        keepalive: seconds of silence before an SSE keepalive comment.
    """
    tokens = TokenCounter(store)
    previews = Previews()
    streams: set[anyio.CancelScope] = set()

    async def runs_page(request: Request) -> Response:
        return Response(_page("runs.html"), media_type="text/html; charset=utf-8")

    async def run_page(request: Request) -> Response:
        return Response(_page("run.html"), media_type="text/html; charset=utf-8")

    @_api
    async def api_info(request: Request) -> Response:
        from runlog import __version__

        return _json({"location": store.location, "version": __version__,
                      "export_formats": list(export_formats())})

    @_api
    async def api_runs(request: Request) -> Response:
        params = {k: request.query_params.getlist(k) for k in request.query_params}
        query = RunsQuery.from_params(params)
        return _json(await anyio.to_thread.run_sync(list_runs, store, query, tokens,
                                                    previews))

    @_api
    async def api_tokens(request: Request) -> Response:
        ids = request.query_params.getlist("run")
        return _json(await anyio.to_thread.run_sync(token_counts, store, ids, tokens))

    @_api
    async def api_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        detail = await anyio.to_thread.run_sync(run_detail, store, run_id, tokens)
        detail["export_formats"] = list(export_formats())
        return _json(detail)

    @_api
    async def api_events(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        after = _int_param(request, "after", 0)
        limit = _int_param(request, "limit", MAX_LIMIT, low=1, high=MAX_LIMIT)
        body = await anyio.to_thread.run_sync(events_page, store, run_id, after, limit)
        return Response(body, media_type="application/json")

    @_api
    async def api_content(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        only = request.query_params.getlist("run")
        return _json(await anyio.to_thread.run_sync(run_content, store, run_id, only))

    @_api
    async def api_state(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        seq = _int_param(request, "seq", -1) if request.query_params.get("seq") else None
        return _json(await anyio.to_thread.run_sync(state_at, store, run_id, seq))

    async def compare_page(request: Request) -> Response:
        return Response(_page("compare.html"), media_type="text/html; charset=utf-8")

    @_api
    async def api_compare(request: Request) -> Response:
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        if not a or not b:
            raise ValueError("compare needs two runs: ?a=RUN_ID&b=RUN_ID")
        return _json(await anyio.to_thread.run_sync(compare, store, a, b))

    @_api
    async def api_export(request: Request) -> Response | ExportResponse:
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in export_formats():
            raise ValueError(f"format {fmt!r} is not available; choose from "
                             f"{', '.join(export_formats()) or 'none (no exporters)'}")
        rid = await anyio.to_thread.run_sync(store.resolve_run_id,
                                             request.path_params["run_id"])
        media_type, suffix = _EXPORT_TYPES[fmt]
        return ExportResponse(store, fmt, rid, media_type=media_type,
                              filename=f"run-{rid}.{suffix}", on_error=error_answer)

    @_api
    async def api_stream(request: Request) -> Response | EventStream:
        last_id = request.headers.get("last-event-id", "").strip()
        # A reconnecting EventSource resumes after what it saw.
        after = (_last_event_id(last_id) if last_id
                 else _int_param(request, "after", -1, low=-1))
        kinds = parse_kinds(request.query_params.get("kinds"))
        until_end = request.query_params.get("until_end", "") in ("1", "true", "yes")
        idle = _idle_timeout(request.query_params.get("idle_timeout", ""))
        run = request.query_params.get("run") or None
        setup = await anyio.to_thread.run_sync(_stream_setup, store, run, after)
        if setup["closed"] and until_end:
            # Nothing will follow: 204 tells EventSource to stop reconnecting.
            return Response(status_code=204)
        return EventStream(store, after=setup["after"], run_id=setup["run_id"], kinds=kinds,
                           until_end=until_end and setup["run_id"] is not None,
                           idle_timeout=idle, keepalive=keepalive, registry=streams)

    static = StaticFiles(packages=[("runlog.web", "static")])
    routes: list[BaseRoute] = [
        Route("/", runs_page),
        Route("/runs/{run_id}", run_page),
        Route("/api/info", api_info),
        Route("/api/runs", api_runs),
        Route("/api/tokens", api_tokens),
        Route("/api/runs/{run_id}", api_run),
        Route("/api/runs/{run_id}/events", api_events),
        Route("/api/runs/{run_id}/export", api_export),
        Route("/api/runs/{run_id}/content", api_content),
        Route("/api/runs/{run_id}/state", api_state),
        Route("/compare", compare_page),
        Route("/api/compare", api_compare),
        Route("/api/stream", api_stream),
        Mount("/static", app=static, name="static"),
    ]
    middleware = [Middleware(_SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(_HostCheck, allowed=allowed_hosts))
    app = Starlette(routes=routes, middleware=middleware)
    app.state.streams = streams
    return app


def close_streams(app: Starlette) -> int:
    """End every open event stream of ``app`` (call it in the server's event loop).

    uvicorn waits for open responses when it shuts down, and an event stream never
    ends by itself; closing them first lets Ctrl-C stop the server at once. Returns
    how many were open.
    """
    streams: set[anyio.CancelScope] = app.state.streams
    for scope in list(streams):
        scope.cancel()
    return len(streams)


def _stream_setup(store: Store, run: str | None, after: int) -> dict[str, Any]:
    """Resolve what a stream follows (404 for an unknown run); ``after=-1`` is "now"."""
    if after < 0:
        after = store.last_seq()
    if run is None:
        return {"closed": False, "after": after, "run_id": None}
    info = store.run_info(run)
    closed = info.end_seq is not None and after >= info.end_seq
    return {"closed": closed, "after": after, "run_id": info.run_id}
