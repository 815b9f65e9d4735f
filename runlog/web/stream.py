"""Server-Sent Events: committed events pushed to a browser as they are committed.

One :class:`EventStream` is one ``GET /api/stream`` response. Each committed event is
one SSE message whose ``id:`` is the event's ``seq`` and whose ``data:`` is the line
``runlog replay`` prints for it (the stored envelope with ``seq`` first). A browser's
``EventSource`` that loses the connection reconnects by itself and sends the last id
it saw in ``Last-Event-ID``; the stream resumes strictly after it, so the page misses
nothing and sees nothing twice (the same cursor rule as ``store.tail``).

Besides events, the stream carries:

* ``event: status`` messages, ``{"run_id": ..., "status": "abandoned", ...}``, when
  the tail reports that a followed run's writer died (its lease expired) with the
  run still open. They have no ``id:``, so they never move the cursor;
* an ``event: unavailable`` message, ``{"error": ...}``, when the store fails mid-stream
  (a dropped database connection); the stream then closes, and the browser's
  reconnect either resumes or gets a 503;
* ``: keepalive`` comments when nothing was sent for a while, so proxies and the
  browser keep the connection open and a vanished client is noticed.

The response is a plain ASGI callable rather than a generator wrapped in
``StreamingResponse``: three tasks (events, keepalives, disconnect) share one
``send`` under a lock, and none of them yields from inside a task group.
"""

from __future__ import annotations

import re
import time
from typing import Any

import anyio
import orjson
from starlette.types import Receive, Scope, Send

from runlog.api import Store
from runlog.events import Event
from runlog.tail import TailNotice
from runlog.web.model import event_line, store_unavailable

__all__ = ["KIND_WORDS", "EventStream", "error_message", "parse_kinds", "sse_message",
           "status_message"]

KIND_WORDS = frozenset({"start", "stream", "end", "token", "output", "custom"})
"""What ``kinds=`` may list: event kinds, and stream channels (a stream event on a
listed channel passes even when ``stream`` itself is not listed)."""

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def sse_message(event: Event) -> bytes:
    """One event as an SSE message (``id: seq``, ``data: <event line>``).

    Stored envelopes are compact JSON (no line breaks), but an imported file may hold
    pretty-printed JSON; a line break outside a JSON string is whitespace, so each
    line becomes its own ``data:`` field, which the browser joins with ``\\n``.
    """
    line = event_line(event)
    if b"\n" in line or b"\r" in line:
        data = b"".join(b"data: " + part + b"\n" for part in _LINE_BREAK.split(line))
    else:
        data = b"data: " + line + b"\n"
    return b"id: " + str(event.seq).encode() + b"\n" + data + b"\n"


def status_message(notice: TailNotice) -> bytes:
    """A tail notice as an SSE ``status`` message (no ``id:``: it is not an event)."""
    return b"event: status\ndata: " + orjson.dumps({
        "run_id": notice.run_id, "status": notice.kind, "name": notice.name,
        "cursor": notice.cursor}) + b"\n\n"


def error_message(exc: BaseException) -> bytes:
    """The store failing mid-stream as an SSE ``unavailable`` message (no ``id:``).

    Not ``event: error``: EventSource would take that for its own connection error.
    """
    return b"event: unavailable\ndata: " + orjson.dumps({
        "error": f"the store cannot be read: {type(exc).__name__}: {exc}"}) + b"\n\n"


def parse_kinds(text: str | None) -> frozenset[str] | None:
    """``"start,end,token"`` -> the set; empty means every event.

    Raises:
        ValueError: a word that is neither an event kind nor a stream channel.
    """
    if not text:
        return None
    words = frozenset(w.strip() for w in text.split(",") if w.strip())
    bad = words - KIND_WORDS
    if bad:
        raise ValueError(f"kinds: unknown {', '.join(sorted(bad))}; "
                         f"choose from {', '.join(sorted(KIND_WORDS))}")
    return words or None


class EventStream:
    """The ASGI response of ``GET /api/stream`` (see the module docstring).

    Events come from ``store.atail`` (:mod:`runlog.tail`), which reads from the cursor
    in worker threads, wakes on the backend's change notification, tracks the
    followed run's subtree and reports abandoned runs as
    :class:`~runlog.tail.TailNotice` items, which become ``status`` messages here.

    Args:
        store: the open store.
        after: the cursor: stream events with ``seq > after``.
        run_id: follow this run and its descendants (runs started later included);
            ``None`` follows every run.
        kinds: only these event kinds / stream channels (:func:`parse_kinds`).
        until_end: close the stream after the followed run's end event (or once it is
            reported abandoned).
        idle_timeout: close the stream after this many seconds without an event.
        keepalive: seconds of silence before a ``: keepalive`` comment.
        poll_interval: the tail's fallback re-read when no change notification came
            (notifications wake it at once; this only bounds a missed one).
        registry: a set the stream's cancel scope is in while it runs (the server
            cancels them all when it shuts down, so open pages do not hold it up).
    """

    def __init__(self, store: Store, *, after: int, run_id: str | None = None,
                 kinds: frozenset[str] | None = None, until_end: bool = False,
                 idle_timeout: float | None = None, keepalive: float = 15.0,
                 poll_interval: float = 0.5,
                 registry: set[anyio.CancelScope] | None = None) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.registry = registry
        self.after = after
        self.run_id = run_id
        self.kinds = kinds
        self.until_end = until_end
        self.idle_timeout = idle_timeout
        self.keepalive = keepalive
        self._lock = anyio.Lock()
        self._last_send = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),
            ],
        })
        # retry: how long the browser waits before reconnecting (ms).
        await self._send(send, b"retry: 1000\n: runlog stream after " +
                         str(self.after).encode() + b"\n\n")
        cancel: anyio.CancelScope | None = None
        try:
            async with anyio.create_task_group() as tg:
                cancel = tg.cancel_scope
                if self.registry is not None:  # so a server shutting down can end it
                    self.registry.add(cancel)
                tg.start_soon(self._pump, send, cancel)
                tg.start_soon(self._keepalive, send)
                tg.start_soon(self._watch_disconnect, receive, cancel)
        finally:
            if self.registry is not None and cancel is not None:
                self.registry.discard(cancel)
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client is gone
            pass

    async def _send(self, send: Send, body: bytes) -> None:
        async with self._lock:
            await send({"type": "http.response.body", "body": body, "more_body": True})
            self._last_send = time.monotonic()

    def _wanted(self, e: Event) -> bool:
        kinds = self.kinds
        if kinds is None:
            return True
        kind = e.kind
        return kind in kinds or (kind == "stream" and e.channel in kinds)

    async def _pump(self, send: Send, scope: anyio.CancelScope) -> None:
        try:
            await self._follow(send)
        except Exception as e:
            if not store_unavailable(e):
                raise
            # The 200 is sent already: say why in the stream and close it. The browser
            # reconnects after ``retry`` with Last-Event-ID, and then gets events again,
            # or a 503 while the store stays unavailable.
            await self._send(send, error_message(e))
        scope.cancel()  # the tail ended (until_end, idle_timeout): close the response

    async def _follow(self, send: Send) -> None:
        chunks: list[bytes] = []
        async with self.store.atail(after=self.after, run_id=self.run_id,
                                    until_end=self.until_end,
                                    idle_timeout=self.idle_timeout,
                                    poll_interval=self.poll_interval) as tail:
            async for item in tail:
                if isinstance(item, Event):
                    if self._wanted(item):
                        chunks.append(sse_message(item))
                elif isinstance(item, TailNotice):
                    chunks.append(status_message(item))
                # Items the tail already holds go out in one write with these.
                if chunks and not tail.buffered:
                    await self._send(send, b"".join(chunks))
                    chunks = []
        if chunks:
            await self._send(send, b"".join(chunks))

    async def _keepalive(self, send: Send) -> None:
        while True:
            await anyio.sleep(max(self.keepalive - (time.monotonic() - self._last_send), 0.01))
            if time.monotonic() - self._last_send >= self.keepalive:
                await self._send(send, b": keepalive\n\n")

    async def _watch_disconnect(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message: Any = await receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return
