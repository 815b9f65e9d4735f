"""``runlog migrate --compact``: a format-1 store (the committed fixture, written by main
before the compact layout existed) converted in place or to a new file, resumed after an
interruption, and read back with the same seqs, bytes, digests, runs and views."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import runlog
from runlog.errors import StoreError
from runlog.exporters.jsonl import export_jsonl, verify_jsonl
from runlog.store.copy import compact_sqlite
from runlog.store.sqlite import SQLiteBackend

FIXTURES = Path(__file__).parent / "fixtures" / "format1"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text())
RUNLOG = [sys.executable, "-c", "from runlog.cli import cli; cli()"]


def _events(store: runlog.Store) -> list[dict[str, Any]]:
    return [{"seq": e.seq, "raw": e.raw.decode(), "digest": e.digest.hex(),
             "run_id": e.run_id, "kind": e.kind, "name": e.name}
            for e in store.events(digests=True)]


def _runs(store: runlog.Store) -> list[dict[str, Any]]:
    return [{"run_id": r.run_id, "trace_id": r.trace_id, "parent_id": r.parent_id,
             "name": r.name, "run_type": r.run_type, "status": r.status,
             "event_count": r.event_count, "tags": list(r.tags),
             "start_seq": r.start_seq, "end_seq": r.end_seq}
            for r in store.runs(newest_first=False)]


def _verify(backend: Any) -> str | None:
    report = runlog.Store(backend).verify()
    return None if report.ok else report.first_error


def _layout(path: Path) -> str | None:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'layout'").fetchone()
    finally:
        conn.close()
    return row[0] if row else None


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    db = tmp_path / "store.db"
    shutil.copyfile(FIXTURES / "store.db", db)
    return db


def test_the_cli_converts_in_place_and_keeps_the_original(v1: Path) -> None:
    res = subprocess.run([*RUNLOG, "migrate", "--db", str(v1),
                          "--compact"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    n = len(EXPECTED["events"])
    assert f"converted {n} events" in res.stdout
    assert "digests unchanged" in res.stdout
    assert f"of {n} events" in res.stderr  # progress
    assert _layout(v1) == "compact"
    assert _layout(Path(f"{v1}.wide")) is None
    with runlog.open(v1, create=False) as store:
        assert _events(store) == EXPECTED["events"]
        assert _runs(store) == EXPECTED["runs"]
        assert store.verify().ok
    again = subprocess.run([*RUNLOG, "migrate", "--db", str(v1),
                            "--compact"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "compact layout already" in again.stdout


def test_conversion_to_a_new_file_leaves_the_store_alone(v1: Path, tmp_path: Path) -> None:
    before = v1.read_bytes()
    out = tmp_path / "compact.db"
    report = compact_sqlite(v1, to=out, verify=_verify)
    assert report.kept is None
    assert report.bytes_after < report.bytes_before
    assert v1.read_bytes() == before
    with runlog.open(out, create=False) as store:
        assert _events(store) == EXPECTED["events"]
        # an export of the converted store is the format-1 export of the original
        export_jsonl(store, tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_bytes() == (FIXTURES / "export.jsonl").read_bytes()
    assert verify_jsonl(tmp_path / "again.jsonl").ok
    with pytest.raises(StoreError, match="exists"):
        compact_sqlite(v1, to=out, verify=_verify)


def test_an_interrupted_conversion_resumes(v1: Path) -> None:
    """Half the events copied (as a killed conversion leaves them), then run again."""
    half = len(EXPECTED["events"]) // 2
    partial = SQLiteBackend(f"{v1}.compact", layout="compact")
    src = SQLiteBackend(v1, create=False)
    try:
        from runlog.store.copy import copy_store

        class Stop(Exception):
            pass

        def stop(done: int) -> None:
            if done >= half:
                raise Stop

        with pytest.raises(Stop):
            copy_store(src, partial, batch_size=half, progress=stop)
        assert partial.last_seq() == half
    finally:
        src.close()
        partial.close()
    seen: list[tuple[int, int]] = []
    report = compact_sqlite(v1, verify=_verify, batch_size=5,
                            progress=lambda d, t: seen.append((d, t)))
    assert seen[0][0] > half  # it went on from there
    assert report.events == len(EXPECTED["events"])
    with runlog.open(v1, create=False) as store:
        assert _events(store) == EXPECTED["events"]
        assert store.verify().ok


def test_a_store_with_a_live_writer_is_not_converted_in_place(v1: Path) -> None:
    store = runlog.open(v1, create=False)
    try:
        store.start_run("live").stream(1)
        store.flush()
        with pytest.raises(StoreError, match="live lease"):
            compact_sqlite(v1, verify=_verify)
    finally:
        store.close()
    assert _layout(v1) is None


def test_recording_goes_on_in_the_converted_store(v1: Path) -> None:
    compact_sqlite(v1, verify=_verify)
    with runlog.open(v1, create=False) as store:
        with store.run("after", tags=["new"]) as run:
            run.token("x")
            run.end({"ok": True})
        events = list(store.events(run.id))
        assert [e.kind for e in events] == ["start", "stream", "end"]
        assert events[1].data == {"token": "x", "chunk": None}
        assert events[0].seq == len(EXPECTED["events"]) + 1
        assert store.verify().ok
