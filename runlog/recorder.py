"""Recording runs: run handles, scopes, the current run, and the ``trace`` decorator.

A :class:`Run` turns calls into envelopes and queues them on the store's writer; it
never touches the disk, so ``stream()`` and ``await astream()`` cost microseconds and
never block an event loop. Every envelope is built by concatenating the run's header,
encoded once when the run starts, with the event's own parts (:mod:`runlog.events`).

The current run lives in a :class:`contextvars.ContextVar`, so a child started in
another function, in an ``asyncio``/``trio`` task, or in a thread started with the
context copied (``contextvars.copy_context().run``, ``asyncio.to_thread``,
``anyio.to_thread.run_sync``) gets the right parent without passing handles around.

When a root run ends, the scope waits until its events are committed (synchronously
in ``with``, with ``await`` in ``async with``): that is the acknowledgement described
in :mod:`runlog.store.writer`. A failure to commit is logged and counted, never
raised into the recorded code; ``store.flush()`` raises it for callers who ask.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

import anyio.to_thread
import sniffio

from runlog import codec
from runlog.errors import RunStateError, WriteError
from runlog.events import (
    ErrorInfo,
    chain_digest,
    datetime_to_micros,
    encode_run_fields,
    envelope_header,
    make_envelope,
    now_micros,
)
from runlog.ids import new_run_id
from runlog.store.base import Pending
from runlog.store.writer import Writer

__all__ = ["Recorder", "Run", "RunScope", "current_run", "trace"]

log = logging.getLogger("runlog")
P = ParamSpec("P")
R = TypeVar("R")

_current: contextvars.ContextVar[Run | None] = contextvars.ContextVar(
    "runlog_current_run", default=None
)
_AUTO: Any = object()
_new_pending = tuple.__new__
_NO_INPUTS: Any = object()


def current_run() -> Run | None:
    """The innermost run open in this context (task, thread with copied context), if any."""
    return _current.get()


def _in_event_loop() -> bool:
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return False
    return True


def _time_us(time: Any) -> int:
    if time is None:
        return now_micros()
    if isinstance(time, int):
        return time
    return datetime_to_micros(time)


class Recorder:
    """Creates runs for one store; holds the writer they queue their events on."""

    def __init__(self, writer: Writer, *, owner: object = None, end_timeout: float = 30.0):
        self.writer = writer
        self.owner = owner
        self.end_timeout = end_timeout
        self.commit_failures = 0

    def start(
        self,
        name: str,
        run_type: str = "chain",
        *,
        inputs: Any = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        parent: Run | None = _AUTO,
        time: Any = None,
        inherit: bool = True,
        lossy: bool = False,
    ) -> Run:
        """Start a run and queue its start event; returns its handle.

        ``parent`` defaults to the current run when that run belongs to this store.
        With ``inherit`` (the default) a child's tags and metadata start from its
        parent's, as LangChain's config tags and metadata are inherited; adapters that
        already know a run's full tags pass ``inherit=False``.
        """
        if parent is _AUTO:
            cur = _current.get()
            parent = cur if cur is not None and cur._recorder is self else None
        run_tags: list[str] = []
        run_meta: dict[str, Any] = {}
        if parent is not None and inherit:
            run_tags.extend(parent.tags)
            run_meta.update(parent.metadata)
        for t in tags or ():
            if t not in run_tags:
                run_tags.append(t)
        run_meta.update(metadata or {})
        rid = str(run_id) if run_id is not None else new_run_id()
        run = Run(self, rid, parent, name, run_type, run_tags, run_meta)
        run._emit_start(codec.encode(inputs, lossy=lossy), _time_us(time))
        return run

    def scope(self, name: str, run_type: str = "chain", **kwargs: Any) -> RunScope:
        """A context manager that starts the run on entry and ends it on exit."""
        return RunScope(self, name, run_type, kwargs)

    def wait_committed(self) -> None:
        """Wait until the queued events are committed; log (never raise) a failure."""
        try:
            self.writer.flush(self.end_timeout)
        except WriteError as e:
            self.commit_failures += 1
            log.error("runlog: %s", e)

    async def await_committed(self) -> None:
        await anyio.to_thread.run_sync(self.wait_committed)


class Run:
    """A handle on one open run. Thread-safe; every method only queues an event."""

    __slots__ = (
        "__weakref__",
        "_count",
        "_digest",
        "_ended",
        "_fields",
        "_header",
        "_lock",
        "_recorder",
        "_wait_on_exit",
        "id",
        "metadata",
        "name",
        "parent_id",
        "run_type",
        "tags",
        "trace_id",
    )

    def __init__(
        self,
        recorder: Recorder,
        run_id: str,
        parent: Run | None,
        name: str,
        run_type: str,
        tags: list[str],
        metadata: dict[str, Any],
    ) -> None:
        self._recorder = recorder
        self.id: str = run_id
        self.parent_id: str | None = parent.id if parent is not None else None
        self.trace_id: str = parent.trace_id if parent is not None else run_id
        self.name: str = name
        self.run_type: str = run_type
        self.tags: tuple[str, ...] = tuple(tags)
        self.metadata: Mapping[str, Any] = metadata
        self._fields = encode_run_fields(name, run_type, tags, metadata)
        self._header = envelope_header(
            run_id=run_id, parent_id=self.parent_id, trace_id=self.trace_id, fields=self._fields
        )
        self._lock = threading.Lock()
        self._digest: bytes | None = None
        self._count = 0
        self._ended = False
        self._wait_on_exit = False

    def __repr__(self) -> str:
        state = "ended" if self._ended else "open"
        return f"<Run {self.name!r} {self.run_type} {self.id} {state}>"

    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    @property
    def ended(self) -> bool:
        return self._ended

    # -- queueing ------------------------------------------------------------------
    def _put(self, kind: str, raw: bytes, time_us: int, run_row: tuple[Any, ...] | None,
             *, ending: bool = False) -> None:
        with self._lock:
            if self._ended:
                raise RunStateError(
                    f"run {self.name!r} ({self.id}) has already ended; start a new run "
                    "or a child instead of writing to an ended one"
                )
            count = self._count + 1
            if ending:
                run_row = (*cast(tuple[Any, ...], run_row), count)
            digest = chain_digest(self._digest, raw)
            # tuple.__new__ skips NamedTuple's Python-level __new__ on the hot path
            self._recorder.writer.put(_new_pending(Pending, (
                self.id, self.trace_id, kind, self.name, self.run_type, time_us, raw, digest,
                run_row,
            )))
            # only once queued: a refused event (closed store) leaves the chain intact
            self._digest = digest
            self._count = count
            if ending:
                self._ended = True

    def _emit_start(self, inputs: bytes, time_us: int) -> None:
        raw = make_envelope("start", self._header, time_us, inputs)
        self._put("start", raw, time_us, (self.parent_id, self._fields[2], self._fields[3]))

    # -- public API ------------------------------------------------------------------
    def child(self, name: str, run_type: str = "chain", **kwargs: Any) -> RunScope:
        """A scope for a child run of this one (``with run.child("step") as c: ...``)."""
        kwargs["parent"] = self
        return RunScope(self._recorder, name, run_type, kwargs)

    def start_child(self, name: str, run_type: str = "chain", **kwargs: Any) -> Run:
        """Start a child run without a scope; end it with :meth:`end`."""
        return self._recorder.start(name, run_type, parent=self, **kwargs)

    def stream(self, chunk: Any, *, time: Any = None, lossy: bool = False) -> None:
        """Record one chunk of this run's output (its own immutable event).

        Raises:
            EncodingError: the chunk holds a value the codec cannot keep (pass
                ``lossy=True`` to store a documented ``$rl:repr`` marker instead).
        """
        t = now_micros() if time is None else _time_us(time)
        raw = b"".join((b'{"kind":"stream",', self._header, b',"time":', str(t).encode(),
                        b',"data":', codec.encode(chunk, lossy=lossy), b"}"))
        self._put("stream", raw, t, None)

    def token(self, token: str | list[Any], chunk: Any = None, *, time: Any = None) -> None:
        """Record a model token (``channel="token"``), with the model's chunk object if any.

        The token is its text, or a list of content blocks for models that stream them
        (LangChain allows both)."""
        t = time if type(time) is int else _time_us(time)
        # the envelope of make_envelope(..., channel="token") around the encoding of
        # {"token": token, "chunk": chunk}, assembled in one join: this runs per token
        self._put("stream", b"".join((
            b'{"kind":"stream",', self._header, b',"time":', str(t).encode(),
            b',"channel":"token","data":{"token":', codec.encode(token), b',"chunk":',
            codec.encode(chunk), b"}}")), t, None)

    def event(self, name: str, data: Any = None, *, time: Any = None) -> None:
        """Record a custom event dispatched by this run (``channel="custom"``)."""
        t = _time_us(time)
        payload = codec.encode({"name": name, "data": data})
        self._put("stream", make_envelope("stream", self._header, t, payload, channel="custom"),
                  t, None)

    def end(
        self,
        outputs: Any = None,
        *,
        error: BaseException | ErrorInfo | None = None,
        inputs: Any = _NO_INPUTS,
        time: Any = None,
        lossy: bool = False,
    ) -> None:
        """End the run with its outputs, or with an error (outputs may then be partial).

        Ending a root run waits until the trace's events are committed, except in a
        thread running an event loop, where the enclosing ``async with`` (or
        :meth:`aend`) waits instead so the loop is never blocked.
        """
        self._emit_end(outputs, error, inputs, time, lossy)
        if self.is_root:
            if _in_event_loop():
                self._wait_on_exit = True
            else:
                self._recorder.wait_committed()

    def fail(self, error: BaseException | ErrorInfo, outputs: Any = None) -> None:
        """End the run as failed."""
        self.end(outputs, error=error)

    def _emit_end(self, outputs: Any, error: BaseException | ErrorInfo | None, inputs: Any,
                  time: Any, lossy: bool) -> None:
        t = _time_us(time)
        err: ErrorInfo | None
        err = ErrorInfo.from_exception(error) if isinstance(error, BaseException) else error
        err_bytes = codec.encode(err.to_dict()) if err is not None else None
        in_bytes = None if inputs is _NO_INPUTS else codec.encode(inputs, lossy=lossy)
        raw = make_envelope("end", self._header, t, codec.encode(outputs, lossy=lossy),
                            error=err_bytes, inputs=in_bytes)
        self._put("end", raw, t, ("error" if err is not None else "ok", err_bytes), ending=True)

    # async twins: queueing never blocks, only the root's end awaits the commit
    async def astream(self, chunk: Any, *, time: Any = None, lossy: bool = False) -> None:
        self.stream(chunk, time=time, lossy=lossy)

    async def atoken(self, token: str | list[Any], chunk: Any = None, *,
                     time: Any = None) -> None:
        self.token(token, chunk, time=time)

    async def aevent(self, name: str, data: Any = None, *, time: Any = None) -> None:
        self.event(name, data, time=time)

    async def aend(self, outputs: Any = None, *, error: BaseException | ErrorInfo | None = None,
                   inputs: Any = _NO_INPUTS, time: Any = None, lossy: bool = False) -> None:
        self._emit_end(outputs, error, inputs, time, lossy)
        if self.is_root:
            await self._recorder.await_committed()

    async def afail(self, error: BaseException | ErrorInfo, outputs: Any = None) -> None:
        await self.aend(outputs, error=error)

    def _end_on_exit(self, exc: BaseException | None) -> None:
        if self._ended:
            return
        try:
            if exc is not None:
                self._emit_end(None, exc, _NO_INPUTS, None, True)
            else:
                self._emit_end(None, None, _NO_INPUTS, None, True)
        except RunStateError:  # ended concurrently by another thread
            pass
        except WriteError as e:  # the store was closed under the block: never mask the
            log.error("runlog: could not record the end of %r: %s", self.name, e)  # app


class RunScope:
    """``with``/``async with`` around one run: starts it, makes it current, ends it.

    An exception escaping the block ends the run with that error (type, message,
    traceback) and propagates unchanged. A block that exits normally without calling
    ``end`` ends the run with no outputs.
    """

    __slots__ = ("_kwargs", "_name", "_recorder", "_run", "_run_type", "_token")

    def __init__(self, recorder: Recorder, name: str, run_type: str,
                 kwargs: dict[str, Any]) -> None:
        self._recorder = recorder
        self._name = name
        self._run_type = run_type
        self._kwargs = kwargs
        self._run: Run | None = None
        self._token: contextvars.Token[Run | None] | None = None

    def __enter__(self) -> Run:
        if self._run is not None:
            raise RunStateError("a run scope can be entered only once")
        run = self._recorder.start(self._name, self._run_type, **self._kwargs)
        self._run = run
        self._token = _current.set(run)
        return run

    def _leave(self, exc: BaseException | None) -> Run:
        run = cast(Run, self._run)
        run._end_on_exit(exc)
        if self._token is not None:
            try:
                _current.reset(self._token)
            except ValueError:  # exited in another context (e.g. a generator moved tasks)
                _current.set(None if run.parent_id is None else _current.get())
        return run

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        run = self._leave(exc)
        if run.is_root:
            self._recorder.wait_committed()

    async def __aenter__(self) -> Run:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        run = self._leave(exc)
        if run.is_root:
            await self._recorder.await_committed()


# --------------------------------------------------------------------- decorator


def _bound_inputs(sig: inspect.Signature | None, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> Any:
    if sig is None:
        return {"args": list(args), "kwargs": kwargs}
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        return {"args": list(args), "kwargs": kwargs}
    return dict(bound.arguments)


def trace(
    name: str | None = None,
    run_type: str = "chain",
    *,
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    recorder: Recorder | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Record every call of the decorated function as a run.

    Inside an open run the call becomes its child; outside any run it becomes a root
    run of ``recorder`` (``store.trace`` passes the store's), and with no recorder it is
    simply called. Arguments are the run's inputs and the return value its outputs
    (values the codec cannot keep are stored as documented ``$rl:repr`` markers rather
    than failing the call). Generators and async generators stream each item they
    yield; coroutines are awaited inside the run.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        run_name: str = name or str(getattr(fn, "__name__", "function"))
        try:
            sig: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None

        def open_scope(args: tuple[Any, ...], kwargs: dict[str, Any]) -> RunScope | None:
            cur = _current.get()
            rec = cur._recorder if cur is not None else recorder
            if rec is None:
                return None
            return RunScope(rec, run_name, run_type, {
                "inputs": _bound_inputs(sig, args, kwargs), "tags": tags,
                "metadata": metadata, "lossy": True,
            })

        if inspect.isasyncgenfunction(fn):
            agen_fn = cast(Callable[..., AsyncIterator[Any]], fn)

            @functools.wraps(fn)
            async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                scope = open_scope(args, kwargs)
                if scope is None:
                    async for item in agen_fn(*args, **kwargs):
                        yield item
                    return
                async with scope as run:
                    async for item in agen_fn(*args, **kwargs):
                        run.stream(item, lossy=True)
                        yield item

            return cast(Callable[P, R], agen_wrapper)

        if inspect.iscoroutinefunction(fn):
            coro_fn = cast(Callable[..., Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def coro_wrapper(*args: Any, **kwargs: Any) -> Any:
                scope = open_scope(args, kwargs)
                if scope is None:
                    return await coro_fn(*args, **kwargs)
                async with scope as run:
                    result = await coro_fn(*args, **kwargs)
                    await run.aend(result, lossy=True)
                    return result

            return cast(Callable[P, R], coro_wrapper)

        if inspect.isgeneratorfunction(fn):
            gen_fn = cast(Callable[..., Iterator[Any]], fn)

            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
                scope = open_scope(args, kwargs)
                if scope is None:
                    yield from gen_fn(*args, **kwargs)
                    return
                with scope as run:
                    for item in gen_fn(*args, **kwargs):
                        run.stream(item, lossy=True)
                        yield item

            return cast(Callable[P, R], gen_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            scope = open_scope(args, dict(kwargs))
            if scope is None:
                return fn(*args, **kwargs)
            with scope as run:
                result = fn(*args, **kwargs)
                run.end(result, lossy=True)
                return result

        return wrapper

    return decorate
