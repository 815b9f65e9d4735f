"""Lossless JSONL exports: round trips, the file format, verification, imports."""

from __future__ import annotations

import datetime as dt
import io
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from forged_jsonl import seal
from hypothesis import given
from hypothesis import strategies as st

import runlog
from runlog.cli.core import record_demo
from runlog.exporters import export, import_jsonl, verify_jsonl
from runlog.exporters.jsonl import HEADER, export_jsonl
from runlog.store.base import Pending, WriterInfo
from tests.conftest import BACKENDS, make_store


def jsonl(store: runlog.Store, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    export(store, "jsonl", buf, **kwargs)
    return buf.getvalue()


def demo_store(store: runlog.Store) -> str:
    root = record_demo(store)
    store.flush()
    return root


# --------------------------------------------------------------------- generated streams

plain_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: {"$rl:int": ...}
    | st.floats(allow_nan=True, allow_infinity=True)  # NaN and ±Inf are tagged
    | st.text(max_size=8)  # lone surrogates included
    | st.binary(max_size=12)
    | st.datetimes(timezones=st.none() | st.just(dt.UTC))
    | st.timedeltas()
    | st.uuids()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        | st.dictionaries(st.integers(), inner, max_size=2)
        | st.frozensets(st.integers(), max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def run_scripts(draw: st.DrawFn) -> dict[str, Any]:
    """Runs (a forest), their streamed chunks interleaved, and how each one ends."""
    n = draw(st.integers(1, 6))
    runs = []
    for i in range(n):
        runs.append({
            "parent": draw(st.none() | st.integers(0, i - 1)) if i else None,
            "name": draw(plain_text.filter(bool)),
            "run_type": draw(st.sampled_from(["chain", "chat_model", "tool", "llm"])),
            "tags": draw(st.lists(plain_text, max_size=2)),
            "metadata": draw(st.dictionaries(plain_text, values, max_size=2)),
            "inputs": draw(values),
            "ending": draw(st.sampled_from(["ok", "error", "open"])),
            "outputs": draw(values),
        })
    ops = draw(st.lists(st.tuples(st.integers(0, n - 1),
                                  st.sampled_from(["stream", "token", "event"]), values),
                        max_size=12))
    return {"runs": runs, "ops": ops}


def record(store: runlog.Store, script: dict[str, Any]) -> None:
    handles: list[runlog.Run] = []
    for spec in script["runs"]:
        kwargs = {"inputs": spec["inputs"], "tags": spec["tags"], "metadata": spec["metadata"]}
        if spec["parent"] is None:
            h = store.start_run(spec["name"], spec["run_type"], parent=None, **kwargs)
        else:
            h = handles[spec["parent"]].start_child(spec["name"], spec["run_type"], **kwargs)
        handles.append(h)
    for i, op, value in script["ops"]:
        h = handles[i]
        if op == "stream":
            h.stream(value)
        elif op == "token":
            h.token("tok", chunk=value)
        else:
            h.event("custom", value)
    for h, spec in reversed(list(zip(handles, script["runs"], strict=True))):
        if spec["ending"] == "ok":
            h.end(outputs=spec["outputs"])
        elif spec["ending"] == "error":
            h.end(outputs=spec["outputs"], error=ValueError("boom \ud800"))
    store.flush()


@pytest.mark.parametrize("target_kind", BACKENDS)
@given(script=run_scripts())
def test_export_import_export_is_byte_identical(script: dict[str, Any],
                                                target_kind: str) -> None:
    """export(import(export(x))) == export(x), byte for byte, and the chains verify."""
    with tempfile.TemporaryDirectory() as tmp, runlog.open(":memory:") as source, \
            make_store(target_kind, Path(tmp)) as target:
        record(source, script)
        first = jsonl(source)
        assert verify_jsonl(io.BytesIO(first)).ok
        result = import_jsonl(target, io.BytesIO(first))
        assert result.events == source.last_seq()
        assert jsonl(target) == first
        assert target.verify().ok
        assert [e.raw for e in target.events()] == [e.raw for e in source.events()]
        # the same file again: refused, then deduplicated
        with pytest.raises(runlog.ImportConflictError):
            import_jsonl(target, io.BytesIO(first))
        again = import_jsonl(target, io.BytesIO(first), on_conflict="skip")
        assert again.events == 0
        assert again.skipped_events == result.events
        assert jsonl(target) == first


# --------------------------------------------------------------------- round trips


@pytest.mark.parametrize("target_kind", BACKENDS)
def test_round_trip_between_backends(store: runlog.Store, target_kind: str,
                                     tmp_path: Path) -> None:
    """Every backend exports what every backend imports: ids, order, bytes, chains."""
    root = demo_store(store)
    data = jsonl(store)
    (tmp_path / "t").mkdir()
    with make_store(target_kind, tmp_path / "t") as target:
        import_jsonl(target, io.BytesIO(data))
        assert jsonl(target) == data
        assert target.verify().ok
        src = {r.run_id: r for r in store.runs()}
        dst = {r.run_id: r for r in target.runs()}
        assert src.keys() == dst.keys()
        for rid, r in src.items():
            d = dst[rid]
            assert (d.name, d.parent_id, d.trace_id, d.status, d.event_count, d.tags) == (
                r.name, r.parent_id, r.trace_id, r.status, r.event_count, r.tags)
            assert d.start_time == r.start_time
            assert d.end_time == r.end_time
        assert [e.raw for e in target.replay(root)] == [e.raw for e in store.replay(root)]


def test_file_layout(store: runlog.Store) -> None:
    """Header, one line per event with the stored bytes verbatim, trailer with the count."""
    demo_store(store)
    lines = jsonl(store).splitlines(keepends=True)
    assert lines[0] == HEADER
    assert lines[-1].startswith(b'{"runlog_export_end":{"events":%d,"digest":"'
                                % (len(lines) - 2))
    events = list(store.events(digests=True))
    assert len(events) == len(lines) - 2
    for e, line in zip(events, lines[1:-1], strict=True):
        assert e.digest is not None
        assert line == b'{"digest":"' + e.digest.hex().encode() + b'","event":' + e.raw + b"}\n"


def test_the_run_count_ignores_data_that_looks_like_a_start() -> None:
    with runlog.open(":memory:") as store:
        with store.run("a", inputs={"x": "", "event": {"kind": "start", "y": 1}}) as r:
            r.stream({"q": "", "event": {"kind": "start", "z": 2}})
            with r.child("b"):
                pass
        assert b'","event":{"kind":"start",' in b"".join(e.raw for e in store.events())
        result = export_jsonl(store, io.BytesIO())
        assert (result.events, result.runs) == (5, 2)


def test_pages_change_nothing_in_the_file(store: runlog.Store) -> None:
    """However the store is paged, the file is the same; SQLite is read in small pages."""
    from runlog.store.sqlite import SQLiteBackend

    for i in range(3):
        with store.run(f"r{i}", run_type="chat_model") as r:
            for k in range(400):
                r.token(f"t{k}")
    store.flush()
    n = store.last_seq()
    assert n > 2 * SQLiteBackend.bulk_page_rows == 1000
    limits: list[int] = []
    read_rows = store.backend.read_rows

    def spy(q: Any) -> Any:
        limits.append(q.limit)
        return read_rows(q)

    store.backend.read_rows = spy  # type: ignore[method-assign]
    whole = export_jsonl(store, buf := io.BytesIO())
    expected = 500 if isinstance(store.backend, SQLiteBackend) else 5000
    assert set(limits) == {expected} == {store.backend.bulk_page_rows}
    assert (whole.events, whole.runs) == (n, 3)
    for page_size in (1, 7, n, n + 1):
        other = io.BytesIO()
        assert export_jsonl(store, other, page_size=page_size) == whole
        assert other.getvalue() == buf.getvalue()
    assert verify_jsonl(io.BytesIO(buf.getvalue())).ok


def test_an_export_to_a_path_is_written_past_the_buffer(tmp_path: Path) -> None:
    """A path gets the bytes a file object gets, written straight to the file."""
    from runlog.exporters import jsonl as jsonl_module

    with runlog.open(tmp_path / "runs.db") as store:
        for _ in range(3):
            demo_store(store)
        export_jsonl(store, tmp_path / "runs.jsonl", page_size=7)
        assert (tmp_path / "runs.jsonl").read_bytes() == jsonl(store)
        assert not (tmp_path / "runs.jsonl.partial").exists()

    class Short(io.FileIO):
        """Writes at most 1000 bytes per call, as an OS may."""

        calls = 0

        def write(self, b: Any) -> int:
            Short.calls += 1
            return super().write(bytes(b)[:1000])

    data = bytes(range(256)) * 40
    with io.BufferedWriter(Short(tmp_path / "short", "w")) as fp:
        fp.write(b"head")  # buffered: flushed before the direct writes
        write = jsonl_module._unbuffered(fp)
        write(data)
        write(b"tail")
    assert (tmp_path / "short").read_bytes() == b"head" + data + b"tail"
    assert Short.calls >= len(data) // 1000
    with io.BufferedWriter(io.BytesIO()) as other:  # not a file: written as usual
        assert jsonl_module._unbuffered(other) == other.write


def test_selection_by_run_trace_and_filter(store: runlog.Store) -> None:
    """--run exports the run's subtree, --trace a trace, a filter whole matching runs."""
    root = demo_store(store)
    other = demo_store(store)
    model = next(r for r in store.trace_runs(root) if r.name == "FakeChatModel")
    by_run = jsonl(store, run_id=model.run_id)
    assert by_run.count(b'"event":') == model.event_count
    by_trace = jsonl(store, trace_id=other)
    assert by_trace.count(b'"event":') == sum(r.event_count for r in store.trace_runs(other))
    assert root.encode() not in by_trace
    tools = jsonl(store, filter=runlog.Filter(include_types=["tool"]))
    assert tools.count(b'"kind":"start"') == 4  # word_count and fact_check, twice
    assert verify_jsonl(io.BytesIO(tools)).ok
    # a selected subtree imports on its own and re-exports identically
    with runlog.open(":memory:") as target:
        import_jsonl(target, io.BytesIO(by_run))
        assert jsonl(target) == by_run
        assert target.verify().ok


def test_import_keeps_the_targets_own_events(tmp_path: Path) -> None:
    """Imported events come after the target's own, in the same relative order."""
    with runlog.open(":memory:") as source, runlog.open(tmp_path / "t.db") as target:
        root = demo_store(source)
        own = demo_store(target)
        before = target.last_seq()
        result = import_jsonl(target, io.BytesIO(jsonl(source)))
        assert result.first_seq == before + 1
        assert result.last_seq == target.last_seq() == before + source.last_seq()
        assert jsonl(target, trace_id=root) == jsonl(source)
        assert jsonl(target, trace_id=own).count(b'"event":') == before
        assert target.verify().ok


def test_import_appends_in_batches(store: runlog.Store) -> None:
    """The import goes through the backend's append, one call per batch."""
    demo_store(store)
    data = jsonl(store)
    n = store.last_seq()
    calls: list[int] = []
    with runlog.open(":memory:") as target:
        append = target.backend.append

        def counting(batch: Sequence[Pending], writer: WriterInfo, hb: int) -> int:
            calls.append(len(batch))
            return append(batch, writer, hb)

        target.backend.append = counting  # type: ignore[method-assign]
        import_jsonl(target, io.BytesIO(data), batch_size=16)
    assert sum(calls) == n
    assert calls == [16] * (n // 16) + ([n % 16] if n % 16 else [])


def test_unfinished_runs_import_as_abandoned_then_complete_with_skip(tmp_path: Path) -> None:
    """A run exported mid-stream imports as abandoned; a later export completes it."""
    with runlog.open(":memory:") as source, runlog.open(tmp_path / "t.db") as target:
        run = source.start_run("model", "chat_model")
        run.token("a")
        source.flush()
        early = jsonl(source)
        run.token("b")
        run.end(outputs="ab")
        source.flush()
        late = jsonl(source)
        import_jsonl(target, io.BytesIO(early))
        assert target.run_info(run.id).status == "abandoned"
        with pytest.raises(runlog.ImportConflictError, match="already in"):
            import_jsonl(target, io.BytesIO(late))
        result = import_jsonl(target, io.BytesIO(late), on_conflict="skip")
        assert (result.events, result.skipped_events) == (2, 2)
        assert jsonl(target) == late
        info = target.run_info(run.id)
        assert (info.status, info.event_count) == ("ok", 4)
        assert target.verify().ok
        # the older file now adds nothing: the store holds more of the run than it
        assert import_jsonl(target, io.BytesIO(early), on_conflict="skip").events == 0


def test_same_run_id_with_different_events_is_a_conflict_even_with_skip() -> None:
    with runlog.open(":memory:") as a, runlog.open(":memory:") as b, \
            runlog.open(":memory:") as target:
        for store, answer in ((a, "yes"), (b, "no")):
            with store.run("q", run_id="0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b") as r:
                r.end(outputs=answer)
        import_jsonl(target, io.BytesIO(jsonl(a)))
        with pytest.raises(runlog.ImportConflictError, match="differ"):
            import_jsonl(target, io.BytesIO(jsonl(b)), on_conflict="skip")
        assert target.last_seq() == 2  # nothing was written


# --------------------------------------------------------------------- damaged files


def tamper(data: bytes, line: int, old: bytes, new: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    assert old in lines[line]
    lines[line] = lines[line].replace(old, new, 1)
    return b"".join(lines)


def flip_digest(lines: list[bytes], i: int) -> bytes:
    """The file with the first hex digit of line ``i``'s digest changed."""
    if len(lines) <= i:
        return b""
    line = lines[i]
    digit = b"1" if line[11:12] == b"0" else b"0"
    return b"".join([*lines[:i], line[:11] + digit + line[12:], *lines[i + 1:]])


def damaged_variants(data: bytes) -> dict[str, bytes]:
    lines = data.splitlines(keepends=True)
    return {
        "edited value": tamper(data, 3, b'"kind":"', b'"kind": "'),
        "edited digest": flip_digest(lines, 2),
        "truncated": b"".join(lines[:-1]),
        "cut mid-line": data[: len(data) // 2],
        "two runs swapped": b"".join([lines[0], lines[2], lines[1], *lines[3:]]),
        "one run reordered": b"".join([*lines[:-3], lines[-2], lines[-3], lines[-1]]),
        "line removed": b"".join([*lines[:5], *lines[6:]]),
        "concatenated": data + data,
        "not an export": b'{"hello":1}\n',
        "empty": b"",
    }


DAMAGES = ["edited value", "edited digest", "truncated", "cut mid-line", "two runs swapped",
           "one run reordered",
           "line removed", "concatenated", "not an export", "empty"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_verify_and_import_refuse_a_damaged_file(damage: str) -> None:
    """Edited, reordered, removed or truncated lines are reported; nothing is imported."""
    with runlog.open(":memory:") as source, runlog.open(":memory:") as target:
        demo_store(source)
        data = damaged_variants(jsonl(source))[damage]
        report = verify_jsonl(io.BytesIO(data))
        assert not report.ok
        assert report.first_error
        with pytest.raises(runlog.ExportFileError):
            import_jsonl(target, io.BytesIO(data))
        assert target.last_seq() == 0


def test_verify_names_the_edited_line() -> None:
    with runlog.open(":memory:") as source:
        demo_store(source)
        data = tamper(jsonl(source), 7, b'"time":', b'"time":1')
    report = verify_jsonl(io.BytesIO(data))
    assert not report.ok
    assert report.first_error is not None
    assert "line 8" in report.first_error
    assert report.events == 6


def test_import_from_a_pipe_is_spooled(tmp_path: Path) -> None:
    """A stream that cannot seek (stdin) is read twice through a temporary copy."""

    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._src = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, b: Any) -> int:
            chunk = self._src.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    with runlog.open(":memory:") as source, runlog.open(":memory:") as target:
        demo_store(source)
        data = jsonl(source)
        import_jsonl(target, io.BufferedReader(Pipe(data)))
        assert jsonl(target) == data


def test_awkward_values_survive_exactly() -> None:
    """NaN, big ints, lone surrogates, bytes, tuples and datetimes come back equal."""
    value = {"nan": math.nan, "big": 2**200, "s": "a\udc80b", "b": b"\x00\xff",
             "t": (1, (2,)), "when": dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)}
    with runlog.open(":memory:") as source, runlog.open(":memory:") as target:
        with source.run("odd", inputs=value, metadata={"m": (b"x",)}) as r:
            r.stream(value)
            r.end(outputs=value)
        import_jsonl(target, io.BytesIO(jsonl(source)))
        events = list(target.events())
        assert [e.kind for e in events] == ["start", "stream", "end"]
        got = events[1].data
        assert math.isnan(got["nan"])
        assert got["big"] == 2**200
        assert got["s"] == "a\udc80b"
        assert got["b"] == b"\x00\xff"
        assert got["t"] == (1, (2,))
        assert got["when"] == value["when"]
        assert events[0].metadata == {"m": (b"x",)}


def test_read_rows_is_read_without_objects(store: runlog.Store) -> None:
    """Backend.read_rows gives read's page as (seq, raw, digest hex), high-water included."""
    from runlog.store.base import EventQuery

    root = demo_store(store)
    for q in (EventQuery(after=3, limit=7, digests=True),
              EventQuery(after=0, limit=1000, trace_id=root, digests=True),
              EventQuery(after=0, limit=5, until=4)):
        events, high = store.backend.read(q)
        rows, rows_high = store.backend.read_rows(q)
        assert rows_high == high
        assert [(r[0], r[1]) for r in rows] == [(e.seq, e.raw) for e in events]
        assert [r[2] for r in rows] == [
            e.digest.hex().encode() if q.digests and e.digest else b"" for e in events]


def test_an_interrupted_import_is_completed_with_skip(store: runlog.Store) -> None:
    """A failing batch stops the import with a clear error; --skip-existing finishes it."""
    demo_store(store)
    demo_store(store)
    data = jsonl(store)
    with runlog.open(":memory:") as target:
        append = target.backend.append
        calls = 0

        def failing(batch: Sequence[Pending], writer: WriterInfo, hb: int) -> int:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise OSError("disk full")
            return append(batch, writer, hb)

        target.backend.append = failing  # type: ignore[method-assign]
        with pytest.raises(runlog.StoreError, match=r"disk full.*--skip-existing"):
            import_jsonl(target, io.BytesIO(data), batch_size=10)
        assert target.last_seq() == 20
        target.backend.append = append  # type: ignore[method-assign]
        with pytest.raises(runlog.ImportConflictError):
            import_jsonl(target, io.BytesIO(data))
        result = import_jsonl(target, io.BytesIO(data), on_conflict="skip")
        assert result.skipped_events == 20
        assert jsonl(target) == data
        assert target.verify().ok


def test_crlf_and_a_final_blank_line_are_accepted() -> None:
    """A file that went through a Windows editor or a mail client still imports."""
    with runlog.open(":memory:") as source, runlog.open(":memory:") as target:
        demo_store(source)
        data = jsonl(source)
        mangled = data.replace(b"\n", b"\r\n") + b"\r\n"
        assert verify_jsonl(io.BytesIO(mangled)).ok
        import_jsonl(target, io.BytesIO(mangled))
        assert jsonl(target) == data


def test_small_blocks_read_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines are read in blocks; a block boundary anywhere changes nothing."""
    from runlog.exporters import jsonl as mod

    with runlog.open(":memory:") as source:
        demo_store(source)
        demo_store(source)
        data = jsonl(source)
    whole = list(mod._iter_lines(io.BytesIO(data), "f"))
    original = mod._iter_blocks
    for size in (1, 500, 4000):
        monkeypatch.setattr(mod, "_iter_blocks",
                            lambda fp, name, size=size: original(fp, name, size))
        assert list(mod._iter_lines(io.BytesIO(data), "f")) == whole
        assert verify_jsonl(io.BytesIO(data)).ok
        truncated = data[: data.rindex(b"\n", 0, len(data) - 1) + 1]
        assert not verify_jsonl(io.BytesIO(truncated)).ok


def test_import_builds_the_records_pending_from_raw_builds() -> None:
    """The import's one-parse record builder agrees with the store's own rebuild."""
    from runlog import codec
    from runlog.exporters.jsonl import _pending
    from runlog.store.base import pending_from_raw

    with runlog.open(":memory:") as source:
        demo_store(source)
        with source.run("odd", inputs={"x": b"\x00"}, metadata={"t": (1,)}) as r:
            r.end(error=ValueError("no"))
        previous: dict[str, tuple[bytes | None, int]] = {}
        for e in source.events(digests=True):
            prev, count = previous.get(e.run_id, (None, 0))
            count += 1
            assert e.digest is not None
            mine = _pending(codec.loads_plain(e.raw), e.raw, e.digest, count, "f", 1)
            assert mine == pending_from_raw(e.raw, prev, count)
            previous[e.run_id] = (e.digest, count)


def test_ids_are_read_from_the_first_bytes_when_possible() -> None:
    """The check pass reads kind and run id without parsing (trace_id None says so)."""
    from runlog.exporters.jsonl import _envelope_ids

    with runlog.open(":memory:") as source:
        demo_store(source)
        with source.run("quoted", run_id='id-with-"quote"') as r:
            r.end()
        for e in source.events():
            kind, run_id, trace_id = _envelope_ids(e.raw, "f", 1)
            assert (kind, run_id) == (e.kind, e.run_id)
            assert trace_id is None or '"' in run_id  # an escaped id takes the slow path
            assert _envelope_ids(e.raw, "f", 1, full=True) == (e.kind, e.run_id, e.trace_id)


# --------------------------------------------------------------------- the two passes


def test_import_hands_append_the_records_pending_from_raw_builds() -> None:
    """Every record the import appends (columns, bytes, digest, runs row) is the one
    the store's own rebuild makes from the envelope."""
    from runlog.store.base import pending_from_raw

    with runlog.open(":memory:") as source, runlog.open(":memory:") as target:
        demo_store(source)
        with source.run("odd", inputs={"x": b"\x00"}, metadata={"t": (1,)},
                        run_id='id-with-"quote"') as r:
            r.stream({"y": 2**70})
            r.token("t")
            r.end(error=ValueError("no"))
        # stream events parsed from their time on (the head of the run before), or not:
        # keys of the envelope inside metadata and data, interleaved runs, a float chunk
        with source.run("keys", metadata={"a": 0, "time": 1, "b": {"c": 0, "time": 2}}) as k, \
                source.run("plain", tags=["x"]) as p:
            for i in range(3):
                k.stream({"time": i, "run_id": "no", "kind": "end"})
                p.token("a", chunk={"time": i})
                p.token("b")
                p.event("custom", {"name": "run_id", ',"time":': 1.5})
        appended: list[Pending] = []
        append = target.backend.append

        def recording(batch: Sequence[Pending], writer: WriterInfo, hb: int) -> int:
            appended.extend(batch)
            return append(batch, writer, hb)

        target.backend.append = recording  # type: ignore[method-assign]
        import_jsonl(target, io.BytesIO(jsonl(source)), batch_size=7)
        expected, previous = [], {}
        for e in source.events():
            prev, count = previous.get(e.run_id, (None, 0))
            p = pending_from_raw(e.raw, prev, count + 1)
            previous[e.run_id] = (p.digest, count + 1)
            expected.append(p)
        assert appended == expected
        assert [type(p) for p in appended] == [Pending] * len(expected)


@pytest.mark.parametrize("which", [1, 2])
def test_a_repeated_run_id_key_is_refused(which: int) -> None:
    """A line whose digests were forged for the run its first bytes name, but which
    parses to another run (a repeated key), refuses the whole file before anything is
    written: as the run's first stream event, or as its second (its rest parsed alone)."""
    with runlog.open(":memory:") as source, runlog.open(":memory:") as target:
        with source.run("a") as a:
            a.stream(1)
            a.stream(2)
        with source.run("b") as b:
            b.stream(3)
        raws = [e.raw for e in source.events()]
        assert raws[which].startswith(b'{"kind":"stream","run_id":"' + a.id.encode())
        raws[which] = raws[which][:-1] + b',"run_id":"' + b.id.encode() + b'"}'
        data = seal(raws)
        with pytest.raises(runlog.ExportFileError,
                           match=rf"line {which + 2}.*run id twice"):
            import_jsonl(target, io.BytesIO(data), batch_size=1)
        assert target.last_seq() == 0  # refused by the check pass: nothing written
        assert target.verify().ok


@pytest.mark.parametrize("broken", ["id only", "after the time"])
def test_invalid_json_behind_forged_digests_is_refused(broken: str) -> None:
    """The check pass parses every envelope (whole, or from its time on after an
    earlier event of its run), so an envelope that is not JSON refuses the whole file
    before anything is written."""
    with runlog.open(":memory:") as source, runlog.open(":memory:") as target:
        with source.run("a") as a:
            a.stream(1)
            a.stream(2)
        raws = [e.raw for e in source.events()]
        if broken == "id only":
            raws[2] = b'{"kind":"stream","run_id":"' + a.id.encode() + b'",oops}'
        else:
            raws[2] = raws[2][:-1] + b',oops}'
        data = seal(raws)
        assert not verify_jsonl(io.BytesIO(data)).ok
        with pytest.raises(runlog.ExportFileError, match=r"line 4 .*not valid JSON"):
            import_jsonl(target, io.BytesIO(data), batch_size=1)
        assert target.last_seq() == 0
        assert target.verify().ok
        assert all(e.kind for e in target.events())


def many_traces(n: int = 12) -> bytes:
    with runlog.open(":memory:") as source:
        for _ in range(n):
            demo_store(source)
        return jsonl(source)


CHANGES = ["edited", "truncated", "another export", "extended"]


@pytest.mark.parametrize("change", CHANGES)
def test_a_file_changed_between_the_passes_is_refused(change: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The write pass writes only blocks that hash as they did in the check pass.

    The change comes after the check pass and keeps the file's size, so only the
    block fingerprints can see it; the blocks before it are imported, and the error
    says so. Importing the intact file with skip completes the import.
    """
    from runlog.exporters import jsonl as mod

    data = many_traces()
    lines = data.splitlines(keepends=True)
    at = 2 * len(lines) // 3
    changed = {
        "edited": flip_digest(lines, at),
        "truncated": data[: data.index(b"\n", len(data) // 2) + 1],
        "another export": many_traces(),
        "extended": data[:-1] + data[:-1],
    }[change]
    monkeypatch.setattr(mod, "_BLOCK_BYTES", 2000)
    check = mod._check_pass
    fp = io.BytesIO(data)

    def check_then_change(*args: Any) -> dict[str, Any]:
        runs = check(*args)
        fp.seek(0)
        fp.truncate()
        fp.write(changed)
        return runs

    monkeypatch.setattr(mod, "_check_pass", check_then_change)
    with runlog.open(":memory:") as target:
        with pytest.raises(runlog.ExportFileError,
                           match="changed while it was being imported") as e:
            import_jsonl(target, fp, batch_size=10)
        written = target.last_seq()
        assert f"{written} events were imported" in str(e.value)
        assert written < len(lines) - 2
        if change == "another export":
            assert written == 0  # the first block already differs
        else:
            assert written > 0
        assert target.verify().ok
        exported = jsonl(target).splitlines(keepends=True)
        assert exported[1:-1] == lines[1:1 + written]  # a prefix of what was checked
        monkeypatch.setattr(mod, "_check_pass", check)
        result = import_jsonl(target, io.BytesIO(data), on_conflict="skip")
        assert result.skipped_events == written
        assert jsonl(target) == data


def test_a_file_changed_during_the_check_pass_is_refused(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A file on disk whose size or time changed while it was checked writes nothing."""
    from runlog.exporters import jsonl as mod

    data = many_traces(2)
    path = tmp_path / "runs.jsonl"
    path.write_bytes(data)
    check = mod._check_pass

    def check_then_append(*args: Any) -> dict[str, Any]:
        runs = check(*args)
        with path.open("ab") as f:
            f.write(b"\n")
        return runs

    monkeypatch.setattr(mod, "_check_pass", check_then_append)
    with runlog.open(":memory:") as target:
        with pytest.raises(runlog.ExportFileError,
                           match="changed while it was being checked; nothing was imported"):
            import_jsonl(target, path)
        assert target.last_seq() == 0
