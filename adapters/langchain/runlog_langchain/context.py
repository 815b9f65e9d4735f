"""``record(store)``: record every Runnable invoked inside a ``with`` block.

LangChain's callback manager consults a list of *configure hooks* each time it is
configured for a run (``langchain_core.tracers.context.register_configure_hook``): a
hook is a ``ContextVar``, and when the variable holds a handler in the current context
that handler is attached to the run, as an inheritable handler, unless the run already
has it. ``tracing_v2_enabled`` and ``collect_runs`` work this way. :func:`record` sets
such a variable to a :class:`~runlog_langchain.Recorder` for the duration of the block,
so every ``invoke``/``ainvoke``/``stream``/``astream``/``batch``/``abatch`` started in
that context is recorded without touching its call site. Context variables follow the
work LangChain does for the call: ``batch``/``RunnableParallel`` threads run in a copy
of the caller's context (``ContextThreadPoolExecutor``), asyncio tasks copy it when
they are created.

A run that already carries a :class:`Recorder` in its callbacks (this block's or any
other) is left to that recorder, so nothing is recorded twice.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

from langchain_core.tracers.context import register_configure_hook

from runlog import Store
from runlog_langchain.recorder import Recorder

__all__ = ["arecord", "current_recorder", "record"]

log = logging.getLogger("runlog_langchain")

# Holds the recorder of the innermost active ``record()`` block of this context.
_recorder_var: ContextVar[Recorder | None] = ContextVar("runlog_langchain_recorder",
                                                        default=None)
# inheritable=True: child runs get the handler from their parent's manager too, which
# keeps the recorder attached to runs whose config was built outside the context copy.
# handle_class=Recorder: a run that already has a Recorder (this one, or one passed in
# its config) is left to it; two recorders writing the same LangChain run ids into one
# store would record every event twice. (With the variable set, LangChain never
# instantiates handle_class itself: that happens only for env_var hooks.)
register_configure_hook(_recorder_var, inheritable=True, handle_class=Recorder)


def current_recorder() -> Recorder | None:
    """The recorder of the innermost ``record()`` block active in this context, if any."""
    return _recorder_var.get()


@contextmanager
def record(store: Store | Recorder, *,
           clock: Callable[[], int] | None = None) -> Iterator[Recorder]:
    """Record every LangChain run started inside the block into ``store``.

    ``with runlog_langchain.record(store) as rec: chain.invoke(x)`` records the call
    and everything under it, exactly as passing ``config={"callbacks": [Recorder(store)]}``
    would; ``rec.root_ids`` lists the recorded root runs in start order, and
    ``rec.failures`` counts what could not be recorded (each failure is logged on the
    ``runlog_langchain`` logger; recording never raises into the application).

    Pass an existing :class:`Recorder` instead of a store to keep adding to it. Blocks
    nest: a root run started in an inner block goes to the inner block's recorder; a
    child of a run that is already recorded stays with that run's recorder. On exit the
    store's queued events are flushed (a failing flush is logged and counted, never
    raised) so the recorded runs are readable right after the block.

    The application may itself call ``astream_log``/``astream_events`` inside the
    block: the recorder is attached after their handlers, and still records the output
    chunks of chains (it routes LangChain's single output tap through itself), so the
    recorded run replays as exactly what those calls yielded.

    Args:
        store: the store to write to, or a :class:`Recorder` to reuse.
        clock: epoch microseconds for event times (default: the clock LangChain's
            tracer reads, :func:`~runlog_langchain.recorder.tracer_clock`); ignored when a
            :class:`Recorder` is passed.
    """
    rec = store if isinstance(store, Recorder) else Recorder(store, clock=clock)
    token = _recorder_var.set(None if _refuse_closed(rec) else rec)
    try:
        yield rec
    finally:
        _recorder_var.reset(token)
        _flush(rec)


@asynccontextmanager
async def arecord(store: Store | Recorder, *,
                  clock: Callable[[], int] | None = None) -> AsyncIterator[Recorder]:
    """``async with runlog_langchain.arecord(store) as rec: await chain.ainvoke(x)``.

    The same as :func:`record` (which also works inside ``async`` code), except that the
    flush on exit is awaited in a worker thread instead of blocking the event loop.
    """
    rec = store if isinstance(store, Recorder) else Recorder(store, clock=clock)
    token = _recorder_var.set(None if _refuse_closed(rec) else rec)
    try:
        yield rec
    finally:
        _recorder_var.reset(token)
        if not _is_closed(rec.store):
            try:
                await rec.store.aflush(rec.store.recorder.end_timeout)
            except Exception as e:
                rec._failed("the final flush", e)


def _is_closed(store: Store) -> bool:
    return bool(getattr(store, "_closed", False))


def _refuse_closed(rec: Recorder) -> bool:
    """A closed store records nothing: count one failure and leave LangChain alone.

    Recording into a closed store is not refused by the store itself once its writer
    thread has run (the events are queued and silently dropped, and each root run's end
    waits ``end_timeout`` for a commit that never comes), so :func:`record` checks first.
    """
    if not _is_closed(rec.store):
        return False
    rec._failed("this block's runs", RuntimeError(
        f"the store {rec.store.location} is closed; open it again to record"))
    return True


def _flush(rec: Recorder) -> None:
    if _is_closed(rec.store):
        return
    try:
        rec.store.flush(rec.store.recorder.end_timeout)
    except Exception as e:  # a failing store: log and count, never raise into the app
        rec._failed("the final flush", e)
