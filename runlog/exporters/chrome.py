"""Chrome trace / Perfetto: runs as slices in the Trace Event Format (JSON object form).

Open the file in https://ui.perfetto.dev or chrome://tracing. Layout (``docs/exports.md``):

* one *process* per trace (``pid`` 1, 2, ... in the order traces appear, named after
  the trace's root run and id);
* one *thread* per nesting lane: a run goes on its parent's lane when the parent is the
  innermost open run there, else on the first free lane (a new one if none is free), so
  slices on a thread always nest and concurrent siblings get lanes of their own;
* one complete slice (``"ph":"X"``) per run, from its start to its end, with ``args``
  holding ids, status, tags, metadata, inputs, outputs and the error (each value cut to
  ``max_value_bytes``, default 1024 bytes, ending in ``… (N bytes)`` when cut);
* one instant (``"ph":"i"``, thread scope) per streamed token, output chunk or custom
  event, on the lane of the run that streamed it;
* a counter (``"ph":"C"``, ``tokens/s``) per streaming model run: tokens counted over
  100 ms windows, scaled to tokens per second, dropping to 0 after the last window.
  Tokens are ``token``-channel events, plus output chunks of ``llm``/``chat_model`` runs.

Size: the viewers load a JSON trace whole (chrome://tracing fails on files of a few
hundred MB; Perfetto UI holds everything in the tab's memory), so a file export is
split into parts of at most ``max_bytes`` (default 100 MB): ``trace.json``,
``trace.1.json``, ``trace.2.json``, ... Each part is a complete trace file that loads on
its own (process and thread names are repeated in every part that uses them); a run's
slice is in the part where the run ends, its tokens where they happened. Writing to
standard output or a file object never splits.

Streaming: a slice is written when its run ends; only open runs are kept in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from runlog import codec
from runlog.events import Event
from runlog.exporters._common import (
    ExportResult,
    Output,
    Progress,
    Selection,
    StoreLike,
    is_stream,
    open_output,
    trimmed_json,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_VALUE_BYTES",
    "TOKEN_WINDOW_US",
    "export_chrome",
    "part_paths",
]

DEFAULT_MAX_BYTES = 100_000_000
DEFAULT_MAX_VALUE_BYTES = 1024
MIN_MAX_BYTES = 16_384
TOKEN_WINDOW_US = 100_000
_MODEL_TYPES = frozenset({"llm", "chat_model"})
_HEAD = b'{"displayTimeUnit":"ms","otherData":{"producer":"runlog"},"traceEvents":[\n'
_TAIL = b"\n]}\n"


def part_paths(path: str | os.PathLike[str]) -> Iterator[Path]:
    """``trace.json``, ``trace.1.json``, ``trace.2.json``, ...: the names of the parts."""
    p = Path(path)
    yield p
    stem = p.name[: -len(".json")] if p.name.endswith(".json") else p.name
    i = 1
    while True:
        yield p.with_name(f"{stem}.{i}.json")
        i += 1


def _dumps(value: Any) -> bytes:
    return codec.dumps_plain(value)


class _Parts:
    """The output files: splits at event boundaries so no part exceeds ``max_bytes``."""

    def __init__(self, out: Output, max_bytes: int) -> None:
        self.stream = is_stream(out)
        self.out = out
        self.max_bytes = max_bytes
        self.names: Iterator[Path] = iter(())
        if isinstance(out, str | os.PathLike) and not self.stream:
            self.names = part_paths(out)
        self.files: list[str] = []
        self.fp: IO[bytes] | None = None
        self.size = 0
        self.count = 0
        self.total = 0
        self.named: set[tuple[int, int | None]] = set()
        self._ctx: Any = None

    def _open(self) -> None:
        target: Output = self.out if self.stream else next(self.names)
        ctx = open_output(target)
        self.fp, name = ctx.__enter__()
        self._ctx = ctx
        self.files.append(name)
        self.fp.write(_HEAD)
        self.size, self.count = len(_HEAD), 0
        self.named = set()

    def _close(self) -> None:
        if self.fp is None:
            return
        self.fp.write(_TAIL)
        self.total += self.size + len(_TAIL)
        ctx, self._ctx, self.fp = self._ctx, None, None
        ctx.__exit__(None, None, None)

    def write(self, event: bytes, names: list[tuple[tuple[int, int | None], bytes]]) -> None:
        """Write one trace event, preceded by the process/thread names it needs."""
        if self.fp is None:
            self._open()
        size = len(event) + 2 + sum(len(m) + 2 for key, m in names if key not in self.named)
        if not self.stream and self.count and self.size + size + len(_TAIL) > self.max_bytes:
            self._close()
            self._open()
        fp = self.fp
        assert fp is not None
        for key, m in names:
            if key not in self.named:
                self._raw(fp, m)
                self.named.add(key)
        self._raw(fp, event)

    def _raw(self, fp: IO[bytes], data: bytes) -> None:
        if self.count:
            fp.write(b",\n")
            self.size += 2
        fp.write(data)
        self.size += len(data)
        self.count += 1

    def finish(self) -> None:
        if self.fp is None:
            self._open()
        self._close()
        if not self.stream:  # parts left by an earlier, larger export would mislead
            for stale in self.names:
                if not stale.exists():
                    break
                stale.unlink()

    def abort(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx, self.fp = self._ctx, None, None
            ctx.__exit__(RuntimeError, RuntimeError("export interrupted"), None)


class _Trace:
    __slots__ = ("lanes", "name", "pid")

    def __init__(self, pid: int, name: str) -> None:
        self.pid = pid
        self.name = name
        self.lanes: list[list[str]] = []


class _Slice:
    __slots__ = ("args", "bucket", "bucket_count", "clamp_us", "counter_key", "first_token",
                 "last_us", "name", "run_type", "start_us", "tid", "trace")

    def __init__(self, trace: _Trace, tid: int, name: str, run_type: str, start_us: int,
                 args: dict[str, Any]) -> None:
        self.trace = trace
        self.tid = tid
        self.name = name
        self.run_type = run_type
        self.start_us = start_us
        self.last_us = start_us
        self.args = args
        self.clamp_us: int | None = None
        self.first_token: int | None = None
        self.bucket = 0
        self.bucket_count = 0
        self.counter_key = ""


class _ChromeWriter:
    """Turns events, in seq order, into trace events (see the module docstring)."""

    def __init__(self, parts: _Parts, limit: int) -> None:
        self.parts = parts
        self.limit = limit
        self.traces: dict[str, _Trace] = {}
        self.open: dict[str, _Slice] = {}
        self.runs = 0

    # -- names -----------------------------------------------------------------
    def _names(self, s: _Slice) -> list[tuple[tuple[int, int | None], bytes]]:
        pid, tid = s.trace.pid, s.tid
        return [
            ((pid, None), b'{"ph":"M","name":"process_name","pid":%d,"tid":0,"args":{"name":%b}}'
             % (pid, _dumps(s.trace.name))),
            ((pid, tid), b'{"ph":"M","name":"thread_name","pid":%d,"tid":%d,"args":{"name":%b}}'
             % (pid, tid, _dumps(f"lane {tid}"))),
        ]

    def _emit(self, s: _Slice, event: dict[str, Any]) -> None:
        self.parts.write(_dumps(event), self._names(s))

    # -- runs ------------------------------------------------------------------
    def start(self, env: dict[str, Any]) -> None:
        run_id, trace_id, parent_id = env["run_id"], env["trace_id"], env["parent_id"]
        trace = self.traces.get(trace_id)
        if trace is None:
            trace = self.traces[trace_id] = _Trace(len(self.traces) + 1,
                                                   f"{env['name']} {trace_id}")
        parent = self.open.get(parent_id) if parent_id is not None else None
        tid = None
        if parent is not None and parent.trace is trace:
            lane = trace.lanes[parent.tid]
            if lane and lane[-1] == parent_id:
                tid = parent.tid
        if tid is None:
            tid = next((i for i, lane in enumerate(trace.lanes) if not lane), len(trace.lanes))
            if tid == len(trace.lanes):
                trace.lanes.append([])
        trace.lanes[tid].append(run_id)
        lim = self.limit
        args: dict[str, Any] = {"run_id": run_id, "trace_id": trace_id}
        if parent_id is not None:
            args["parent_id"] = parent_id
        args["run_type"] = env["run_type"]
        if env["tags"]:
            args["tags"] = env["tags"]
        if env["metadata"]:
            args["metadata"] = trimmed_json(env["metadata"], lim)
        args["inputs"] = trimmed_json(env["data"], lim)
        s = _Slice(trace, tid, env["name"], env["run_type"], env["time"], args)
        s.counter_key = f"{env['name']} {run_id[-12:]}"
        self.open[run_id] = s

    def stream(self, env: dict[str, Any]) -> None:
        s = self.open.get(env["run_id"])
        if s is None:  # pragma: no cover - selections keep whole runs
            return
        t = env["time"]
        s.last_us = t
        channel = env.get("channel", "output")
        data = env["data"]
        lim = self.limit
        if channel == "token" and isinstance(data, dict):
            token = data.get("token")
            text = token if isinstance(token, str) else trimmed_json(token, lim)
            self._instant(s, t, text[:32] or "token", "token", {"token": trimmed_json(token, lim)})
            self._count_token(s, t)
        elif channel == "custom" and isinstance(data, dict) and isinstance(data.get("name"), str):
            self._instant(s, t, data["name"], "event", {"data": trimmed_json(data.get("data"),
                                                                           lim)})
        else:
            self._instant(s, t, "chunk", "chunk", {"chunk": trimmed_json(data, lim)})
            if s.run_type in _MODEL_TYPES:
                self._count_token(s, t)

    def _instant(self, s: _Slice, t: int, name: str, cat: str, args: dict[str, Any]) -> None:
        self._emit(s, {"ph": "i", "s": "t", "name": name, "cat": cat, "pid": s.trace.pid,
                       "tid": s.tid, "ts": t, "args": args})

    def _counter(self, s: _Slice, t: int, value: float) -> None:
        self._emit(s, {"ph": "C", "name": "tokens/s", "pid": s.trace.pid, "ts": t,
                       "args": {s.counter_key: value}})

    def _count_token(self, s: _Slice, t: int) -> None:
        if s.first_token is None:
            s.first_token, s.bucket, s.bucket_count = t, 0, 1
            return
        k = max((t - s.first_token) // TOKEN_WINDOW_US, s.bucket)
        if k == s.bucket:
            s.bucket_count += 1
            return
        self._flush_bucket(s)
        if k > s.bucket + 1:  # a silent window: the rate drops to 0 until this token
            self._counter(s, s.first_token + (s.bucket + 1) * TOKEN_WINDOW_US, 0)
        s.bucket, s.bucket_count = k, 1

    def _flush_bucket(self, s: _Slice) -> None:
        assert s.first_token is not None
        self._counter(s, s.first_token + s.bucket * TOKEN_WINDOW_US,
                      s.bucket_count * 1_000_000 / TOKEN_WINDOW_US)

    def end(self, env: dict[str, Any] | None, run_id: str, status: str | None = None) -> None:
        s = self.open.pop(run_id)
        end_us = env["time"] if env is not None else s.last_us
        args = s.args
        if env is not None:
            error = env.get("error")
            args["status"] = "error" if error is not None else "ok"
            args["outputs"] = trimmed_json(env["data"], self.limit)
            if isinstance(error, dict):
                args["error"] = trimmed_json(f"{error.get('type')}: {error.get('message')}",
                                             self.limit)
                args["traceback"] = trimmed_json(error.get("traceback", ""), self.limit)
        else:
            args["status"] = status or "running"
        if s.clamp_us is not None and end_us > s.clamp_us:
            args["outlived_parent_until"] = end_us
            end_us = s.clamp_us
        if s.first_token is not None:
            self._flush_bucket(s)
            self._counter(s, s.first_token + (s.bucket + 1) * TOKEN_WINDOW_US, 0)
        lane = s.trace.lanes[s.tid]
        if lane and lane[-1] == run_id:
            lane.pop()
        elif run_id in lane:  # ended before runs nested under it: keep their slices inside
            at = lane.index(run_id)
            for above in lane[at + 1:]:
                child = self.open.get(above)
                if child is not None:
                    child.clamp_us = min(end_us, child.clamp_us or end_us)
            lane.remove(run_id)
        self._emit(s, {"ph": "X", "name": s.name, "cat": s.run_type, "pid": s.trace.pid,
                       "tid": s.tid, "ts": s.start_us, "dur": max(end_us - s.start_us, 0),
                       "args": args})
        self.runs += 1


def export_chrome(store: StoreLike, out: Output, selection: Selection | None = None, *,
                  progress: Progress | None = None,
                  max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> ExportResult:
    """Write the selected runs as a Trace Event Format file (split by ``max_bytes``)."""
    if max_bytes < MIN_MAX_BYTES:
        raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}, not {max_bytes}")
    sel = (selection or Selection()).pinned(store)
    result = ExportResult("chrome")
    parts = _Parts(out, max_bytes)
    w = _ChromeWriter(parts, max_value_bytes)
    try:
        for page in sel.pages(store):
            for e in page:
                _dispatch(w, e)
            result.events += len(page)
            if progress is not None:
                progress(len(page))
        for run_id in list(w.open):  # runs without an end (yet)
            info = store.backend.get_run(run_id)
            w.end(None, run_id, info.status if info is not None else "running")
        parts.finish()
    except BaseException:
        parts.abort()
        raise
    result.runs = w.runs
    result.files = parts.files
    result.bytes_written = parts.total
    return result


def _dispatch(w: _ChromeWriter, e: Event) -> None:
    env = e.envelope
    kind = env["kind"]
    if kind == "start":
        w.start(env)
    elif kind == "stream":
        w.stream(env)
    elif env["run_id"] in w.open:
        w.end(env, env["run_id"])
