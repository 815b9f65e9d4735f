"""LangChain's v3 streaming protocol over SSE, from the log: ``runlog serve`` routes.

``GET /api/runs/{run_id}/protocol`` serves the v3 protocol events a LangGraph run's
``stream_events(version="v3")`` emitted (stored by ``runlog_langgraph`` as
``langgraph:v3`` events on the graph's run) as Server-Sent Events: ``id:`` is the
event's own protocol ``seq``, ``event:`` its method, ``data:`` the event as the codec's
JSON (plain JSON, LangChain objects as ``{"$rl:lc": ...}``). The run is followed live
until it ends, or read from disk when it has ended; a browser that reconnects sends
``Last-Event-ID`` and gets exactly the events after it, so nothing is lost or repeated.

Query: ``since`` (the same as ``Last-Event-ID``, for a first connection), ``channels``
(comma separated protocol channels; ``custom:<name>`` for one named custom stream) and
``namespace`` (``/``-separated namespace prefix), filtered as
``langchain_protocol.EventStreamRequest`` defines them.

``GET /api/runs/{run_id}/graph`` gives the graph's steps (step, nodes and their
updates, state diff, interrupts) as JSON for the run page.

Recorded v3 events are read generically (:mod:`runlog.reducers.graph`): runlog imports
no adapter and no LangGraph code. A run recorded through a plain call (``stream``,
``invoke``, ...) holds no v3 events; ``runlog_langgraph`` derives them from its stored
parts with LangGraph's own transformers, which only an installed LangGraph can run. So
the endpoint asks the *protocol sources* installed packages declare under the entry
point group ``runlog.protocol_sources`` (runlog-langgraph declares one) first: a source
is called as ``source(store, run_id, since=, channels=, namespace=)`` and gives an
iterator of protocol events that follows a live run itself, or raises ``LookupError``
for a run it does not serve. Without a source that serves the run, the recorded events
are served as above. A source is code of an installed package, chosen by whoever
installed it, never named by the store: reading still runs no code a store brings.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from importlib.metadata import entry_points
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from runlog.api import Store
from runlog.codec import encode
from runlog.events import Event
from runlog.reducers.graph import graph_records, graph_steps, v3_event, v3_matches
from runlog.tail import TailNotice

__all__ = ["PROTOCOL_SOURCES", "protocol_routes", "protocol_sources", "v3_sse"]

log = logging.getLogger("runlog")
_DIGITS = re.compile(r"[0-9]{1,19}")

PROTOCOL_SOURCES = "runlog.protocol_sources"
"""The entry point group of protocol sources (module docstring)."""

Source = Callable[..., Iterator[dict[str, Any]]]
_sources: list[Source] | None = None


def protocol_sources() -> list[Source]:
    """The installed protocol sources, by entry point name, loaded once per process (one
    that fails to load is logged and left out: the recorded events are still served)."""
    global _sources
    if _sources is None:
        found: list[Source] = []
        for ep in sorted(entry_points(group=PROTOCOL_SOURCES), key=lambda e: e.name):
            try:
                found.append(ep.load())
            except Exception as e:  # a broken plugin must not break the server
                log.warning("runlog: protocol source %s (%s) could not be loaded: %s",
                            ep.name, ep.value, e)
        _sources = found
    return _sources


def v3_sse(event: dict[str, Any]) -> bytes:
    """One protocol event as an SSE message (``id:`` its seq, ``event:`` its method)."""
    method = re.sub(r"[\r\n]", " ", str(event.get("method", "message")))
    return (b"id: " + str(event.get("seq")).encode() + b"\nevent: " + method.encode()
            + b"\ndata: " + encode(event, lossy=True) + b"\n\n")


def _int(text: str, what: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"{what} {text[:40]!r} is not a protocol seq (a whole number)")
    return int(text)


async def _serve(store: Store, run_id: str, since: int, channels: frozenset[str] | None,
                 namespace: list[str] | None) -> AsyncIterator[bytes]:
    """The SSE body: from the first protocol source that serves the run, else the
    run's recorded events (:func:`_follow`)."""
    yield b"retry: 1000\n\n"
    end: Any = object()
    for source in protocol_sources():
        events = source(store, run_id, since=since or None,
                        channels=sorted(channels) if channels is not None else None,
                        namespace=namespace)
        try:  # a blocking iterator (it may wait for a live run): one step per thread call
            ev = await anyio.to_thread.run_sync(next, events, end)
        except LookupError:
            continue  # not a run this source serves
        try:
            while ev is not end:
                yield v3_sse(ev)
                ev = await anyio.to_thread.run_sync(next, events, end)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                await anyio.to_thread.run_sync(close)
        return
    async for chunk in _follow(store, run_id, since, channels, namespace):
        yield chunk


async def _follow(store: Store, run_id: str, since: int, channels: frozenset[str] | None,
                  namespace: list[str] | None) -> AsyncIterator[bytes]:
    fold: dict[tuple[Any, ...], Any] = {}
    async with store.atail(run_id=run_id, until_end=True) as tail:
        async for item in tail:
            if isinstance(item, TailNotice):
                yield b"event: status\ndata: {\"status\": \"abandoned\"}\n\n"
                return
            if not isinstance(item, Event):
                continue
            for kind, stored in graph_records((item,), run_id):
                if kind != "v3":
                    continue
                ev = v3_event(stored, fold)  # every event is folded, even filtered ones
                if ev is None:
                    continue
                seq = ev.get("seq")
                if isinstance(seq, int) and seq > since and v3_matches(ev, channels,
                                                                        namespace):
                    yield v3_sse(ev)


def protocol_routes(store: Store, on_error: Callable[[Exception], Response | None]
                    ) -> list[BaseRoute]:
    """The routes this module serves, for :func:`runlog.web.app.create_app`."""

    def answer(e: Exception) -> Response:
        got = on_error(e)
        if got is None:
            raise e
        return got

    async def api_protocol(request: Request) -> Response:
        try:
            rid = await anyio.to_thread.run_sync(store.resolve_run_id,
                                                 request.path_params["run_id"])
            last = request.headers.get("last-event-id", "").strip()
            since_q = request.query_params.get("since", "")
            since = _int(last, "Last-Event-ID") if last else (
                _int(since_q, "since") if since_q else 0)
            chans = request.query_params.get("channels")
            channels = frozenset(c.strip() for c in chans.split(",") if c.strip()) \
                if chans else None
            ns_q = request.query_params.get("namespace")
            namespace = [p for p in ns_q.split("/") if p] if ns_q is not None else None
        except Exception as e:
            return answer(e)
        return StreamingResponse(_serve(store, rid, since, channels, namespace),
                                 media_type="text/event-stream; charset=utf-8",
                                 headers={"cache-control": "no-cache",
                                          "x-accel-buffering": "no"})

    async def api_graph(request: Request) -> Response:
        try:
            def read() -> bytes:
                rid = store.resolve_run_id(request.path_params["run_id"])
                steps = graph_steps(graph_records(store.events(rid), rid))
                return encode([{"step": s.step, "updates": [[n, u] for n, u in s.updates],
                                "diff": s.diff, "interrupts": s.interrupts}
                               for s in steps], lossy=True)
            body = await anyio.to_thread.run_sync(read)
        except Exception as e:
            return answer(e)
        return Response(body, media_type="application/json")

    return [Route("/api/runs/{run_id}/protocol", api_protocol),
            Route("/api/runs/{run_id}/graph", api_graph)]
