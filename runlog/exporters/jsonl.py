"""Lossless JSONL: export events with their stored bytes, verify a file, import it.

The file (``docs/exports.md``)::

    {"runlog_export":1,"format":"jsonl","chain":"blake2b-128"}
    {"digest":"<32 hex>","event":<the envelope, byte for byte as stored>}
    ...
    {"runlog_export_end":{"events":N,"digest":"<32 hex>"}}

Each event line is built by concatenation around the stored bytes, never by
re-serialising the envelope, so the bytes a recorder made are the bytes in the file and
the bytes an import writes. ``digest`` is the event's hash-chain digest
(:func:`runlog.events.chain_digest`): it makes a file checkable on its own
(:func:`verify_jsonl`) and lets an import recognise events a store already has. The
last line is a trailer with the event count and a digest over every event digest in
line order, so a truncated file, or lines of two runs swapped, are detected.

What varies and what does not: the file holds nothing local to one store (no ``seq``,
no path, no export time). Order is the line order, which is ``seq`` order in the store
exported from. So exporting, importing into a store, and exporting the same selection
again gives the same file byte for byte; the target store gives the events new ``seq``
numbers in the same relative order.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import shutil
import tempfile
import threading
import time
from binascii import a2b_hex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from runlog import codec
from runlog.errors import ExportFileError, ImportConflictError, StoreError
from runlog.events import TIME_MAX, TIME_MIN, chain_digest
from runlog.exporters._common import (
    ExportResult,
    Output,
    Progress,
    Selection,
    StoreLike,
    is_stream,
    open_output,
)
from runlog.ids import new_run_id
from runlog.store.base import EventQuery, Pending, WriterInfo

__all__ = [
    "FORMAT_VERSION",
    "HEADER",
    "FileReport",
    "ImportResult",
    "export_jsonl",
    "import_jsonl",
    "verify_jsonl",
]

FORMAT_VERSION = 1
HEADER = b'{"runlog_export":1,"format":"jsonl","chain":"blake2b-128"}\n'
_PREFIX = b'{"digest":"'
_MID = b'","event":'
_RAW_AT = len(_PREFIX) + 32 + len(_MID)
_TRAILER_KEY = b'{"runlog_export_end":'
_START = b'{"kind":"start",'
_START_MARK = _MID + _START  # where a start event's line has it: at _RAW_AT - len(_MID)


def _count_starts(chunk: bytes) -> int:
    """The start events among whole export lines: a C-speed search for the mark, each
    hit checked to sit at its line's fixed place (event data can hold the same bytes)."""
    n = 0
    at = _RAW_AT - len(_MID)
    i = chunk.find(_START_MARK)
    while i >= 0:
        line = i - at
        if line == 0 or (line > 0 and chunk[line - 1] == 0x0A):  # b"\n"
            n += 1
        i = chunk.find(_START_MARK, i + 1)
    return n


def _trailer(events: int, order: bytes) -> bytes:
    return (_TRAILER_KEY + b'{"events":' + str(events).encode() + b',"digest":"'
            + order.hex().encode() + b'"}}\n')


def _order_hash() -> Any:
    """The file-level digest: BLAKE2b-128 over every event digest in line order.

    Per-run chains cannot see two runs' lines swapped; this one can, and it makes the
    trailer commit to the whole file.
    """
    return hashlib.blake2b(b"runlog-export-v1", digest_size=16)


# ----------------------------------------------------------------------- export




def export_jsonl(store: StoreLike, out: Output, selection: Selection | None = None, *,
                 progress: Progress | None = None,
                 page_size: int | None = None) -> ExportResult:
    """Write the selected events to ``out`` as lossless JSONL (module docstring).

    Streams: one page of events is in memory at a time, whatever the export's size.
    """
    if page_size is None:
        page_size = store.backend.bulk_page_rows
    sel = (selection or Selection()).pinned(store)
    result = ExportResult("jsonl")
    n = runs = 0
    order = _order_hash()
    with open_output(out) as (fp, name):
        write = _unbuffered(fp) if not is_stream(out) else fp.write
        write(HEADER)
        written = len(HEADER)
        for rows in sel.row_pages(store, page_size=page_size):
            order.update(a2b_hex(b"".join([r[2] for r in rows])))
            chunk = b"".join([b'{"digest":"%b","event":%b}\n' % (r[2], r[1]) for r in rows])
            runs += _count_starts(chunk)
            write(chunk)
            written += len(chunk)
            n += len(rows)
            if progress is not None:
                progress(len(rows))
        trailer = _trailer(n, order.digest())
        write(trailer)
        written += len(trailer)
        result.files.append(name)
    result.events, result.runs, result.bytes_written = n, runs, written
    return result


def _unbuffered(fp: IO[bytes]) -> Callable[[bytes], object]:
    """A write straight to the file under ``fp``, for an export's own file.

    Each page is written as one chunk of ~200 KB; a buffered file would first copy it
    into its 1 MB buffer (400 MB of copying for a 1M-event export). ``fp``'s buffer is
    flushed first and nothing else writes to it afterwards. A short write (the OS may
    write less than asked) is continued.
    """
    raw = getattr(fp, "raw", None)
    if not isinstance(raw, io.FileIO):
        return fp.write
    fp.flush()

    def write(chunk: bytes) -> None:
        done = raw.write(chunk)
        if done is not None and done < len(chunk):
            view = memoryview(chunk)
            while done < len(chunk):
                more = raw.write(view[done:])
                if more is None:  # pragma: no cover - only non-blocking files
                    raise OSError(f"could not write to {fp.name}")
                done += more

    return write


# ----------------------------------------------------------------------- reading


@dataclass(slots=True)
class _RunState:
    """What a reader tracks per run: the chain so far, and (import) the store's copy."""

    trace_id: str
    digest: bytes
    count: int = 1
    ended: bool = False
    store_count: int = 0
    """Events of this run already in the target store (import; 0 for a new run)."""
    store_digest: bytes | None = None
    """The store's digest at position ``min(store_count, count)`` once compared."""
    store_match: bool | None = None
    """Import: whether the store's events are a prefix of the file's (or vice versa)."""
    written: int = 0
    """Import, write pass: events of this run read so far, while some are skipped."""
    stream_key: bytes = b"\0"
    """Import, write pass: how this run's stream events begin (``\\0``, never the start of
    a JSON text, until the first one is checked; see :func:`_write_pass`)."""
    head: bytes = b""
    """Import, write pass: the head its stream events share (:func:`_stream_head`);
    empty until its first stream event, ``\\n`` (never a line's start) if none."""
    head_fields: tuple[Any, ...] = ()
    """Import, write pass: run id, trace id, name and run type, as in :attr:`head`."""
    run_id: str = ""
    start: tuple[Any, ...] = ()
    """Check pass: parent id, name and run type of the run's start event, which every
    later event of the run repeats (:func:`_check_envelope`)."""
    line: int = 0
    """Check pass: the line of the run's start event."""
    check_head: bytes = b"\n"
    """Check pass: the head (:func:`_stream_head`) of the run's first stream event once
    its members passed :func:`_check_envelope`; ``\n`` (never a line's start) until
    then, or when the run's stream events do not split that way."""


def _iter_lines(fp: IO[bytes], name: str) -> Iterator[tuple[int, bytes, bytes]]:
    """``(line number, digest, raw envelope)`` per event line; checks header and trailer."""
    for first, digests, raws in _iter_blocks(fp, name):
        for k, raw in enumerate(raws):
            yield first + k, digests[16 * k:16 * k + 16], raw


_BLOCK_BYTES = 1 << 22


class _FileChanged(Exception):
    """The write pass read a block that is not the block the check pass checked."""

    def __init__(self, lineno: int) -> None:
        super().__init__(lineno)
        self.lineno = lineno


_Fingerprints = list[tuple[bytes, bool]]
"""Per block read by an import's check pass: SHA-256 of its bytes, and whether all its
lines had the usual shape."""


def _iter_blocks(fp: IO[bytes], name: str, block_bytes: int | None = None, *,
                 fingerprints: _Fingerprints | None = None,
                 replay: bool = False) -> Iterator[tuple[int, bytes, list[bytes]]]:
    """The event lines a block at a time: ``(first line number, digests, raw envelopes)``.

    ``digests`` holds the blocks' 16-byte digests back to back. Checks the header, the
    shape of every line and the trailer (count and order digest); a block whose lines
    all have the usual shape is handled with a few whole-list operations, which is
    most of the speed of an import; any other block goes line by line, for the exact
    error.

    ``fingerprints`` (import) gets a SHA-256 of each block's bytes as read (the header
    counts as part of the first block, the trailer as part of the last). With
    ``replay=True`` it is the list an earlier read made instead: each block must hash
    to its entry before it is yielded, or :class:`_FileChanged` is raised; so a second
    read yields exactly the bytes the first one checked, or nothing more, and the
    checks the first read made are not made again. Block boundaries depend only on the
    bytes, so the same file gives the same blocks.
    """
    first = fp.readline()
    try:
        head = codec.loads_plain(first)
        version = head["runlog_export"]
    except Exception:
        if replay:
            raise _FileChanged(1) from None
        raise ExportFileError(
            f"{name} is not a runlog JSONL export (its first line is not the "
            "runlog_export header); make one with `runlog export --format jsonl`") from None
    if version != FORMAT_VERSION:
        if replay:
            raise _FileChanged(1)
        raise ExportFileError(
            f"{name} is a runlog export of format {version!r}, which this runlog does not "
            f"read (it reads {FORMAT_VERSION}); upgrade runlog-engine")
    lineno = 1
    count = 0
    index = 0
    order = _order_hash()
    prefix, mid, end = _PREFIX, _MID, b"}}\n"
    sha256 = hashlib.sha256
    block_bytes = block_bytes or _BLOCK_BYTES
    while True:
        block = fp.readlines(block_bytes)
        checked = False  # the block is a replay of a checked block of the usual shape
        if fingerprints is not None:
            fingerprint = sha256(b"".join([first, *block]) if index == 0
                                 else b"".join(block)).digest()
            if replay:
                if index >= len(fingerprints) or fingerprints[index][0] != fingerprint:
                    raise _FileChanged(lineno + 1)
                checked = fingerprints[index][1]
            index += 1
        if not block:
            raise ExportFileError(
                f"{name} ends without its trailer line after {count} events: the file is "
                "truncated (an interrupted copy or export); export it again")
        trailer = None
        while len(block) > 1 and not block[-1].strip():  # blank lines after the trailer
            block.pop()
        if block[-1].startswith(_TRAILER_KEY):
            trailer = block.pop()
        try:
            if not checked and not all([line.startswith(prefix) and line.endswith(end)
                                        and line[43:53] == mid for line in block]):
                raise ValueError("not the usual shape")
            digests = a2b_hex(b"".join([line[11:43] for line in block]))
        except ValueError:
            digests, raws = _slow_block(block, name, lineno)
            usual = False
        else:
            raws = [line[53:-2] for line in block]
            usual = True
        if not replay:
            order.update(digests)
            if fingerprints is not None:
                fingerprints.append((fingerprint, usual))
        if raws:
            yield lineno + 1, digests, raws
        lineno += len(block)
        count += len(block)
        if trailer is not None:
            lineno += 1
            if replay:  # the same bytes as the checked trailer block: checked then
                return
            _check_trailer(trailer, name, lineno, count, order.hexdigest())
            if fp.readline().strip():
                raise ExportFileError(f"{name}: text after the trailer (line {lineno + 1})")
            return


def _slow_block(block: list[bytes], name: str, lineno: int) -> tuple[bytes, list[bytes]]:
    """One block line by line: tolerates CRLF ends; names the first bad line."""
    digests, raws = [], []
    for k, line in enumerate(block, start=lineno + 1):
        if line.startswith(_TRAILER_KEY):
            raise ExportFileError(f"{name}, line {k}: the trailer is not the last line")
        if not (line.startswith(_PREFIX) and line[43:53] == _MID):
            raise ExportFileError(
                f"{name}, line {k}: not an event line of a runlog export (was the file "
                "edited or reformatted?)")
        body = line.rstrip(b"\r\n")
        if not body.endswith(b"}}"):
            raise ExportFileError(f"{name}, line {k}: the event line is cut short")
        try:
            digests.append(a2b_hex(body[11:43]))
        except ValueError:
            raise ExportFileError(f"{name}, line {k}: the digest is not 32 hex digits") from None
        raws.append(body[53:-1])
    return b"".join(digests), raws


def _check_trailer(line: bytes, name: str, lineno: int, count: int, order: str) -> None:
    try:
        end = codec.loads_plain(line)["runlog_export_end"]
        said, said_order = end["events"], end["digest"]
    except Exception:
        raise ExportFileError(f"{name}, line {lineno}: damaged trailer") from None
    if said != count:
        raise ExportFileError(
            f"{name}: the trailer announces {said} events but the file holds {count}; "
            "lines were removed or added")
    if said_order != order:
        raise ExportFileError(
            f"{name}: the events are not in the order they were exported in (the "
            "trailer's digest differs); lines were moved or replaced")


_STREAM_KEY = b'{"kind":"stream","run_id":"'
_END_KEY = b'{"kind":"end","run_id":"'
_START_KEY = b'{"kind":"start","run_id":"'
_FAST_KINDS = ((_STREAM_KEY, "stream"), (_START_KEY, "start"), (_END_KEY, "end"))
"""An envelope's first bytes tell its kind, and so where its run id starts."""


def _envelope_ids(raw: bytes, name: str, lineno: int, *,
                  full: bool = False) -> tuple[str, str, str | None]:
    """``(kind, run_id, trace_id)`` of an envelope, or a clear error.

    The envelope's key order is fixed (:mod:`runlog.events`), so kind and run id are
    read from the first bytes without parsing the JSON; ``trace_id`` (None unless
    ``full`` or the fast read does not apply) comes from a full parse. The fast read
    applies when the run id is written without escapes: its bytes are then its UTF-8.
    """
    if not full:
        for key, kind in _FAST_KINDS:
            if raw.startswith(key):
                at = len(key)
                end = raw.find(b'"', at)
                rid = raw[at:end]
                if end > 0 and b"\\" not in rid:
                    try:
                        return kind, rid.decode(), None
                    except UnicodeDecodeError:
                        pass  # the full parse names the problem
                break
    try:
        env = codec.loads_plain(raw)
        kind, run_id, trace_id = env["kind"], env["run_id"], env["trace_id"]
    except Exception:
        raise ExportFileError(
            f"{name}, line {lineno}: the event is not a runlog envelope") from None
    if kind not in ("start", "stream", "end") or not isinstance(run_id, str) \
            or not isinstance(trace_id, str):
        raise ExportFileError(f"{name}, line {lineno}: the event is not a runlog envelope")
    return kind, run_id, trace_id


def _check_line(runs: dict[str, _RunState], digest: bytes, raw: bytes, name: str,
                lineno: int, full: bool) -> tuple[str, _RunState, bool]:
    """Advance one run's chain by one line; return ``(run_id, state, is_new_run)``.

    ``full`` parses every envelope as JSON; otherwise only start events are parsed and
    the others are identified by their first bytes (the chain digests still cover
    every byte of every line).
    """
    kind, run_id, trace_id = _envelope_ids(raw, name, lineno, full=full)
    state = runs.get(run_id)
    if state is None:
        if kind != "start":
            raise ExportFileError(
                f"{name}, line {lineno}: run {run_id}'s first event is a {kind} event, "
                "not its start; exports hold whole runs, so the file was edited")
        if chain_digest(None, raw) != digest:
            raise ExportFileError(
                f"{name}, line {lineno} (run {run_id}): the event's bytes do not match its "
                "hash-chain digest; the line was edited")
        if trace_id is None:
            trace_id = _envelope_ids(raw, name, lineno, full=True)[2]
        state = runs[run_id] = _RunState(str(trace_id), digest, ended=False)
        _check_values(raw, kind, run_id, state, name, lineno)
        return run_id, state, True
    if state.ended or kind == "start":
        what = "starts again" if kind == "start" else "has an event after its end"
        raise ExportFileError(
            f"{name}, line {lineno}: run {run_id} {what}; two exports were concatenated "
            "or the file was edited (import the files one by one)")
    if chain_digest(state.digest, raw) != digest:
        raise ExportFileError(
            f"{name}, line {lineno} (run {run_id}): the event's bytes do not match the "
            "hash chain; the line was edited, or lines were reordered")
    state.digest = digest
    state.count += 1
    state.ended = kind == "end"
    _check_values(raw, kind, run_id, state, name, lineno)
    return run_id, state, False


# ------------------------------------------------------------------ field checks

_REQUIRED = ("kind", "run_id", "parent_id", "trace_id", "name", "run_type", "tags",
             "metadata", "time", "data")


def _field_error(name: str, lineno: int, run_id: str, what: str) -> ExportFileError:
    return ExportFileError(f"{name}, line {lineno} (run {run_id}): {what}")


def _kind_of(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_envelope(env: Any, kind: str, run_id: str, state: _RunState, name: str,
                    lineno: int) -> None:
    """Every field of one parsed envelope is what readers and both backends can take.

    Run before anything is written, so a file that holds one bad value writes nothing
    (a store cannot repair a value once committed: a ``tags`` that is not a list makes
    every listing fail, a time past 64 bits wedges the batch). Later events of a run
    must repeat its start's trace id, parent id, name and type, as a recorder writes
    them. ``kind`` and ``run_id`` are the ones the hash chain was checked under.
    """
    if type(env) is not dict:
        raise _field_error(name, lineno, run_id, "the event is not a JSON object")
    for key in _REQUIRED:
        if key not in env:
            raise _field_error(name, lineno, run_id, f"the event has no `{key}`")
    if env["kind"] != kind or env["run_id"] != run_id:
        raise _field_error(name, lineno, run_id,
                           "the event gives its kind or run id twice")
    trace_id, parent_id = env["trace_id"], env["parent_id"]
    if type(trace_id) is not str or not trace_id:
        raise _field_error(name, lineno, run_id,
                           f"`trace_id` must be a non-empty string, not {_kind_of(trace_id)}")
    if parent_id is not None and (type(parent_id) is not str or not parent_id):
        raise _field_error(name, lineno, run_id, "`parent_id` must be null or a non-empty "
                           f"string, not {_kind_of(parent_id)}")
    for key in ("name", "run_type"):
        value = env[key]
        if type(value) is not str or not value:
            raise _field_error(name, lineno, run_id,
                               f"`{key}` must be a non-empty string, not {_kind_of(value)}")
    tags = env["tags"]
    if type(tags) is not list or not all(type(t) is str for t in tags):
        raise _field_error(name, lineno, run_id, "`tags` must be a list of strings")
    if type(env["metadata"]) is not dict:
        raise _field_error(name, lineno, run_id, "`metadata` must be an object, not "
                           f"{_kind_of(env['metadata'])}")
    t = env["time"]
    if type(t) is not int:
        raise _field_error(name, lineno, run_id, "`time` must be integer microseconds, "
                           f"not {_kind_of(t)}")
    if not TIME_MIN <= t <= TIME_MAX:
        raise _field_error(name, lineno, run_id, f"`time` {t} is out of range (years 1 "
                           "to 9999 in microseconds since the epoch)")
    if "channel" in env and (kind != "stream" or type(env["channel"]) is not str):
        raise _field_error(name, lineno, run_id,
                           "`channel` must be a string, on stream events only")
    if "error" in env and (kind != "end" or not (env["error"] is None
                                                 or type(env["error"]) is dict)):
        raise _field_error(name, lineno, run_id,
                           "`error` must be null or an object, on end events only")
    if "inputs" in env and kind != "end":
        raise _field_error(name, lineno, run_id, "`inputs` belongs to end events only")
    if kind == "start":
        if parent_id == run_id:
            raise _field_error(name, lineno, run_id, "the run is its own parent")
        if (parent_id is None) != (trace_id == run_id):
            raise _field_error(
                name, lineno, run_id,
                "a root run's `trace_id` is its own id, and only a root's is"
                if parent_id is None else
                f"`trace_id` {trace_id} is the run's own id, but it has a parent")
        state.run_id, state.line = run_id, lineno
        state.start = (parent_id, env["name"], env["run_type"])
        return
    if trace_id != state.trace_id:
        raise _field_error(name, lineno, run_id, f"`trace_id` {trace_id} is not the one "
                           f"its start event gives ({state.trace_id})")
    if (parent_id, env["name"], env["run_type"]) != state.start:
        raise _field_error(name, lineno, run_id, "`parent_id`, `name` or `run_type` differs "
                           f"from its start event's (line {state.line})")


def _check_values(raw: bytes, kind: str, run_id: str, state: _RunState, name: str,
                  lineno: int) -> None:
    """:func:`_check_envelope` for one line, cheaply for a run's stream events.

    A run's stream events share their first bytes up to ``"time":`` (see
    :func:`_stream_head`); once the members those bytes hold passed the check, an event
    that starts with them is checked by parsing only the rest, which must hold nothing
    but ``time``, ``data`` and ``channel`` (another key would override a checked one).
    """
    head = state.check_head
    if raw.startswith(head):
        try:
            rest = orjson.loads(b'{"time":' + raw[len(head):])
        except orjson.JSONDecodeError:
            rest = None
        if rest is not None:
            t, n = rest["time"], len(rest)
            if (t.__class__ is int and TIME_MIN <= t <= TIME_MAX and "data" in rest
                    and (n == 2 or (n == 3 and rest.get("channel").__class__ is str))):
                return
    try:
        env = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise _field_error(name, lineno, run_id, f"the event is not valid JSON ({e})") \
            from None
    _check_envelope(env, kind, run_id, state, name, lineno)
    if kind == "stream" and state.check_head == b"\n":
        found = _stream_head(raw, run_id)
        if found is not None:
            # The head's own members must pass too: an event that starts with them and
            # holds only time and data in its rest parses to them. When they do not
            # (this event gives a key twice), every such event fails its full check.
            head = found[0]
            members = orjson.loads(head[:-len(_TIME_KEY)] + b',"time":0,"data":0}')
            try:
                _check_envelope(members, kind, run_id, state, name, lineno)
            except ExportFileError:
                return
            state.check_head = head


def _check_tree(runs: dict[str, _RunState], store: StoreLike | None,
                name: str) -> None:
    """Each run's parent is in its trace, and following parents ends (no cycle).

    Parents are looked up in the file, then in ``store`` (a subtree export's top run
    has a parent the file does not hold, which is allowed: it may be nowhere).
    """
    outside: dict[str, Any] = {}

    def parent_of(run_id: str) -> tuple[str | None, str | None]:
        s = runs.get(run_id)
        if s is not None:
            return s.start[0], s.trace_id
        if run_id not in outside:
            info = store.backend.get_run(run_id) if store is not None else None
            outside[run_id] = None if info is None else (info.parent_id, info.trace_id)
        found = outside[run_id]
        return found if found is not None else (None, None)

    done: set[str] = set()
    for run_id, s in runs.items():
        path: list[str] = []
        on_path: set[str] = set()
        cur: str | None = run_id
        while cur is not None and cur not in done:
            if cur in on_path:
                loop = path[path.index(cur):]
                shown = " -> ".join(loop[:4]) + (" ..." if len(loop) > 4 else "")
                raise ExportFileError(
                    f"{name}, line {s.line} (run {run_id}): the runs' parents form a cycle "
                    f"({shown} -> {cur}); the file was edited")
            path.append(cur)
            on_path.add(cur)
            parent, trace = parent_of(cur)
            if parent is not None:
                p_trace = parent_of(parent)[1]
                if p_trace is not None and p_trace != trace:
                    line = runs[cur].line if cur in runs else s.line
                    raise ExportFileError(
                        f"{name}, line {line} (run {cur}): its parent {parent} is in trace "
                        f"{p_trace}, not in the run's own trace {trace}")
            cur = parent
        done.update(path)


@contextmanager
def _open_source(source: str | os.PathLike[str] | IO[bytes],
                 seekable: bool = False) -> Iterator[tuple[IO[bytes], str]]:
    """A binary reader for ``source`` (a path, ``"-"`` for stdin, or a file object).

    With ``seekable=True`` a stream that cannot seek (a pipe) is first copied to a
    temporary file, because an import reads the file twice (check, then write).
    """
    import sys

    if isinstance(source, str | os.PathLike) and str(source) != "-":
        path = Path(source)
        try:
            fp = path.open("rb", buffering=1 << 20)
        except FileNotFoundError:
            raise ExportFileError(f"no export file at {path}") from None
        with fp:
            yield fp, str(path)
        return
    if isinstance(source, str | os.PathLike):
        stream: IO[bytes] = sys.stdin.buffer
        name = "<stdin>"
    else:
        stream, name = source, getattr(source, "name", "<stream>")
    if not seekable or (stream.seekable() and stream.tell() == 0):
        yield stream, str(name)
        return
    with tempfile.TemporaryFile() as tmp:
        shutil.copyfileobj(stream, tmp, 1 << 20)
        tmp.seek(0)
        yield tmp, str(name)


# ----------------------------------------------------------------------- verify


@dataclass(frozen=True, slots=True)
class FileReport:
    """What :func:`verify_jsonl` found in an export file."""

    events: int
    runs: int
    ok: bool
    first_error: str | None = None


def verify_jsonl(source: str | os.PathLike[str] | IO[bytes]) -> FileReport:
    """Check an export file on its own: header, every line's hash chain, the trailer.

    Every event's bytes must hash to its digest chained to the previous event of the
    same run (from the genesis value for a run's start), each run must start with its
    start event and have nothing after its end, and the trailer's count must match, so
    an edited, reordered, removed, added or truncated line is reported.
    """
    runs: dict[str, _RunState] = {}
    events = 0
    try:
        with _open_source(source) as (fp, name):
            for lineno, digest, raw in _iter_lines(fp, name):
                _check_line(runs, digest, raw, name, lineno, True)
                events += 1
            _check_tree(runs, None, name)
    except ExportFileError as e:
        return FileReport(events, len(runs), False, str(e))
    return FileReport(events, len(runs), True)


# ----------------------------------------------------------------------- import


@dataclass(slots=True)
class ImportResult:
    """What :func:`import_jsonl` did."""

    events: int = 0
    """Events written to the store."""
    runs: int = 0
    """Runs started in the store by this import."""
    skipped_events: int = 0
    """Events the store already had (``on_conflict="skip"``)."""
    skipped_runs: list[str] = field(default_factory=list)
    """Runs the store already had in full or in part (``on_conflict="skip"``)."""
    first_seq: int | None = None
    last_seq: int | None = None


OnConflict = Literal["error", "skip"]


def import_jsonl(store: StoreLike, source: str | os.PathLike[str] | IO[bytes], *,
                 on_conflict: OnConflict = "error", batch_size: int = 2000,
                 progress: Progress | None = None) -> ImportResult:
    """Append the events of a JSONL export to ``store``, keeping run ids, order and bytes.

    The file is read twice. The first pass checks it completely (as
    :func:`verify_jsonl` does) and looks up which of its runs the store already has;
    nothing is written unless the whole file is sound and the conflicts are resolved.
    The second pass appends through the backend's ``append`` in batches of
    ``batch_size`` events (one transaction each), with the digests the first pass
    verified, so the imported runs verify exactly like the originals; it writes only
    blocks of the file that are byte for byte the ones the first pass checked.

    Args:
        on_conflict: what to do with runs the store already has.
            ``"error"`` (default): refuse the whole import with
            :class:`~runlog.ImportConflictError` before writing anything.
            ``"skip"``: deduplicate. A run the store has is skipped when the store's
            events are the file's events, or a prefix of them; the rest of the run
            (say, a run that was still streaming when first exported) is appended. A
            run id whose events differ from the file's is still an error.
        progress: called with the number of events handled, for progress bars.

    Raises:
        ExportFileError: the file is truncated, edited or not an export, or it changed
            while it was being imported (the error says how many events were).
        ImportConflictError: runs of the file are already in the store (see above).

    An import is not one transaction: if it is interrupted, the batches committed so
    far stay, and running it again with ``on_conflict="skip"`` completes it. Two
    imports of the same file running *at the same time* are not detected.
    """
    if on_conflict not in ("error", "skip"):
        raise ValueError(f"on_conflict must be 'error' or 'skip', not {on_conflict!r}")
    with _open_source(source, seekable=True) as (fp, name):
        start_at = fp.tell()
        before = _file_state(fp)
        fingerprints: _Fingerprints = []
        runs = _check_pass(store, fp, name, on_conflict, fingerprints)
        if _file_state(fp) != before:
            raise ExportFileError(
                f"{name} changed while it was being checked; nothing was imported. Import "
                "it once nothing writes to it")
        fp.seek(start_at)
        return _write_pass(store, fp, name, runs, fingerprints, batch_size, progress)


def _store_digests(store: StoreLike, trace_id: str, run_id: str) -> Iterator[bytes]:
    """The digests of one run's events in the store, in order."""
    q = EventQuery(after=0, limit=5000, trace_id=trace_id, run_ids=frozenset({run_id}),
                   digests=True)
    while True:
        page, high = store.backend.read(q)
        for e in page:
            if e.digest is not None:
                yield e.digest
        if len(page) < q.limit:
            return
        q = EventQuery(after=high, limit=q.limit, trace_id=trace_id, run_ids=q.run_ids,
                       digests=True)


def _store_chain(store: StoreLike, trace_id: str, run_id: str,
                 at: int) -> tuple[int, bytes | None]:
    """How many events the store has for a run, and its digest at position ``at``."""
    count, found = 0, None
    for d in _store_digests(store, trace_id, run_id):
        count += 1
        if count == at:
            found = d
    return count, found


def _check_pass(store: StoreLike, fp: IO[bytes], name: str, on_conflict: OnConflict,
                fingerprints: _Fingerprints) -> dict[str, _RunState]:
    """Verify the whole file and compare its runs with the store's (no writes).

    Every event's digest is checked against its bytes here, once; ``fingerprints`` gets
    a hash per block, so the write pass can trust the digests of the blocks it reads
    again instead of recomputing them (:func:`_iter_blocks`).
    """
    runs: dict[str, _RunState] = {}
    open_runs: dict[bytes, _RunState] = {}  # run id bytes (no escapes) -> its open run
    empty_store = store.last_seq() == 0
    known: dict[str, dict[str, int]] = {}  # trace id -> {run id: event count} in the store
    chain = hashlib.blake2b(digest_size=16).copy  # chain_digest, a little faster
    stream_key, end_key = _STREAM_KEY, _END_KEY
    stream_at, end_at = len(_STREAM_KEY), len(_END_KEY)
    last_key, last = b"\0", _RunState("", b"", ended=True)  # the last stream's run
    loads, t_min, t_max = orjson.loads, TIME_MIN, TIME_MAX
    for first, digests, raws in _iter_blocks(fp, name, fingerprints=fingerprints):
        for k, raw in enumerate(raws):
            digest = digests[16 * k:16 * k + 16]
            # The common case, inline: a stream or end event of an open run whose id is
            # written without escapes (what _check_line does, minus the calls); a model's
            # tokens come in a row, so first: a stream event of the same run as the last.
            state = None
            if raw.startswith(last_key) and not last.ended:
                state = last
                ended = False
            elif raw.startswith(stream_key):
                end = raw.find(b'"', stream_at)
                if end > 0:
                    state = open_runs.get(raw[stream_at:end])
                    if state is not None:
                        last_key, last = raw[:end + 1], state
                ended = False
            elif raw.startswith(end_key):
                end = raw.find(b'"', end_at)
                if end > 0:
                    state = open_runs.get(raw[end_at:end])
                ended = True
            if state is not None:
                h = chain()
                h.update(state.digest)
                h.update(raw)
                if h.digest() != digest:
                    raise ExportFileError(
                        f"{name}, line {first + k}: the event's bytes do not match the hash "
                        "chain; the line was edited, or lines were reordered")
                state.digest = digest
                state.count += 1
                if raw.startswith(state.check_head):  # _check_values, inline
                    try:
                        rest = loads(b'{"time":' + raw[len(state.check_head):])
                        t = rest["time"]
                        n = len(rest)
                        if not (t.__class__ is int and t_min <= t <= t_max and "data" in rest
                                and (n == 2 or (n == 3
                                                and rest.get("channel").__class__ is str))):
                            rest = None
                    except orjson.JSONDecodeError:
                        rest = None
                    if rest is None:
                        _check_values(raw, "end" if ended else "stream", state.run_id, state,
                                      name, first + k)
                else:
                    _check_values(raw, "end" if ended else "stream", state.run_id, state,
                                  name, first + k)
                if ended:
                    state.ended = True
                    del open_runs[raw[end_at:end]]
            else:
                run_id, state, new = _check_line(runs, digest, raw, name, first + k, False)
                if new:
                    if "\\" not in run_id and '"' not in run_id:
                        open_runs[run_id.encode("utf-8", "surrogatepass")] = state
                    if not empty_store:  # a run the store may already have
                        in_trace = known.get(state.trace_id)
                        if in_trace is None:
                            in_trace = known[state.trace_id] = {
                                r.run_id: r.event_count
                                for r in store.runs(trace_id=state.trace_id)}
                        if run_id in in_trace:
                            state.store_count, _ = _store_chain(store, state.trace_id,
                                                                run_id, 0)
                        else:
                            other = store.backend.get_run(run_id)
                            if other is not None:
                                raise ImportConflictError(
                                    f"{name}, line {first + k}: run {run_id} is already in "
                                    f"{store.location} in another trace ({other.trace_id}, "
                                    f"not {state.trace_id}); nothing was imported. Two "
                                    "different runs share this id: import into another "
                                    "store")
                elif state.ended:
                    open_runs.pop(run_id.encode("utf-8", "surrogatepass"), None)
            if state.store_count and state.count == state.store_count:
                state.store_digest = digest  # compared with the store's last digest below
    _check_tree(runs, None if empty_store else store, name)
    conflicts = [rid for rid, s in runs.items() if s.store_count]
    if not conflicts:
        return runs
    if on_conflict == "error":
        shown = ", ".join(conflicts[:3]) + (" ..." if len(conflicts) > 3 else "")
        raise ImportConflictError(
            f"{len(conflicts)} of the {len(runs)} runs in {name} are already in "
            f"{store.location} ({shown}); nothing was imported. Was this file imported "
            "before? Pass --skip-existing (on_conflict='skip') to import only what the "
            "store lacks")
    for rid in conflicts:
        s = runs[rid]
        at = min(s.store_count, s.count)
        count, store_digest = _store_chain(store, s.trace_id, rid, at)
        mine = s.store_digest if s.store_count <= s.count else None
        if mine is None:  # the store has more of this run than the file: compare at the end
            mine = s.digest
        s.store_match = count == s.store_count and store_digest == mine
        if not s.store_match:
            raise ImportConflictError(
                f"run {rid} is in {store.location} with events that differ from those in "
                f"{name}; nothing was imported. Two different runs share this id: import "
                "into another store")
    return runs


def _file_state(fp: IO[bytes]) -> tuple[int, int, int] | None:
    """Size, modification time and inode of a real file (None for other streams)."""
    try:
        st = os.fstat(fp.fileno())
    except (AttributeError, OSError, ValueError):  # io.BytesIO has no fileno
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def _write_pass(store: StoreLike, fp: IO[bytes], name: str, runs: dict[str, _RunState],
                fingerprints: _Fingerprints, batch_size: int,
                progress: Progress | None) -> ImportResult:
    """Append every event the store lacks, in file order, in batches.

    Batches are committed by a helper thread while the next one is parsed (SQLite does
    its work without the GIL), so reading the file and writing the store overlap the
    way recording and the group-commit writer do. Each block must hash to the
    fingerprint the check pass took (:func:`_iter_blocks`), so the digests it holds
    are the ones checked, and are written as they are. Every envelope is parsed here
    (the check pass reads only the first bytes of most of them): one that is not
    valid JSON, or whose parsed kind and run id are not the ones its first bytes gave
    the check pass, stops the import.
    """
    result = ImportResult()
    result.skipped_runs = [rid for rid, s in runs.items() if s.store_count]
    batch: list[Pending] = []
    appender = _Appender(store, result)
    # orjson itself rather than codec.loads_plain (the same call behind one more Python
    # frame): this loop competes with the committing thread for the GIL, per event
    loads = orjson.loads
    record = tuple.__new__
    skipping = bool(result.skipped_runs)
    # The last streaming run's head (_stream_head): its next stream events are parsed
    # from their time on. "\n" never starts a line.
    head, head_at, head_state = b"\n", 0, _RunState("", b"")
    h_run: Any = ""
    h_trace: Any = ""
    h_name: Any = ""
    h_type: Any = ""
    tail_keys = _STREAM_TAIL_KEYS
    changed: _FileChanged | None = None
    try:
        for first, digests, raws in _iter_blocks(fp, name, fingerprints=fingerprints,
                                                 replay=True):
            for k, raw in enumerate(raws):
                try:
                    if raw.startswith(head):
                        rest = loads(b'{"time":' + raw[head_at:])  # validates it all
                        time_us = rest["time"]
                        if time_us.__class__ is int and tail_keys.issuperset(rest):
                            if skipping:
                                head_state.written += 1
                                if head_state.written <= head_state.store_count:
                                    result.skipped_events += 1
                                    continue
                            batch.append(record(Pending, (
                                h_run, h_trace, "stream", h_name, h_type, time_us, raw,
                                digests[16 * k:16 * k + 16], None, None)))
                            size = len(batch)
                            if size & 0x1F == 0:
                                time.sleep(0)  # hand the GIL over (see below)
                            if size >= batch_size:
                                appender.put(batch)
                                if progress is not None:
                                    progress(len(batch))
                                batch = []
                            continue
                    env = loads(raw)
                    run_id = env["run_id"]
                    kind = env["kind"]
                    state = runs[run_id]
                    if kind != "stream" or not raw.startswith(state.stream_key):
                        _check_ids(raw, kind, run_id, name, first + k)
                        if kind == "stream":
                            state.stream_key = _STREAM_KEY + codec.dumps_plain(run_id)[1:]
                    if skipping:
                        state.written += 1
                        if state.written <= state.store_count:
                            result.skipped_events += 1
                            continue
                    time_us = env["time"]
                    if kind == "stream" and time_us.__class__ is int:
                        pending = record(Pending, (
                            run_id, env["trace_id"], "stream", env["name"], env["run_type"],
                            time_us, raw, digests[16 * k:16 * k + 16], None, None))
                        if state is not head_state:  # another run streams now
                            if not state.head:
                                found = _stream_head(raw, run_id)
                                state.head, state.head_fields = found or (b"\n", ())
                            if state.head_fields:
                                head, head_at, head_state = state.head, len(state.head), state
                                h_run, h_trace, h_name, h_type = state.head_fields
                    else:  # an end event is its run's last: its place is the run's count
                        pending = _pending(env, raw, digests[16 * k:16 * k + 16],
                                           state.count, name, first + k)
                        if kind == "end":  # nothing follows: let the run's head go
                            state.head, state.head_fields = b"\n", ()
                except ExportFileError:
                    raise
                except Exception:
                    raise ExportFileError(f"{name}, line {first + k}: the event is not a "
                                          "runlog envelope") from None
                batch.append(pending)
                size = len(batch)
                if size & 0x1F == 0:
                    # hand the GIL to the committing thread (see runlog/store/writer.py:
                    # a busy parser would otherwise keep it for 5 ms switch intervals)
                    time.sleep(0)
                if size >= batch_size:
                    appender.put(batch)
                    if progress is not None:
                        progress(len(batch))
                    batch = []
        if batch:
            appender.put(batch)
            if progress is not None:
                progress(len(batch))
    except _FileChanged as e:
        changed = e
    finally:
        appender.close()
    if changed is not None:
        raise ExportFileError(
            f"{name} changed while it was being imported (from line {changed.lineno} on, "
            f"it is not what was checked); {result.events} events were imported before "
            "that. Import the file again with --skip-existing (on_conflict='skip') once "
            "nothing writes to it")
    result.runs = sum(1 for rid, s in runs.items() if not s.store_count)
    return result


_TIME_KEY = b',"time":'
_STREAM_TAIL_KEYS = frozenset({"time", "channel", "data"})


def _stream_head(raw: bytes, run_id: str) -> tuple[bytes, tuple[Any, Any, Any, Any]] | None:
    """The bytes the next stream events of ``raw``'s run start with, and their fields.

    A recorder builds every event of a run around one pre-encoded header, so a run's
    stream events are the same bytes up to their ``"time":``. If what precedes the
    first ``,"time":`` of ``raw`` is a JSON object once closed, that point lies between
    two top-level members (inside a string or a nested value it would not close). An
    envelope that starts with the same bytes then parses exactly when
    ``{"time":`` followed by its remaining bytes does (the parser is in the same state
    there), and to the head's members followed by that object's: so the write pass
    parses only the remaining bytes, and takes kind, run id, trace id, name and run type
    from the head as long as the rest holds no other key (a repeated ``run_id`` in it
    would win in a full parse). Returns ``(head, (run id, trace id, name, run type))``,
    or None when ``raw`` does not split this way (every event is then parsed whole).
    """
    at = raw.find(_TIME_KEY)
    if at < 0:
        return None
    try:
        members = codec.loads_plain(raw[:at] + b"}")
        fields = (members["run_id"], members["trace_id"], members["name"],
                  members["run_type"])
    except Exception:
        return None
    if members.get("kind") != "stream" or fields[0] != run_id:
        return None  # the full parse of raw says otherwise: a key comes again after
    return raw[:at + len(_TIME_KEY)], fields


def _check_ids(raw: bytes, kind: Any, run_id: Any, name: str, lineno: int) -> None:
    """The kind and run id an envelope parses to must be the ones the check pass read.

    The check pass reads them from the first bytes (:func:`_envelope_ids`); they differ
    only when a key is repeated, and then the line's digest was checked against another
    run's chain than the one it would be written to.
    """
    if _envelope_ids(raw, name, lineno)[:2] != (kind, run_id):
        raise ExportFileError(
            f"{name}, line {lineno}: the event is not a runlog envelope (it gives its kind "
            "or run id twice)")


def _pending(env: dict[str, Any], raw: bytes, digest: bytes, count: int, name: str,
             lineno: int) -> Pending:
    """:func:`runlog.store.base.pending_from_raw` from an envelope already parsed.

    The same record (a test holds them equal), without parsing the bytes a second time
    and with the digest the check pass verified.
    """
    try:
        kind = env["kind"]
        time_us = env["time"]
        run_id = env["run_id"]
        run_row: tuple[Any, ...] | None = None
        if kind == "start":
            run_row = (env.get("parent_id"), codec.dumps_plain(env.get("tags", [])),
                       codec.dumps_plain(env.get("metadata", {})))
        elif kind == "end":
            err = env.get("error")
            run_row = ("error" if err is not None else "ok",
                       codec.dumps_plain(err) if err is not None else None, count)
        elif kind != "stream":
            raise ValueError(kind)
        if not isinstance(time_us, int):
            raise ValueError(time_us)
        return Pending(run_id, env["trace_id"], kind, env["name"], env["run_type"],
                       time_us, raw, digest, run_row)
    except Exception:
        raise ExportFileError(
            f"{name}, line {lineno}: the event is not a runlog envelope") from None


class _Appender:
    """Commits batches through ``backend.append`` on a helper thread, in order.

    At most two batches wait, so memory stays bounded; the first failure stops the
    thread and is raised in the importing thread by the next :meth:`put` or by
    :meth:`close`. A busy database is retried with the writer's patience.
    """

    def __init__(self, store: StoreLike, result: ImportResult) -> None:
        self.store = store
        self.result = result
        self.writer = WriterInfo(writer_id=new_run_id())
        self.error: BaseException | None = None
        self.queue: queue.Queue[list[Pending] | None] = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self._run, name="runlog-import", daemon=True)
        self.thread.start()

    def put(self, batch: list[Pending]) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(batch, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Wait for the queued batches, end this import's writer lease, raise a failure."""
        while self.thread.is_alive():
            try:
                self.queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self.thread.join()
        if self.result.events:
            try:
                self.store.backend.heartbeat(self.writer, time.time_ns() // 1000, closing=True)
            except Exception:  # the lease expires by itself; only an open run's label waits
                pass
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        result = self.result
        while True:
            batch = self.queue.get()
            if batch is None:
                return
            try:
                last = self._append(batch)
            except BaseException as e:
                self.error = e
                while True:  # unblock a producer waiting on a full queue
                    try:
                        self.queue.get_nowait()
                    except queue.Empty:
                        break
                return
            if result.first_seq is None:
                result.first_seq = last - len(batch) + 1
            result.last_seq = last
            result.events += len(batch)

    def _append(self, batch: list[Pending]) -> int:
        backend = self.store.backend
        delay = 0.001
        while True:
            try:
                return backend.append(batch, self.writer, time.time_ns() // 1000)
            except Exception as e:
                if not backend.is_transient(e):
                    if self.result.events:
                        raise StoreError(
                            f"could not append to {self.store.location}: {e}. "
                            f"{self.result.events} events were imported before this; run "
                            "the import again with --skip-existing (on_conflict='skip') to "
                            "finish it") from e
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
