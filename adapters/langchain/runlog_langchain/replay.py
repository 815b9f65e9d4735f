"""Replay a recorded run as LangChain's own ``astream_log`` / ``astream_events`` output.

The items are real LangChain objects: ``langchain_core.tracers.log_stream.RunLogPatch``
(or ``RunLog`` with ``diff=False``) holding messages, Documents and prompt values, and
v2 event dicts, equal (``==``) to what LangChain yielded live for the recorded call.
If the recorded root failed, the rebuilt exception is raised after the last item, as
LangChain's iterators do. ``stream_log``/``stream_events`` are synchronous twins
(LangChain has none for v1/v2).

With ``diff=False`` every yielded ``RunLog`` is its own, as in LangChain: its ``state``
is the state as of that item and ``ops`` a list of every op so far, both built when
first read (from the journal of patches, :class:`runlog.reducers.RunLogJournal`) and
then kept. Producing the items is one in-place apply per patch, so a consumer that
reads only the last item stays linear where LangChain's own ``RunLog +`` is quadratic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from jsonpointer import JsonPointerException
from langchain_core.load import dumps
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import GenerationChunk
from langchain_core.tracers.log_stream import RunLog as LCRunLog
from langchain_core.tracers.log_stream import RunLogPatch as LCRunLogPatch

from runlog import Event, Filter, Store
from runlog.reducers import EventsReducer, LogReducer, RunLogJournal, error_object
from runlog.reducers.log import JournalItem
from runlog.reducers.patch import PatchError

__all__ = ["astream_events", "astream_log", "stream_events", "stream_log"]


def _filter(include_names: Sequence[str] | None, include_types: Sequence[str] | None,
            include_tags: Sequence[str] | None, exclude_names: Sequence[str] | None,
            exclude_types: Sequence[str] | None, exclude_tags: Sequence[str] | None,
            flt: Filter | None) -> Filter | None:
    given = (include_names, include_types, include_tags, exclude_names, exclude_types,
             exclude_tags)
    if flt is not None:
        if any(v is not None for v in given):
            raise TypeError("pass either filter= or the include_*/exclude_* keywords")
        return flt
    if all(v is None for v in given):
        return None
    return Filter(include_names=include_names, include_types=include_types,
                  include_tags=include_tags, exclude_names=exclude_names,
                  exclude_types=exclude_types, exclude_tags=exclude_tags)


def _lc_chunk(run_type: str, token: str) -> Any:
    """What LangChain streams for a model token reported without a chunk object."""
    if run_type == "chat_model":
        return AIMessageChunk(content=token)
    return GenerationChunk(text=token if isinstance(token, str) else "")


class _ReplayedRunLog(JournalItem, LCRunLog):
    """LangChain's ``RunLog`` as of one patch, materialised from the journal when read."""

    def __reduce__(self) -> tuple[Any, ...]:
        # copy, deepcopy and pickle give LangChain's plain RunLog of the same values
        return _plain_run_log, (self.ops, self.state)


def _plain_run_log(ops: list[dict[str, Any]], state: Any) -> LCRunLog:
    return LCRunLog(*ops, state=state)


class _LogFolder:
    """Shared by the sync and async log replays: events in, LangChain objects out."""

    def __init__(self, flt: Filter | None, diff: bool, with_list: bool) -> None:
        # diff=False grows a root string lazily: every patch would carry it whole.
        self.red = LogReducer(filter=flt, with_streamed_output_list=with_list,
                              diff_dumps=dumps, lazy_text=not diff)
        self.diff = diff
        self.journal = RunLogJournal()
        self.error: BaseException | None = None

    def feed(self, e: Event) -> list[Any]:
        red = self.red
        root_end = e.kind == "end" and e.run_id == red.root_id and not red.done
        out: list[Any] = []
        for p in red.feed(e):
            if self.diff:
                out.append(LCRunLogPatch(*p.ops))
                continue
            try:
                n = self.journal.add(p)
            except PatchError as err:  # e.g. /logs/a/b for a run named "a/b", as in LangChain
                raise JsonPointerException(str(err)) from err
            out.append(_ReplayedRunLog(self.journal, n))
        if root_end and e.error is not None:
            self.error = error_object(e.error)
        return out


def stream_log(store: Store, run_id: str, *, diff: bool = True,
               with_streamed_output_list: bool = True,
               include_names: Sequence[str] | None = None,
               include_types: Sequence[str] | None = None,
               include_tags: Sequence[str] | None = None,
               exclude_names: Sequence[str] | None = None,
               exclude_types: Sequence[str] | None = None,
               exclude_tags: Sequence[str] | None = None,
               filter: Filter | None = None) -> Iterator[Any]:
    """``astream_log`` of a recorded run, synchronously (see the module docstring)."""
    flt = _filter(include_names, include_types, include_tags, exclude_names, exclude_types,
                  exclude_tags, filter)
    folder = _LogFolder(flt, diff, with_streamed_output_list)
    for e in store.events(run_id, descendants=True):
        yield from folder.feed(e)
        if folder.red.done:
            break
    if folder.error is not None:
        raise folder.error


async def astream_log(store: Store, run_id: str, *, diff: bool = True,
                      with_streamed_output_list: bool = True,
                      include_names: Sequence[str] | None = None,
                      include_types: Sequence[str] | None = None,
                      include_tags: Sequence[str] | None = None,
                      exclude_names: Sequence[str] | None = None,
                      exclude_types: Sequence[str] | None = None,
                      exclude_tags: Sequence[str] | None = None,
                      filter: Filter | None = None) -> AsyncIterator[Any]:
    """LangChain's ``astream_log`` output for a recorded run (reads in a worker thread)."""
    flt = _filter(include_names, include_types, include_tags, exclude_names, exclude_types,
                  exclude_tags, filter)
    folder = _LogFolder(flt, diff, with_streamed_output_list)
    async for e in store.aevents(run_id, descendants=True):
        for item in folder.feed(e):
            yield item
        if folder.red.done:
            break
    if folder.error is not None:
        raise folder.error


class _EventsFolder:
    def __init__(self, flt: Filter | None) -> None:
        self.red = EventsReducer(filter=flt, chunk_factory=_lc_chunk)
        self.done = False
        self.error: BaseException | None = None

    def feed(self, e: Event) -> list[Any]:
        out = self.red.feed(e)
        if e.kind == "end" and e.run_id == self.red.root_id:
            self.done = True
            if e.error is not None:
                self.error = error_object(e.error)
        return out


def _check_version(version: str) -> None:
    if version != "v2":
        raise NotImplementedError(
            f"runlog replays astream_events version 'v2' only, not {version!r} "
            "(v1 is deprecated in LangChain)")


def stream_events(store: Store, run_id: str, *, version: str = "v2",
                  include_names: Sequence[str] | None = None,
                  include_types: Sequence[str] | None = None,
                  include_tags: Sequence[str] | None = None,
                  exclude_names: Sequence[str] | None = None,
                  exclude_types: Sequence[str] | None = None,
                  exclude_tags: Sequence[str] | None = None,
                  filter: Filter | None = None) -> Iterator[dict[str, Any]]:
    """``astream_events(version="v2")`` of a recorded run, synchronously."""
    _check_version(version)
    flt = _filter(include_names, include_types, include_tags, exclude_names, exclude_types,
                  exclude_tags, filter)
    folder = _EventsFolder(flt)
    for e in store.events(run_id, descendants=True):
        yield from folder.feed(e)
        if folder.done:
            break
    if folder.error is not None:
        raise folder.error


async def astream_events(store: Store, run_id: str, *, version: str = "v2",
                         include_names: Sequence[str] | None = None,
                         include_types: Sequence[str] | None = None,
                         include_tags: Sequence[str] | None = None,
                         exclude_names: Sequence[str] | None = None,
                         exclude_types: Sequence[str] | None = None,
                         exclude_tags: Sequence[str] | None = None,
                         filter: Filter | None = None) -> AsyncIterator[dict[str, Any]]:
    """LangChain's ``astream_events(version="v2")`` output for a recorded run."""
    _check_version(version)
    flt = _filter(include_names, include_types, include_tags, exclude_names, exclude_types,
                  exclude_tags, filter)
    folder = _EventsFolder(flt)
    async for e in store.aevents(run_id, descendants=True):
        for item in folder.feed(e):
            yield item
        if folder.done:
            break
    if folder.error is not None:
        raise folder.error

