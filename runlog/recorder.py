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
in :mod:`runlog.store.writer`. If they are not committed within ``end_timeout`` (a
held write lock, a full disk) or the store refused one of them, the exit raises
:class:`~runlog.errors.NotCommittedError` / :class:`~runlog.errors.EventRejectedError`
saying how many events are pending, so "returned normally" always means "committed".
When the block is already propagating an exception of the application, that one is
never masked: the commit failure is logged and counted instead.

Every event is checked at the call, before it is queued: its time must fit a signed
64-bit count of microseconds (what SQLite's INTEGER and PostgreSQL's bigint hold) and
its envelope must be at most :attr:`Recorder.max_event_bytes`; a run id already in
use is refused before the run's start is queued (:class:`~runlog.errors.DuplicateRunError`).
``@trace`` never lets recording break the traced call: a failure to record is logged,
counted and, where the run exists, stored as the run's error.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as _dt
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
from runlog.errors import (
    DuplicateRunError,
    EventRejectedError,
    InvalidEventError,
    RunlogError,
    RunStateError,
)
from runlog.events import (
    TIME_MAX,
    TIME_MIN,
    ErrorInfo,
    chain_digest,
    datetime_to_micros,
    encode_run_fields,
    envelope_header,
    make_envelope,
    now_micros,
)
from runlog.ids import new_run_id
from runlog.store import layout
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
# the compact layout's codes of an output chunk and of a token without chunk: the
# recorder has those rows' bodies at hand (the data it encoded), so the writer need not
# search the envelope for them. A token's hint is code 5 (its JSON text, quotes
# included) whatever the store: the writer of a store at schema 3 drops the quotes of
# a JSON string itself (code 7), since only the store knows its schema
_OUTPUT_CODE, _TOKEN_CODE = layout.OUTPUT, layout.TOKEN
# and of a token with a chunk that fits its run's chunk template (the body: the token)
_TEMPLATED_CODE = layout.TEMPLATED
# the fixed text of a token envelope around its token and chunk (Run.token)
_TOKEN_DATA = b',"channel":"token","data":{"token":'
_CHUNK_KEY, _NULL_CHUNK = b',"chunk":', b',"chunk":null}}'
_join = b"".join
_NO_INPUTS: Any = object()
_MIN_US = TIME_MIN
_MAX_US = TIME_MAX
MAX_EVENT_BYTES = 256 * 1024 * 1024
"""Default limit of one event's envelope: well under SQLite's 1e9-byte value limit
(SQLITE_MAX_LENGTH) and PostgreSQL's 1 GB text limit, with room for the batch."""
_RECENT_IDS = 4096


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
    if isinstance(time, int) and not isinstance(time, bool):
        return time
    if isinstance(time, _dt.datetime):
        return datetime_to_micros(time)
    raise InvalidEventError(
        f"an event time must be an int of epoch microseconds or a datetime, not {time!r}")


def _invalid(run: Run, time_us: int, raw: bytes) -> InvalidEventError:
    if not isinstance(time_us, int) or not _MIN_US <= time_us <= _MAX_US:
        return InvalidEventError(
            f"run {run.name!r} ({run.id}): time {time_us!r} is outside the range a store "
            "and a reader can show (years 1 to 9999, in epoch microseconds); the event was not "
            "recorded")
    return InvalidEventError(
        f"run {run.name!r} ({run.id}): an event of {len(raw)} bytes is over the limit of "
        f"{run._recorder.max_event_bytes} bytes (Recorder.max_event_bytes); record it in "
        "smaller chunks. The event was not recorded")


class Recorder:
    """Creates runs for one store; holds the writer they queue their events on."""

    def __init__(self, writer: Writer, *, owner: object = None, end_timeout: float = 30.0,
                 max_event_bytes: int = MAX_EVENT_BYTES):
        self.writer = writer
        self.owner = owner
        self.end_timeout = end_timeout
        self.max_event_bytes = max_event_bytes
        self.commit_failures = 0
        # run ids in use in this process whose start may not be committed yet: the open
        # runs and the last few ended ones (the store lookup covers the rest)
        self._open_ids: set[str] = set()
        self._recent_ids: dict[str, None] = {}
        self._ids_lock = threading.Lock()

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
        fresh_id: bool = False,
    ) -> Run:
        """Start a run and queue its start event; returns its handle.

        ``parent`` defaults to the current run when that run belongs to this store.
        With ``inherit`` (the default) a child's tags and metadata start from its
        parent's, as LangChain's config tags and metadata are inherited; adapters that
        already know a run's full tags pass ``inherit=False``.

        A ``run_id`` in use is refused here (:class:`DuplicateRunError`): open or
        recently ended in this process, or in the store, which costs a read of the
        store per start. ``fresh_id`` says the id was just made by a framework (a
        LangChain child run's) and skips that read; a reused one is then refused by the
        store's one-start-per-id index when the writer commits it: the start and
        everything of that run and of runs started under it are dropped, and the next
        call on it (or ``flush``, or its root's end) raises :class:`EventRejectedError`.
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
        start_us = _time_us(time)
        run = Run(self, str(run_id) if run_id is not None else new_run_id(), parent, name,
                  run_type, run_tags, run_meta)
        inputs_bytes = codec.encode(inputs, lossy=lossy)
        if run_id is None:
            self._open_ids.add(run.id)  # a fresh id: nobody else can have it
        else:
            self._claim(run.id, in_store=not fresh_id)
        try:
            run._emit_start(inputs_bytes, start_us)
        except BaseException:
            self._release(run.id)
            raise
        return run

    def _claim(self, run_id: str, *, in_store: bool = True) -> None:
        with self._ids_lock:
            if run_id in self._open_ids or run_id in self._recent_ids or (
                    in_store and self.writer.backend.get_run(run_id) is not None):
                raise DuplicateRunError(
                    f"run id {run_id} is already in use in {self.writer.backend.location}; "
                    "a run id names one run: leave run_id out to get a fresh one")
            self._open_ids.add(run_id)

    def _release(self, run_id: str) -> None:
        self._open_ids.discard(run_id)

    def _ended(self, run_id: str) -> None:
        self._open_ids.discard(run_id)
        recent = self._recent_ids
        recent[run_id] = None
        if len(recent) > _RECENT_IDS:
            with self._ids_lock:
                while len(recent) > _RECENT_IDS // 2:
                    del recent[next(iter(recent))]

    def scope(self, name: str, run_type: str = "chain", **kwargs: Any) -> RunScope:
        """A context manager that starts the run on entry and ends it on exit."""
        return RunScope(self, name, run_type, kwargs)

    def wait_committed(self, trace_id: str | None = None,
                       app_error: BaseException | None = None) -> None:
        """Wait until the queued events are committed (the acknowledgement of a root run).

        Raises:
            NotCommittedError: not committed within ``end_timeout``, or the store fails;
                the message says how many events are pending.
            EventRejectedError: the store refused an event of ``trace_id``.
            CorruptStoreError: the store is damaged.

        With ``app_error`` (the application's own exception is propagating) nothing is
        raised: the failure is logged and counted, so it never masks the app's error.
        """
        try:
            self.writer.flush(self.end_timeout, report_rejections=False)
            if trace_id is not None:
                found = self.writer.take_rejections(trace_id)
                if found:
                    raise EventRejectedError("; ".join(found))
        except RunlogError as e:
            self.commit_failures += 1
            log.error("runlog: %s", e)
            if app_error is None:
                raise

    async def await_committed(self, trace_id: str | None = None,
                              app_error: BaseException | None = None) -> None:
        await anyio.to_thread.run_sync(self.wait_committed, trace_id, app_error)


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
        "_stream_head",
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
        # what every stream envelope of this run begins with, up to its time digits
        self._stream_head = b'{"kind":"stream",' + self._header + b',"time":'
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
             ending: bool = False, parts: tuple[int, bytes] | None = None) -> None:
        recorder = self._recorder
        if not _MIN_US <= time_us <= _MAX_US or len(raw) > recorder.max_event_bytes:
            raise _invalid(self, time_us, raw)
        writer = recorder.writer
        if writer.rejections:  # an int test per event; the lookup only after a rejection
            why = writer.rejected(self.id)
            if why is not None:
                raise EventRejectedError(why)
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
            writer.put(_new_pending(Pending, (
                self.id, self.trace_id, kind, self.name, self.run_type, time_us, raw, digest,
                run_row, parts,
            )))
            # only once queued: a refused event (closed store) leaves the chain intact
            self._digest = digest
            self._count = count
            if ending:
                self._ended = True
                recorder._ended(self.id)

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
        data = codec.encode(chunk, lossy=lossy)
        raw = _join((self._stream_head, b"%d" % t, b',"data":', data, b"}"))  # see token
        self._put("stream", raw, t, None, False, (_OUTPUT_CODE, data))

    def token(self, token: str | list[Any], chunk: Any = None, *, time: Any = None,
              chunk_json: bytes | None = None) -> None:
        """Record a model token (``channel="token"``), with the model's chunk object if any.

        The token is its text, or a list of content blocks for models that stream them
        (LangChain allows both). ``chunk_json``, from an adapter that has it at hand
        (the LangChain adapter's encoding templates), is ``codec.encode(chunk)``'s very
        bytes, stored as they are: making them exactly that is the caller's duty, as it
        is a registered encoder's for an ``orjson.Fragment``."""
        t: int = time if type(time) is int else _time_us(time)
        # the envelope of make_envelope(..., channel="token") around the encoding of
        # {"token": token, "chunk": chunk}, assembled in one join: this runs per token.
        # (bytes.join sizes the result once; a %-format of the ~600 bytes grows its
        # buffer as it goes, 4x the cost.)
        text = codec.encode(token)
        if chunk is None:  # the compact layout keeps just the token (layout code 5 or 7)
            self._put("stream", _join((self._stream_head, b"%d" % t, _TOKEN_DATA, text,
                                       _NULL_CHUNK)), t, None, False, (_TOKEN_CODE, text))
            return
        # with its token, so the compact layout's writer checks the run's chunk template
        # (code 6) by one join instead of searching the envelope for the token
        self._put("stream", _join((self._stream_head, b"%d" % t, _TOKEN_DATA, text,
                                   _CHUNK_KEY,
                                   codec.encode(chunk) if chunk_json is None else chunk_json,
                                   b"}}")), t, None, False, (_TEMPLATED_CODE, text))

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
                self._recorder.wait_committed(self.trace_id)

    def fail(self, error: BaseException | ErrorInfo, outputs: Any = None) -> None:
        """End the run as failed."""
        self.end(outputs, error=error)

    def _emit_end(self, outputs: Any, error: BaseException | ErrorInfo | None, inputs: Any,
                  time: Any, lossy: bool) -> None:
        t = _time_us(time)
        err: ErrorInfo | None
        err = ErrorInfo.from_exception(error) if isinstance(error, BaseException) else error
        err_bytes = _error_bytes(err) if err is not None else None
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
            await self._recorder.await_committed(self.trace_id)

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
        except Exception as e:  # the store was closed under the block, or the app's
            # exception cannot even be described (a failing __str__): never mask the app
            log.error("runlog: could not record the end of %r: %s", self.name, e)
            if exc is not None and not isinstance(e, RunlogError):
                try:
                    self._emit_end(None, ErrorInfo(type=type(exc).__qualname__,
                                                   message="<the error could not be "
                                                   f"described: {type(e).__name__}>",
                                                   traceback=""),
                                   _NO_INPUTS, None, True)
                except Exception as e2:
                    log.error("runlog: could not record the end of %r: %s", self.name, e2)


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
            self._recorder.wait_committed(run.trace_id, exc)

    async def __aenter__(self) -> Run:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        run = self._leave(exc)
        if run.is_root:
            await self._recorder.await_committed(run.trace_id, exc)


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


def _describe(e: BaseException) -> str:
    try:
        return f"{type(e).__name__}: {e}"
    except Exception:  # an exception whose __str__ fails
        return type(e).__name__


def _enter_quietly(scope: RunScope) -> Run | None:
    try:
        return scope.__enter__()
    except Exception as e:  # the inputs cannot be recorded, a duplicate id, a closed store
        log.error("runlog: could not record a call of %r: %s", scope._name, _describe(e))
        scope._recorder.commit_failures += 1
        return None


def _exit_quietly(scope: RunScope, exc: BaseException | None) -> None:
    # the app's exception, if any, is never masked (wait_committed logs instead); with
    # none, a commit failure is logged and counted too: @trace stays transparent
    try:
        scope.__exit__(type(exc) if exc is not None else None, exc, None)
    except Exception as e:
        log.error("runlog: recording %r: %s", scope._name, _describe(e))


async def _aexit_quietly(scope: RunScope, exc: BaseException | None) -> None:
    try:
        await scope.__aexit__(type(exc) if exc is not None else None, exc, None)
    except Exception as e:
        log.error("runlog: recording %r: %s", scope._name, _describe(e))


def _error_bytes(err: ErrorInfo) -> bytes:
    """The stored error: its args and attributes lossy, and if even that cannot keep them
    (a cycle, nesting too deep), the type, message and traceback alone, never nothing."""
    raw = codec.encode(err.to_dict(), lossy=True)
    if raw.startswith(b'{"$rl:unencodable"') and (err.args is not None or err.attrs):
        raw = codec.encode(dataclasses.replace(err, args=None, attrs=None).to_dict(),
                           lossy=True)
    return raw


def _end_quietly(run: Run, result: Any) -> None:
    """End ``run`` with ``result``; a result that cannot be recorded becomes the run's error."""
    try:
        run._emit_end(result, None, _NO_INPUTS, None, True)
    except RunStateError:  # the function ended its run itself
        pass
    except Exception as e:
        log.error("runlog: could not record the result of %r: %s", run.name, _describe(e))
        run._recorder.commit_failures += 1
        try:
            run._emit_end(None, ErrorInfo(
                type="runlog.unrecorded",
                message=f"the call returned a value runlog could not record: {_describe(e)}"),
                _NO_INPUTS, None, True)
        except Exception as e2:
            log.error("runlog: could not end %r: %s", run.name, _describe(e2))


def _stream_quietly(run: Run, item: Any) -> None:
    try:
        run.stream(item, lossy=True)
    except Exception as e:
        log.error("runlog: could not record an item yielded by %r: %s", run.name,
                  _describe(e))
        run._recorder.commit_failures += 1
        try:
            run.event("runlog.unrecorded", {"error": _describe(e)})
        except Exception:
            pass  # logged above; the generator goes on


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

    Recording never breaks the traced call: whatever fails while recording (a value
    even the lossy codec cannot take, a refused run id, a commit that does not finish
    in time) is logged and counted in ``Recorder.commit_failures``, and where the run
    exists, a result that cannot be stored is recorded as the run's error
    (``runlog.unrecorded``). Call ``store.flush()`` to be told about commits.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        run_name: str = name or str(getattr(fn, "__name__", "function"))
        try:
            sig: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None

        def open_scope(args: tuple[Any, ...], kwargs: dict[str, Any]
                       ) -> tuple[RunScope, Run] | None:
            cur = _current.get()
            rec = cur._recorder if cur is not None else recorder
            if rec is None:
                return None
            try:
                inputs = _bound_inputs(sig, args, kwargs)
            except Exception as e:
                log.error("runlog: could not record a call of %r: %s", run_name, _describe(e))
                return None
            scope = RunScope(rec, run_name, run_type, {
                "inputs": inputs, "tags": tags, "metadata": metadata, "lossy": True,
            })
            run = _enter_quietly(scope)
            return None if run is None else (scope, run)

        if inspect.isasyncgenfunction(fn):
            agen_fn = cast(Callable[..., AsyncIterator[Any]], fn)

            @functools.wraps(fn)
            async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                opened = open_scope(args, kwargs)
                if opened is None:
                    async for item in agen_fn(*args, **kwargs):
                        yield item
                    return
                scope, run = opened
                try:
                    async for item in agen_fn(*args, **kwargs):
                        _stream_quietly(run, item)
                        yield item
                except BaseException as e:
                    await _aexit_quietly(scope, e)
                    raise
                await _aexit_quietly(scope, None)

            return cast(Callable[P, R], agen_wrapper)

        if inspect.iscoroutinefunction(fn):
            coro_fn = cast(Callable[..., Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def coro_wrapper(*args: Any, **kwargs: Any) -> Any:
                opened = open_scope(args, kwargs)
                if opened is None:
                    return await coro_fn(*args, **kwargs)
                scope, run = opened
                try:
                    result = await coro_fn(*args, **kwargs)
                except BaseException as e:
                    await _aexit_quietly(scope, e)
                    raise
                _end_quietly(run, result)
                await _aexit_quietly(scope, None)
                return result

            return cast(Callable[P, R], coro_wrapper)

        if inspect.isgeneratorfunction(fn):
            gen_fn = cast(Callable[..., Iterator[Any]], fn)

            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
                opened = open_scope(args, kwargs)
                if opened is None:
                    yield from gen_fn(*args, **kwargs)
                    return
                scope, run = opened
                try:
                    for item in gen_fn(*args, **kwargs):
                        _stream_quietly(run, item)
                        yield item
                except BaseException as e:
                    _exit_quietly(scope, e)
                    raise
                _exit_quietly(scope, None)

            return cast(Callable[P, R], gen_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            opened = open_scope(args, dict(kwargs))
            if opened is None:
                return fn(*args, **kwargs)
            scope, run = opened
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:
                _exit_quietly(scope, e)
                raise
            _end_quietly(run, result)
            _exit_quietly(scope, None)
            return result

        return wrapper

    return decorate
