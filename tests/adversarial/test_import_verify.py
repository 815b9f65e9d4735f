"""Hostile JSONL files, hostile stores, read-only stores: refused or read, never a crash.

Issue 15, items 3 (import validates every field, readers survive cycles) and 7
(verify, read-only stores). Forged files re-chain their digests as anyone can: the
BLAKE2b chain is unkeyed, so only the import's own checks stand between a file and
the store.
"""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from forged_jsonl import seal

import runlog
from runlog.cli import cli
from runlog.exporters import import_jsonl, verify_jsonl
from runlog.store.base import pending_from_raw
from runlog.store.writer import WriterInfo


def recorded(n_children: int = 2, tokens: int = 3) -> list[dict[str, Any]]:
    """A root run with children, each streaming, as parsed envelopes in seq order."""
    with runlog.open(":memory:") as source:
        with source.run("root", tags=["t"], metadata={"k": "v"}) as root:
            root.stream("r")
            for i in range(n_children):
                with root.child(f"c{i}") as c:
                    for t in range(tokens):
                        c.stream(f"tok{t}")
        return [orjson.loads(e.raw) for e in source.events()]


def dump(envs: list[dict[str, Any]]) -> bytes:
    return seal([orjson.dumps(e) for e in envs])


def _each_event_of(envs: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    return [e for e in envs if e["run_id"] == run_id]


def _child_ids(envs: list[dict[str, Any]]) -> list[str]:
    return [e["run_id"] for e in envs if e["kind"] == "start" and e["parent_id"]]


def _set_on_run(key: str, value: Any) -> Callable[[list[dict[str, Any]]], int]:
    """Set ``key`` on every event of the first child (as a recorder's header would)."""
    def forge(envs: list[dict[str, Any]]) -> int:
        rid = _child_ids(envs)[0]
        for e in _each_event_of(envs, rid):
            e[key] = value
        return next(i for i, e in enumerate(envs) if e["run_id"] == rid)
    return forge


def _on_stream(key: str, value: Any) -> Callable[[list[dict[str, Any]]], int]:
    """Set ``key`` on the last stream event of the first child only."""
    def forge(envs: list[dict[str, Any]]) -> int:
        rid = _child_ids(envs)[0]
        i = max(i for i, e in enumerate(envs) if e["run_id"] == rid and e["kind"] == "stream")
        envs[i][key] = value
        return i
    return forge


def _cycle(envs: list[dict[str, Any]]) -> int:
    a, b = _child_ids(envs)[:2]
    for e in envs:
        if e["run_id"] == a:
            e["parent_id"] = b
        elif e["run_id"] == b:
            e["parent_id"] = a
    return next(i for i, e in enumerate(envs) if e["run_id"] == a)


def _self_parent(envs: list[dict[str, Any]]) -> int:
    a = _child_ids(envs)[0]
    for e in _each_event_of(envs, a):
        e["parent_id"] = a
    return next(i for i, e in enumerate(envs) if e["run_id"] == a)


def _drop_key(key: str) -> Callable[[list[dict[str, Any]]], int]:
    def forge(envs: list[dict[str, Any]]) -> int:
        del envs[1][key]
        return 1
    return forge


FORGERIES: dict[str, tuple[Callable[[list[dict[str, Any]]], int], str]] = {
    "tags not a list": (_set_on_run("tags", "prod"), "`tags` must be a list"),
    "tags not strings": (_set_on_run("tags", [1, None]), "`tags` must be a list"),
    "metadata not an object": (_set_on_run("metadata", [1]), "`metadata` must be an obj"),
    "name null": (_set_on_run("name", None), "`name` must be a non-empty string"),
    "run_type number": (_set_on_run("run_type", 3), "`run_type` must be a non-empty"),
    "time past int64": (_on_stream("time", 2**63), "`time` .* out of range"),
    "time past year 9999": (_on_stream("time", 2**62), "`time` .* out of range"),
    "time a float": (_on_stream("time", 1.5), "`time` must be integer"),
    "time a bool": (_on_stream("time", True), "`time` must be integer"),
    "stream in another trace": (_on_stream("trace_id", "elsewhere"), "`trace_id`"),
    "stream with another name": (_on_stream("name", "other"), "differs from its start"),
    "stream channel a number": (_on_stream("channel", 5), "`channel`"),
    "stream with an error": (_on_stream("error", {"type": "x"}), "`error`"),
    "no data": (_drop_key("data"), "has no `data`"),
    "no tags": (_drop_key("tags"), "has no `tags`"),
    "parent cycle": (_cycle, "cycle"),
    "own parent": (_self_parent, "its own parent"),
    "root in another trace": (_set_on_run("parent_id", None), "root run's `trace_id`"),
}


@pytest.mark.parametrize("what", list(FORGERIES))
def test_a_forged_value_refuses_the_whole_file(store: runlog.Store, what: str) -> None:
    """Each hostile value is refused before anything is written, naming line and field;
    the store stays empty and readable."""
    forge, message = FORGERIES[what]
    envs = recorded()
    at = forge(envs)
    data = dump(envs)
    with pytest.raises(runlog.ExportFileError, match=message) as info:
        import_jsonl(store, io.BytesIO(data), batch_size=1)
    assert "line " in str(info.value)
    if what not in ("parent cycle", "own parent", "root in another trace"):
        assert f"line {at + 2}" in str(info.value)  # the header is line 1
    assert store.last_seq() == 0
    assert store.runs() == []
    assert not verify_jsonl(io.BytesIO(data)).ok  # verify --file says so too


def test_a_bad_value_after_thousands_of_good_events_writes_nothing(
        store: runlog.Store) -> None:
    """The last of 4,000 events out of range: not one of the 3,999 before it is written."""
    envs = recorded(n_children=4, tokens=1000)
    last_stream = max(i for i, e in enumerate(envs) if e["kind"] == "stream")
    envs[last_stream]["time"] = 2**63 - 1 + 1
    with pytest.raises(runlog.ExportFileError, match=rf"line {last_stream + 2} .*`time`"):
        import_jsonl(store, io.BytesIO(dump(envs)), batch_size=100)
    assert store.last_seq() == 0


def test_a_sound_file_still_imports(store: runlog.Store) -> None:
    envs = recorded()
    result = import_jsonl(store, io.BytesIO(dump(envs)))
    assert result.events == len(envs)
    assert store.verify().ok


def test_a_run_id_the_store_has_in_another_trace_is_refused(store: runlog.Store) -> None:
    """A file's child run whose id the store holds under another trace writes nothing."""
    with store.run("mine") as mine:
        pass
    envs = recorded()
    child = _child_ids(envs)[0]
    for e in envs:
        if e["run_id"] == child:
            e["run_id"] = mine.id
    before = store.last_seq()
    with pytest.raises(runlog.ImportConflictError, match="another trace"):
        import_jsonl(store, io.BytesIO(dump(envs)), on_conflict="skip")
    assert store.last_seq() == before
    assert store.verify().ok


def test_the_cli_prints_one_line_and_leaves_no_store_behind(tmp_path: Path) -> None:
    """A refused import exits non-zero with one line, and removes the store it created."""
    envs = recorded()
    _set_on_run("tags", "prod")(envs)
    src = tmp_path / "bad.jsonl"
    src.write_bytes(dump(envs))
    db = tmp_path / "new.db"
    result = CliRunner().invoke(cli, ["import", str(src), "--db", str(db)])
    assert result.exit_code != 0
    assert "tags" in result.output
    assert "Traceback" not in result.output
    assert not db.exists()
    assert not Path(f"{db}-wal").exists()


# ------------------------------------------------------------------ hostile stores


def _forge_into(store: runlog.Store, envs: list[dict[str, Any]]) -> None:
    """Append envelopes straight through the backend, as another process could."""
    batch = []
    last: dict[str, bytes] = {}
    count: dict[str, int] = {}
    for env in envs:
        raw = orjson.dumps(env)
        rid = env["run_id"]
        count[rid] = count.get(rid, 0) + 1
        pending = pending_from_raw(raw, last.get(rid), count[rid])
        last[rid] = pending.digest
        batch.append(pending)
    store.backend.append(batch, WriterInfo(writer_id="forger"), None)


def test_show_and_diff_survive_a_parent_cycle_in_the_store(sqlite_store: runlog.Store,
                                                           tmp_path: Path) -> None:
    """A store holding a run that is its own parent: show and diff end, each run once."""
    envs = recorded()
    _self_parent(envs)
    _forge_into(sqlite_store, envs)
    sqlite_store.close()
    db = str(tmp_path / "runs.db")
    with runlog.open(db) as s:
        child = next(r for r in s.runs(roots_only=False) if r.parent_id == r.run_id)
    runner = CliRunner()
    for args in (["show", child.run_id], ["show", envs[0]["run_id"]],
                 ["diff", envs[0]["run_id"], child.run_id]):
        result = runner.invoke(cli, [*args, "--db", db])
        assert not isinstance(result.exception, RecursionError), args
        assert "Traceback" not in result.output
    assert runner.invoke(cli, ["show", child.run_id, "--db", db]).output.count(
        child.name) == 1


def test_show_survives_nesting_deeper_than_the_recursion_limit(
        sqlite_store: runlog.Store, tmp_path: Path) -> None:
    runs = []
    with sqlite_store.run("root") as root:
        cur = root
        for i in range(sys.getrecursionlimit() + 50):
            cur = cur.start_child(f"c{i}")
            runs.append(cur)
        for r in reversed(runs):
            r.end()
    sqlite_store.flush()
    result = CliRunner().invoke(cli, ["show", root.id, "--db", str(tmp_path / "runs.db")])
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------ verify


def _sqlite_with_run(tmp_path: Path) -> Path:
    db = tmp_path / "runs.db"
    with runlog.open(db) as s, s.run("a") as r:
        r.stream("x")
    return db


def _edit(db: Path, sql: str) -> None:
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER IF EXISTS events_no_update")
    conn.execute(sql)
    conn.commit()
    conn.close()


@pytest.mark.parametrize("sql", [
    "UPDATE events SET digest = 'zz' || substr(digest, 3) WHERE seq = 2",
    "UPDATE events SET raw = 'not json' WHERE seq = 2",
])
@pytest.mark.usefixtures("wide_sqlite_layout")  # edits its columns
def test_verify_reports_a_damaged_row_in_one_line(tmp_path: Path, sql: str) -> None:
    db = _sqlite_with_run(tmp_path)
    _edit(db, sql)
    result = CliRunner().invoke(cli, ["verify", "--db", str(db)])
    assert result.exit_code == 1
    assert "seq 2" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("column", ["trace_id", "run_id", "kind", "name", "run_type",
                                    "time"])
@pytest.mark.usefixtures("wide_sqlite_layout")  # edits its columns
def test_verify_checks_each_rows_columns_against_its_bytes(tmp_path: Path,
                                                           column: str) -> None:
    db = _sqlite_with_run(tmp_path)
    value = "12345" if column == "time" else "'edited'"
    _edit(db, f"UPDATE events SET {column} = {value} WHERE seq = 2")
    result = CliRunner().invoke(cli, ["verify", "--db", str(db)])
    assert result.exit_code == 1, result.output
    assert f"{column} column" in result.output


@pytest.mark.parametrize("sql", [
    "UPDATE runs SET name = 'renamed'",
    "UPDATE runs SET trace_id = 'elsewhere'",
    "UPDATE runs SET event_count = 7",
    "DELETE FROM runs",
    "INSERT INTO runs SELECT 'ghost', trace_id, parent_id, name, run_type, tags, metadata,"
    " start_seq, start_time, end_seq, end_time, status, error, event_count, writer_id"
    " FROM runs",
])
@pytest.mark.usefixtures("wide_sqlite_layout")  # edits its columns
def test_verify_checks_the_runs_table_against_the_events(tmp_path: Path, sql: str) -> None:
    """The runs projection is rebuilt from the events in thought: an edited, missing or
    extra row is reported, with exit status 1."""
    db = _sqlite_with_run(tmp_path)
    _edit(db, sql)
    result = CliRunner().invoke(cli, ["verify", "--db", str(db)])
    assert result.exit_code == 1, result.output
    assert "runs table" in result.output


def test_verify_passes_a_sound_store(store: runlog.Store) -> None:
    with store.run("a") as a, a.child("b") as b:
        b.stream("x")
    with store.run("c"):
        pass
    assert store.verify().ok


# ------------------------------------------------------------------ read-only stores

def _as_unprivileged() -> list[str] | None:
    """How to run a command so that chmod binds it: as is when not root; as root,
    through ``setpriv`` to nobody (root ignores file modes). None when neither works."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


def _read_only_store() -> Path:
    """A store in a directory, and a file, nobody may write (made by root for nobody)."""
    top = Path(tempfile.mkdtemp(prefix="runlog-ro-"))
    os.chmod(top, 0o755)
    d = top / "store"
    d.mkdir()
    db = d / "runs.db"
    with runlog.open(db) as s, s.run("a") as r:
        r.stream("x")
    os.chmod(db, 0o444)
    os.chmod(d, 0o555)
    return db


@pytest.mark.parametrize("command", ["runs", "show", "replay", "export", "verify"])
def test_read_only_commands_work_on_a_store_nobody_may_write(command: str) -> None:
    """A store in a read-only directory, its file read-only, no -wal or -shm: the
    read-only commands read it (opened read-only), none reports it damaged."""
    prefix = _as_unprivileged()
    if prefix is None:  # pragma: no cover - root without util-linux
        pytest.skip("running as root without setpriv: file modes cannot be enforced")
    db = _read_only_store()
    try:
        with runlog.open(db, create=False) as s:
            run_id = s.runs()[0].run_id
        args = [command] + ([run_id] if command in ("show", "replay") else [])
        proc = subprocess.run(
            [*prefix, str(Path(sys.executable).parent / "runlog"), *args, "--db", str(db)],
            capture_output=True, text=True, check=False, cwd="/")
        assert proc.returncode == 0, proc.stderr
        assert "damaged" not in proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stdout
    finally:
        os.chmod(db.parent, 0o755)
        shutil.rmtree(db.parent.parent)


def test_a_store_opened_read_only_refuses_writes_clearly(tmp_path: Path) -> None:
    """In process, as root too: the read-only URI is what a read-only directory gets;
    reads work through it and a write fails with SQLite's read-only error."""
    db = _sqlite_with_run(tmp_path)
    from runlog.store.sqlite import SQLiteBackend

    backend = SQLiteBackend.__new__(SQLiteBackend)
    SQLiteBackend.__init__(backend, db, create=False)
    backend.close()
    backend._ro_uri = None
    backend.path = db
    backend._open_read_only()
    try:
        assert backend.read_only
        assert backend.last_seq() == 3
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            backend._wconn.execute("INSERT INTO meta VALUES ('x', 'y')")
    finally:
        backend.close()


# -- a malformed SQLite file: one line that says what SQLite found ------------------------
def _recorded_tokens(path: Path, tokens: int) -> None:
    with runlog.open(path) as s, s.run("root", "chain") as root, \
            root.child("llm", "llm") as child:
        for i in range(tokens):
            child.token(f"tok{i}")


def _damage_pages(path: Path) -> None:
    """Overwrite the header of every b-tree page but the schema's with garbage."""
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    pages = len(data) // page_size
    assert pages > 4
    for page in range(2, pages):  # leave page 1 (the schema) readable
        at = page * page_size
        data[at:at + 12] = b"\xff" * 12  # a b-tree page header no SQLite page has
    path.write_bytes(bytes(data))


def test_a_malformed_sqlite_file_gives_one_line_naming_what_is_damaged(
        tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    _recorded_tokens(db, 400)
    _damage_pages(db)
    for args in (["verify"], ["runs"], ["show", "0" * 8]):
        result = CliRunner().invoke(cli, [*args, "--db", str(db)])
        assert result.exit_code != 0, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            result.exception
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, result.output
    result = CliRunner().invoke(cli, ["verify", "--db", str(db)])
    assert "integrity check" in result.output
    assert "Page " in result.output


@pytest.mark.parametrize("column", ["trace_id", "name", "run_type", "kind"])
@pytest.mark.usefixtures("wide_sqlite_layout")  # edits its columns
def test_verify_sees_an_edited_column_on_every_sql_backend(
        column: str, store: runlog.Store, backend_kind: str) -> None:
    """The same check through each SQL backend's own column read (a co-writer of a
    shared PostgreSQL server can edit its TEXT columns)."""
    if backend_kind == "memory":
        pytest.skip("the memory backend keeps no columns apart from the bytes")
    with store.run("root", "chain") as root:
        root.token("x")
    store.flush()
    value = {"kind": "end"}.get(column, "forged")
    if backend_kind == "sqlite":
        _edit(store.backend.path,  # type: ignore[attr-defined]
              f"UPDATE events SET {column} = '{value}' WHERE seq = 2")
    else:
        with store.backend._conn() as conn:  # type: ignore[attr-defined]
            conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
            conn.execute(f"UPDATE events SET {column} = %s WHERE seq = 2", (value,))
    report = store.verify()
    assert not report.ok
    assert report.first_error is not None
    assert f"{column} column" in report.first_error


def test_verify_passes_names_a_backend_escapes_in_its_columns(store: runlog.Store) -> None:
    """PostgreSQL TEXT cannot hold U+0000, so its columns keep such names escaped; the
    column check compares what the escape stands for (hypothesis found this one)."""
    with store.run("a\x00b", "chain\ufffe") as root:
        root.token("x")
    store.flush()
    report = store.verify()
    assert report.ok, report.first_error
