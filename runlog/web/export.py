"""``GET /api/runs/{id}/export``: an export streamed to the client as it is produced.

The exporter (:func:`runlog.exporters.export`, the same call ``runlog export`` makes)
runs in a thread of its own and writes into a :class:`Pipe`, a small bounded queue of
chunks that the response sends one by one. So the first bytes leave as soon as the
exporter wrote them, nothing is spooled to disk, and memory stays at a few chunks per
download whatever the run's size: when the client reads slowly the queue fills and
the exporter waits (back-pressure); when the client goes away the exporter's next
write raises and the thread ends.

A failure before the first chunk (the store unavailable, say) still gets a proper
JSON error answer; after it, the ``200`` is sent already, so the response is cut
without its final chunk and the client sees an incomplete download (a JSONL file
also lacks its trailer, which ``runlog verify``/``import`` refuse).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from runlog.api import Store

__all__ = ["ExportResponse", "Pipe"]

_log = logging.getLogger("runlog.web")

_END: Any = object()


class _ClientGone(Exception):
    """Raised into the exporter's write when nobody reads the export any more."""


class Pipe:
    """A write-only binary file the exporter thread fills and the response drains.

    Writes are gathered into chunks of at least ``chunk_bytes`` (the Chrome exporter
    writes each trace event separately); at most ``depth`` chunks wait in the queue.
    """

    def __init__(self, *, depth: int = 4, chunk_bytes: int = 1 << 16) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._gone = threading.Event()
        self._parts: list[bytes] = []
        self._size = 0
        self.chunk_bytes = chunk_bytes
        self.name = "<web download>"

    # -- the exporter's side (its own thread) -------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._gone.is_set():
            raise _ClientGone
        n = len(data)
        if n:
            self._parts.append(bytes(data))
            self._size += n
            if self._size >= self.chunk_bytes:
                self._push()
        return n

    def flush(self) -> None:
        if self._gone.is_set():
            raise _ClientGone
        if self._parts:
            self._push()

    def _push(self) -> None:
        chunk = b"".join(self._parts)
        self._parts, self._size = [], 0
        self._put(chunk)

    def _put(self, item: Any) -> None:
        # Blocks while the client is behind. close() sets _gone before it empties the
        # queue, so a put that raced with it finds room and the next write raises.
        if not self._gone.is_set():
            self._queue.put(item)

    def run(self, produce: Callable[[Pipe], object]) -> None:
        """Run ``produce(self)`` and hand its end (or its exception) to the reader."""
        try:
            produce(self)
            self.flush()
        except _ClientGone:
            return
        except BaseException as e:  # handed to the response, which decides
            self._put(e)
            return
        self._put(_END)

    # -- the response's side ----------------------------------------------------
    async def get(self) -> Any:
        """The next chunk, an exception the exporter raised, or the end marker."""
        return await anyio.to_thread.run_sync(self._queue.get, abandon_on_cancel=True)

    def close(self) -> None:
        """The reader is done (finished, failed or gone): stop and release the writer."""
        self._gone.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        try:  # wakes a get() that was abandoned on cancellation
            self._queue.put_nowait(_END)
        except queue.Full:  # pragma: no cover - the queue was just emptied
            pass


class ExportResponse:
    """The ASGI response of one export download (see the module docstring).

    Args:
        store: the open store.
        fmt: ``jsonl``, ``otlp`` or ``chrome``.
        run_id: the full id of the run to export (with its descendants).
        media_type: the response's content type.
        filename: the download's file name.
        on_error: the JSON answer for an exception raised before the first chunk, or
            ``None`` to let it propagate (a bug: the server answers 500).
    """

    def __init__(self, store: Store, fmt: str, run_id: str, *, media_type: str,
                 filename: str, on_error: Callable[[Exception], Response | None]) -> None:
        self.store = store
        self.fmt = fmt
        self.run_id = run_id
        self.media_type = media_type
        self.filename = filename
        self.on_error = on_error

    def _produce(self, pipe: Pipe) -> None:
        from runlog.exporters import export

        export(self.store, self.fmt, pipe, run_id=self.run_id)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pipe = Pipe()
        thread = threading.Thread(target=pipe.run, args=(self._produce,),
                                  name=f"runlog-web-export-{self.run_id[:8]}", daemon=True)
        thread.start()
        try:
            item = await pipe.get()
            if isinstance(item, Exception):
                answer = self.on_error(item)
                if answer is None:
                    raise item
                await answer(scope, receive, send)
                return
            if isinstance(item, BaseException):
                raise item
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", self.media_type.encode()),
                (b"content-disposition",
                 f'attachment; filename="{self.filename}"'.encode()),
                (b"cache-control", b"no-store"),
            ]})
            while item is not _END:
                if isinstance(item, BaseException):
                    # Cut the response: without its last chunk the client cannot take
                    # a partial file for a whole one.
                    _log.warning("export of run %s stopped after the first bytes: %s: %s",
                                 self.run_id, type(item).__name__, item)
                    return
                await send({"type": "http.response.body", "body": item, "more_body": True})
                item = await pipe.get()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            pipe.close()
