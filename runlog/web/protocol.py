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

Everything is read generically (:mod:`runlog.reducers.graph`): runlog imports no
adapter and no LangGraph code.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
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

__all__ = ["protocol_routes", "v3_sse"]

_DIGITS = re.compile(r"[0-9]{1,19}")


def v3_sse(event: dict[str, Any]) -> bytes:
    """One protocol event as an SSE message (``id:`` its seq, ``event:`` its method)."""
    method = re.sub(r"[\r\n]", " ", str(event.get("method", "message")))
    return (b"id: " + str(event.get("seq")).encode() + b"\nevent: " + method.encode()
            + b"\ndata: " + encode(event, lossy=True) + b"\n\n")


def _int(text: str, what: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"{what} {text[:40]!r} is not a protocol seq (a whole number)")
    return int(text)


async def _follow(store: Store, run_id: str, since: int, channels: frozenset[str] | None,
                  namespace: list[str] | None) -> AsyncIterator[bytes]:
    yield b"retry: 1000\n\n"
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
        return StreamingResponse(_follow(store, rid, since, channels, namespace),
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
