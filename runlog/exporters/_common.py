"""What every exporter shares: the store it reads, the selection, the output, progress.

The exporters sit below :mod:`runlog.api` in the layering contract, so they do not
import :class:`runlog.Store`; they read through :class:`StoreLike`, the few methods of
the store they need. Every exporter reads the store page by page (``Store.events``) and
writes as it goes, so memory does not grow with the number of events exported.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from runlog import codec
from runlog.events import Event, RunInfo
from runlog.filters import Filter
from runlog.store.base import Backend, EventQuery

__all__ = [
    "ExportResult",
    "Output",
    "Progress",
    "Selection",
    "StoreLike",
    "open_output",
]

Progress = Callable[[int], None]
"""Called with the number of events handled since the previous call (for progress bars)."""

Output = str | os.PathLike[str] | IO[bytes]
"""Where an export goes: a path, ``"-"`` for standard output, or a binary file object."""


class StoreLike(Protocol):
    """The part of :class:`runlog.Store` the exporters use (see the module docstring)."""

    @property
    def backend(self) -> Backend: ...

    @property
    def location(self) -> str: ...

    def events(
        self,
        run_id: str | None = None,
        trace_id: str | None = None,
        after: int = 0,
        filter: Filter | None = None,
        *,
        until: int | None = None,
        descendants: bool = False,
        page_size: int = 1000,
        digests: bool = False,
    ) -> Iterator[Event]: ...

    def runs(
        self,
        *,
        trace_id: str | None = None,
        roots_only: bool = False,
        status: str | None = None,
        name: str | None = None,
        filter: Filter | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[RunInfo]: ...

    def resolve_run_id(self, run_id: str) -> str: ...

    def subtree_ids(self, run_id: str) -> tuple[str, frozenset[str]]: ...

    def last_seq(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Selection:
    """Which events an export covers.

    ``run_id`` selects the run *and its descendants* (exporting a run means its whole
    subtree); ``trace_id`` a whole trace; ``filter`` keeps runs passing a
    :class:`~runlog.Filter`. They combine (all must hold). Every selection keeps or drops
    whole runs (a filter looks only at a run's name, type, tags and metadata, which every
    event of the run carries), so each exported run is a complete prefix of its hash chain.
    The export reads up to the last event committed when it starts (``until``), so a
    store that keeps growing still gives a consistent file.
    """

    run_id: str | None = None
    trace_id: str | None = None
    filter: Filter | None = None
    until: int | None = None

    def pinned(self, store: StoreLike) -> Selection:
        """This selection with ids resolved and ``until`` fixed to the store's last seq."""
        run_id = store.resolve_run_id(self.run_id) if self.run_id is not None else None
        f = self.filter if self.filter is not None and not self.filter.is_empty else None
        until = self.until if self.until is not None else store.last_seq()
        return Selection(run_id=run_id, trace_id=self.trace_id, filter=f, until=until)

    def events(self, store: StoreLike, *, digests: bool = False,
               page_size: int = 2000) -> Iterator[Event]:
        """The selected events in ``seq`` order, read a page at a time."""
        for page in self.pages(store, digests=digests, page_size=page_size):
            yield from page

    def pages(self, store: StoreLike, *, digests: bool = False,
              page_size: int = 2000) -> Iterator[list[Event]]:
        """The selected events in ``seq`` order, one backend page (a short read) at a time.

        What ``Store.events`` does, minus its per-event generator: exporters handle a
        page with one list comprehension, which is most of their speed.
        """
        some, trace_id, run_ids = self._scope(store)
        if not some:
            return
        f = self.filter
        q = EventQuery(after=0, limit=page_size, trace_id=trace_id, run_ids=run_ids,
                       filter=f, until=self.until, digests=digests)
        read = store.backend.read
        while True:
            page, high = read(q)
            full = len(page) >= page_size
            if f is not None:  # the backend may pre-filter loosely; this is the exact rule
                page = [e for e in page if f.matches(e)]
            if page:
                yield page
            if not full:  # everything up to the page's snapshot was read
                return
            q = EventQuery(after=high, limit=page_size, trace_id=trace_id, run_ids=run_ids,
                           filter=f, until=self.until, digests=digests)

    def row_pages(self, store: StoreLike, *,
                  page_size: int = 5000) -> Iterator[list[tuple[int, bytes, bytes]]]:
        """Pages of ``(seq, raw, digest hex)`` rows: :meth:`pages` without Event objects.

        Uses ``Backend.read_rows`` (no object per event, the digest in the hex the
        file needs) unless a filter is set, which has to look at events.
        """
        if self.filter is not None:
            for page in self.pages(store, digests=True, page_size=page_size):
                yield [(e.seq, e.raw, e.digest.hex().encode() if e.digest else b"")
                       for e in page]
            return
        some, trace_id, run_ids = self._scope(store)
        if not some:
            return
        q = EventQuery(after=0, limit=page_size, trace_id=trace_id, run_ids=run_ids,
                       until=self.until, digests=True)
        read = store.backend.read_rows
        while True:
            rows, high = read(q)
            if rows:
                yield rows
            if len(rows) < page_size:
                return
            q = EventQuery(after=high, limit=page_size, trace_id=trace_id, run_ids=run_ids,
                           until=self.until, digests=True)

    def _scope(self, store: StoreLike) -> tuple[bool, str | None, frozenset[str] | None]:
        """``(anything can match, trace_id, run_ids)``: what to ask the backend for."""
        trace_id, run_ids = self.trace_id, None
        if self.run_id is not None:
            tid, subtree = store.subtree_ids(self.run_id)
            if trace_id is not None and trace_id != tid:
                return False, None, None
            trace_id = tid
            run_ids = None if self.run_id == tid else subtree  # a root: the whole trace
        return True, trace_id, run_ids

    def count(self, store: StoreLike) -> int | None:
        """How many events the export will hold (for a progress bar); None if unknown.

        Counted from the runs table, so it can overshoot by the events of runs still
        being written; a progress bar only needs the order of magnitude.
        """
        if self.run_id is None and self.trace_id is None and self.filter is None:
            return self.until
        if self.run_id is not None:
            trace_id, ids = store.subtree_ids(self.run_id)
            runs = [r for r in store.runs(trace_id=trace_id) if r.run_id in ids]
        else:
            runs = store.runs(trace_id=self.trace_id, filter=self.filter)
        if self.filter is not None:
            runs = [r for r in runs
                    if self.filter.matches_run(r.name, r.run_type, r.tags, r.metadata)]
        return sum(r.event_count for r in runs)


@dataclass(slots=True)
class ExportResult:
    """What an export wrote: the number of events and runs, and the files."""

    format: str
    events: int = 0
    runs: int = 0
    files: list[str] = field(default_factory=list)
    bytes_written: int = 0


def is_stream(out: Output) -> bool:
    """True when ``out`` is a file object or ``"-"`` (no file names to split into)."""
    return not isinstance(out, str | os.PathLike) or str(out) == "-"


@contextmanager
def open_output(out: Output) -> Iterator[tuple[IO[bytes], str]]:
    """A binary writable for ``out`` and a name for messages.

    A path is written to ``<path>.partial`` and renamed into place at the end, so an
    interrupted export never leaves a truncated file under the final name. A file object
    is written to and left open; ``"-"`` is standard output.
    """
    if not isinstance(out, str | os.PathLike):
        yield out, getattr(out, "name", "<stream>")
        out.flush()
        return
    if str(out) == "-":
        yield sys.stdout.buffer, "<stdout>"
        sys.stdout.buffer.flush()
        return
    path = Path(out)
    partial = path.with_name(path.name + ".partial")
    fp = partial.open("wb", buffering=1 << 20)
    try:
        yield fp, str(path)
    except BaseException:
        fp.close()
        partial.unlink(missing_ok=True)
        raise
    fp.close()
    os.replace(partial, path)


def trimmed_json(value: Any, limit: int) -> str:
    """A plain JSON value (as parsed from an envelope) as compact text, cut to ``limit``.

    Used for the human-facing formats (Chrome, OTLP), where inputs and outputs are
    previews: tagged values (``{"$rl:bytes": ...}``) are shown as stored, strings as
    themselves, and a cut value ends with ``…`` and its full size, so a cut is never
    silent. ``limit`` counts UTF-8 bytes.
    """
    text = value.encode() if isinstance(value, str) else codec.dumps_plain(value)
    if len(text) <= limit:
        return text.decode()
    cut = text[: max(limit - 24, 0)].decode("utf-8", "ignore")
    return f"{cut}… ({len(text)} bytes)"
