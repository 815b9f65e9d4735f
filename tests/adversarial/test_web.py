"""The web viewer against hostile requests and hostile stores (issue 15).

* exports stream: the first bytes leave before the export is produced, nothing goes
  to the temporary directory, and the bytes are ``runlog export``'s;
* out-of-range cursors and timeouts are 400s with a message, never tracebacks;
* a store that fails (driver errors, a dropped PostgreSQL connection) is a 503;
* a forged store whose values hold class-carrying tags: no API path revives them;
* a forged store with parent cycles: every walk of the run tree ends.

Forged stores are written as raw rows into a SQLite file (what a co-writer of a shared
store, or a damaged file, can hold), not through runlog's own write path.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

import runlog
from runlog.cli import cli
from runlog.errors import CorruptStoreError, StoreError
from runlog.events import chain_digest
from runlog.web import create_app, export_formats
from runlog.web.model import TokenCounter

MAX_SEQ = 2**63 - 1


def client_for(store: runlog.Store) -> TestClient:
    return TestClient(create_app(store), base_url="http://127.0.0.1",
                      raise_server_exceptions=False)


@pytest.fixture
def client(store: runlog.Store) -> Iterator[TestClient]:
    with client_for(store) as c:
        yield c


def record(store: runlog.Store, name: str = "pipeline", *, tokens: int = 3,
           token_text: str = "tok") -> str:
    with store.run(name, "chain", inputs={"q": name}, metadata={"user": "u"}) as root:
        with root.child("Model", "chat_model", inputs={"messages": [name]}) as m:
            for i in range(tokens):
                m.token(f"{token_text}{i} ")
            m.end(outputs={"content": "done"})
        root.end(outputs={"answer": "done"})
    store.flush()
    return root.id


# ------------------------------------------------------------------ forged stores


def envelope(kind: str, run: dict[str, Any], time_us: int, data: Any, **extra: Any) -> bytes:
    env: dict[str, Any] = {
        "kind": kind, "run_id": run["run_id"], "parent_id": run.get("parent_id"),
        "trace_id": run["trace_id"], "name": run.get("name", run["run_id"]),
        "run_type": run.get("run_type", "chain"), "tags": run.get("tags", []),
        "metadata": run.get("metadata", {}), "time": time_us,
    }
    if "channel" in extra:
        env["channel"] = extra.pop("channel")
    env["data"] = data
    env.update(extra)
    return json.dumps(env, separators=(",", ":")).encode()


def forge(db: Path, runs: list[dict[str, Any]]) -> None:
    """Append forged runs to the SQLite store ``db`` as raw rows (events and runs).

    Each run: ``run_id, trace_id, parent_id, metadata, inputs, outputs, tokens,
    error`` (all optional but the ids); the rows are what runlog's writer would have
    made of such envelopes, digests included.
    """
    runlog.open(db).close()  # the schema
    conn = sqlite3.connect(db)
    try:
        seq = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        t = 1_700_000_000_000_000
        for run in runs:
            raws = [envelope("start", run, t, run.get("inputs", {}))]
            raws += [envelope("stream", run, t + 1 + i, {"token": f"t{i}", "chunk": None},
                              channel="token") for i in range(run.get("tokens", 0))]
            end_extra = {"error": run["error"]} if "error" in run else {}
            raws.append(envelope("end", run, t + 100, run.get("outputs"), **end_extra))
            digest = None
            first = seq + 1
            for raw in raws:
                seq += 1
                digest = chain_digest(digest, raw)
                env = json.loads(raw)
                conn.execute(
                    "INSERT INTO events (seq, trace_id, run_id, kind, name, run_type, time, "
                    "raw, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, env["trace_id"], env["run_id"], env["kind"], env["name"],
                     env["run_type"], env["time"], raw.decode(), digest.hex()))
            conn.execute(
                "INSERT INTO runs (run_id, trace_id, parent_id, name, run_type, tags, metadata, "
                "start_seq, start_time, end_seq, end_time, status, error, event_count, "
                "writer_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (run["run_id"], run["trace_id"], run.get("parent_id"),
                 run.get("name", run["run_id"]), run.get("run_type", "chain"),
                 json.dumps(run.get("tags", [])), json.dumps(run.get("metadata", {})),
                 first, t, seq, t + 100, "error" if "error" in run else "ok",
                 json.dumps(run["error"]) if "error" in run else None, len(raws)))
            t += 1000
        conn.commit()
    finally:
        conn.close()


# ------------------------------------------------------------------ streamed exports


def _asgi_get(app: Any, path: str, query: bytes,
              on_body: Callable[[bytes], None]) -> tuple[int, bytes]:
    """One GET straight into the ASGI app; ``on_body`` sees each body chunk as it is
    sent (the TestClient only hands back whole bodies)."""
    status: list[int] = []
    body: list[bytes] = []

    async def main() -> None:
        done = anyio.Event()

        async def receive() -> dict[str, Any]:
            if not body and not status:
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    on_body(message["body"])
                    body.append(message["body"])
                if not message.get("more_body"):
                    done.set()

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": query, "root_path": "", "server": ("127.0.0.1", 8765),
                 "client": ("127.0.0.1", 40000), "headers": [(b"host", b"127.0.0.1")]}
        await app(scope, receive, send)

    anyio.run(main)
    return status[0], b"".join(body)


def test_export_streams_its_first_bytes_before_the_export_is_produced(
        store: runlog.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The download starts while most pages are still unread, and no file is made in
    the temporary directory (before, the whole export was spooled to /tmp first)."""
    # ~1.5 MB: many times what the pipe between exporter and response holds.
    root = record(store, tokens=3000, token_text="x" * 400)
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    monkeypatch.setattr(store.backend, "bulk_page_rows", 5)
    pages = [0]
    read_rows = store.backend.read_rows

    def counting(q: Any) -> Any:
        pages[0] += 1
        return read_rows(q)

    monkeypatch.setattr(store.backend, "read_rows", counting)
    seen: list[tuple[int, list[str]]] = []

    def on_body(chunk: bytes) -> None:
        seen.append((pages[0], os.listdir(spool)))

    status, body = _asgi_get(create_app(store), f"/api/runs/{root}/export",
                             b"format=jsonl", on_body)
    assert status == 200
    total = pages[0]
    assert total > 500  # 3000+ events in pages of 5
    assert seen[0][0] < total / 2, (seen[0], total)
    assert all(files == [] for _, files in seen)
    assert os.listdir(spool) == []
    want = tmp_path / "want.jsonl"
    runlog.export(store, "jsonl", str(want), run_id=root)
    assert body == want.read_bytes()


def test_export_bytes_equal_the_cli_export(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with runlog.open(db) as store:
        root = record(store, "exported", tokens=50)
        record(store, "other")
    with runlog.open(db, create=False) as store, client_for(store) as c:
        for fmt in export_formats():
            got = c.get(f"/api/runs/{root[-12:]}/export?format={fmt}")
            assert got.status_code == 200, got.text
            out = CliRunner().invoke(cli, ["export", "--db", str(db), "--run", root,
                                           "--format", fmt])
            assert out.exit_code == 0, out.output
            assert got.content == out.stdout_bytes, fmt


def test_export_thread_ends_when_the_client_goes_away(
        sqlite_store: runlog.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that disconnects after the first chunk stops the exporter (its next
    write raises) instead of leaving it blocked on a full queue forever."""
    root = record(sqlite_store, tokens=2000)
    monkeypatch.setattr(sqlite_store.backend, "bulk_page_rows", 5)
    before = set(threading.enumerate())

    def gone(chunk: bytes) -> None:
        raise OSError("client disconnected")

    with pytest.raises(OSError, match="client disconnected"):
        _asgi_get(create_app(sqlite_store), f"/api/runs/{root}/export", b"format=jsonl",
                  gone)
    for t in set(threading.enumerate()) - before:
        if t.name.startswith("runlog-web-export"):
            t.join()  # returns: the exporter saw the client go (pytest-timeout guards)
            assert not t.is_alive()


def test_export_failure_before_the_first_byte_is_a_json_error(
        sqlite_store: runlog.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    root = record(sqlite_store)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite_store.backend, "read_rows", broken)
    monkeypatch.setattr(sqlite_store.backend, "last_seq", broken)
    with client_for(sqlite_store) as c:
        r = c.get(f"/api/runs/{root}/export?format=jsonl")
    assert r.status_code == 503
    assert "disk I/O error" in r.json()["error"]


# ------------------------------------------------------------------ 400, not a traceback


@pytest.mark.parametrize(("query", "header", "message"), [
    ("idle_timeout=nan", None, "idle_timeout 'nan'"),
    ("idle_timeout=inf", None, "idle_timeout 'inf'"),
    ("idle_timeout=-inf", None, "idle_timeout '-inf'"),
    ("idle_timeout=-1", None, "idle_timeout '-1'"),
    ("idle_timeout=1e400", None, "idle_timeout '1e400'"),
    ("idle_timeout=soon", None, "idle_timeout 'soon'"),
    (f"after={2**63}", None, "after"),
    (f"after={2**64 + 5}", None, "after"),
    ("after=-2", None, "after"),
    ("after=1.5", None, "after"),
    ("", str(2**63), "Last-Event-ID"),
    ("", str(2**64), "Last-Event-ID"),
    ("", "9" * 400, "Last-Event-ID"),
    ("", "-1", "Last-Event-ID"),
    ("", "abc", "Last-Event-ID"),
    ("", "\u0661\u0662", "Last-Event-ID"),  # Arabic-Indic digits: str.isdigit() is True
])
def test_bad_stream_parameters_are_400(store: runlog.Store, client: TestClient, query: str,
                                       header: str | None, message: str) -> None:
    """Checked before anything is read: a finished run with until_end=1 would
    otherwise answer 204 at once (and an open stream never end)."""
    root = record(store)
    headers = {"last-event-id": header.encode()} if header is not None else {}
    r = client.get(f"/api/stream?run={root}&until_end=1&{query}",
                   headers=headers)  # type: ignore[arg-type]
    assert r.status_code == 400, (r.status_code, r.text)
    assert message in r.json()["error"]


def test_largest_cursor_is_accepted(store: runlog.Store, client: TestClient) -> None:
    root = record(store)
    r = client.get(f"/api/stream?run={root}&until_end=1",
                   headers={"last-event-id": str(MAX_SEQ)})
    assert r.status_code == 204  # past the run's end: nothing will follow
    page = client.get(f"/api/runs/{root}/events?after={MAX_SEQ}").json()
    assert page == {"events": [], "next": MAX_SEQ, "more": False}


@pytest.mark.parametrize("query", [f"after={2**63}", f"after={2**70}", "after=-1",
                                   "limit=0", "limit=1001", "limit=x", "after=0x10"])
def test_bad_event_page_parameters_are_400(store: runlog.Store, client: TestClient,
                                           query: str) -> None:
    root = record(store)
    r = client.get(f"/api/runs/{root}/events?{query}")
    assert r.status_code == 400, (r.status_code, r.text)
    assert "between" in r.json()["error"]


# ------------------------------------------------------------------ 503, not a 500


def _driver_errors() -> list[BaseException]:
    import psycopg
    import sqlalchemy.exc

    return [
        sqlite3.OperationalError("database is locked"),
        sqlite3.DatabaseError("database disk image is malformed"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection dropped")),
        sqlalchemy.exc.DBAPIError("SELECT 1", {}, Exception("connection dropped")),
        StoreError("the store is unavailable"),
        CorruptStoreError("runs.db is damaged"),
    ]


@pytest.mark.parametrize("error", _driver_errors(), ids=lambda e: type(e).__name__)
def test_store_failures_are_503(store: runlog.Store, monkeypatch: pytest.MonkeyPatch,
                                error: BaseException) -> None:
    root = record(store)

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    for method in ("read", "read_rows", "last_seq", "get_run", "find_runs", "trace_runs",
                   "run_ids_with_prefix", "run_ids_with_suffix"):
        monkeypatch.setattr(store.backend, method, fail)
    with client_for(store) as c:
        for path in ("/api/runs", "/api/runs?all=1&q=x", f"/api/runs/{root}",
                     f"/api/runs/{root}/events", f"/api/runs/{root}/export",
                     f"/api/tokens?run={root}", "/api/stream", f"/api/stream?run={root}"):
            r = c.get(path)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.json()["error"].startswith("the store cannot be read"), path
        assert c.get("/api/info").status_code == 200  # no read: still answers


def test_store_failing_mid_stream_sends_unavailable_and_closes(
        sqlite_store: runlog.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    record(sqlite_store)
    calls = [0]
    read = sqlite_store.backend.read

    def fail_later(q: Any) -> Any:
        calls[0] += 1
        if calls[0] > 1:
            raise sqlite3.OperationalError("disk I/O error")
        return read(q)

    monkeypatch.setattr(sqlite_store.backend, "read", fail_later)
    with client_for(sqlite_store) as c, c.stream("GET", "/api/stream?after=0") as r:
        assert r.status_code == 200
        body = r.read().decode()
    blocks = [b for b in body.split("\n\n") if b.startswith("event: unavailable")]
    assert len(blocks) == 1, body
    assert "disk I/O error" in json.loads(blocks[0].split("data: ", 1)[1])["error"]


@pytest.mark.postgres
def test_dropped_postgres_connection_is_503_then_recovers(tmp_path: Path) -> None:
    """pg_terminate_backend of the viewer's pooled connection: the next request is
    answered (a 503, or a 200 when the store reconnects by itself), never a 500, and
    the one after it reads again."""
    import pg_support
    import psycopg

    pg_support.ensure_server()
    store = runlog.open(pg_support.store_url(str(tmp_path)))
    try:
        root = record(store)
        with client_for(store) as c:
            assert c.get("/api/runs").status_code == 200
            # The pool hands back its most recently used connection: the viewer's.
            with store.backend._conn() as conn:  # type: ignore[attr-defined]
                pid = conn.info.backend_pid
            with psycopg.connect(pg_support.libpq_url(), autocommit=True) as admin:
                assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
            r = c.get(f"/api/runs/{root}")
            assert r.status_code in (200, 503), (r.status_code, r.text)
            if r.status_code == 503:
                assert r.json()["error"].startswith("the store cannot be read")
            again = c.get(f"/api/runs/{root}")
            assert again.status_code == 200, again.text
            assert again.json()["run"]["run_id"] == root
    finally:
        store.close()


# ------------------------------------------------------------------ hostile values


def _poison(path: Path) -> dict[str, Any]:
    """A tag that, revived, opens (and so creates) ``path`` for writing."""
    return {"$rl:exception": ["io:FileIO", [str(path), "w"], ""]}


@pytest.mark.usefixtures("wide_sqlite_layout")  # edits its columns
def test_forged_tags_are_never_revived_by_the_api(tmp_path: Path) -> None:
    """Class-carrying tags in metadata, inputs, outputs, chunks and errors of a forged
    store: listing, the run page's API, events, tokens, the stream and exports show
    them as stored and create no file."""
    db = tmp_path / "forged.db"
    victims = {k: tmp_path / f"pwned-{k}" for k in
               ("meta", "inputs", "outputs", "error", "child")}
    forge(db, [
        {"run_id": "root-0001", "trace_id": "root-0001", "name": "forged",
         "metadata": {"k": _poison(victims["meta"]), "big": 2**64 - 1},
         "inputs": {"x": _poison(victims["inputs"])},
         "outputs": [_poison(victims["outputs"])], "tokens": 2,
         "error": {"type": "E", "message": _poison(victims["error"]), "traceback": ""}},
        {"run_id": "child-0002", "trace_id": "root-0001", "parent_id": "root-0001",
         "metadata": {"k": _poison(victims["child"])}, "tokens": 1},
    ])
    with runlog.open(db, create=False) as store, client_for(store) as c:
        listed = c.get("/api/runs")
        assert listed.status_code == 200, listed.text
        (run,) = listed.json()["runs"]
        assert run["metadata"]["k"] == _poison(victims["meta"])  # shown as stored
        assert run["metadata"]["big"] == 2**64 - 1  # digit for digit
        assert run["error"]["message"] == json.dumps(
            _poison(victims["error"]), separators=(",", ":"))
        assert run["token_count"] == 3
        assert c.get("/api/runs?all=1&q=o").status_code == 200
        assert c.get("/api/tokens?run=root-0001&run=child-0002").status_code == 200
        detail = c.get("/api/runs/root-0001")
        assert detail.status_code == 200, detail.text
        assert [r["metadata"]["k"] for r in detail.json()["runs"]] == [
            _poison(victims["meta"]), _poison(victims["child"])]
        assert c.get("/api/runs/child-0002").status_code == 200
        events = c.get("/api/runs/root-0001/events")
        assert events.status_code == 200
        assert len(events.json()["events"]) == 7
        assert c.get("/api/stream?run=root-0001&after=0&until_end=1").status_code == 200
        for fmt in export_formats():
            assert c.get(f"/api/runs/root-0001/export?format={fmt}").status_code == 200
    assert [p.name for p in victims.values() if p.exists()] == []


# ------------------------------------------------------------------ parent cycles


def _cycle_store(tmp_path: Path) -> Path:
    """root <- a; b <- c <- b (a loop under no one); s <- s (its own parent)."""
    db = tmp_path / "cycle.db"
    forge(db, [
        {"run_id": "root", "trace_id": "root", "tokens": 1},
        {"run_id": "a", "trace_id": "root", "parent_id": "root", "tokens": 2},
        {"run_id": "b", "trace_id": "root", "parent_id": "c", "tokens": 3},
        {"run_id": "c", "trace_id": "root", "parent_id": "b", "tokens": 4},
        {"run_id": "d", "trace_id": "root", "parent_id": "c", "tokens": 5},
        {"run_id": "s", "trace_id": "root", "parent_id": "s", "tokens": 6},
    ])
    return db


@pytest.mark.timeout(60)  # before the fix the token count looped forever
@pytest.mark.usefixtures("wide_sqlite_layout")  # edits its columns
def test_parent_cycles_are_counted_once_and_marked(tmp_path: Path) -> None:
    db = _cycle_store(tmp_path)
    with runlog.open(db, create=False) as store, client_for(store) as c:
        listed = c.get("/api/runs?all=1")
        assert listed.status_code == 200, listed.text
        counts = {r["run_id"]: r["token_count"] for r in listed.json()["runs"]}
        # Each run once: its own tokens and those of runs below it, loop or not.
        assert counts == {"root": 21, "a": 2, "b": 12, "c": 12, "d": 5, "s": 6}
        detail = c.get("/api/runs/root").json()
        marked = {r["run_id"]: r["parent_cycle"] for r in detail["runs"]}
        assert marked == {"root": False, "a": False, "b": True, "c": True, "d": True,
                          "s": True}
        sub = c.get("/api/runs/b").json()
        assert {r["run_id"] for r in sub["runs"]} == {"b", "c", "d"}
        assert sub["run"]["parent_cycle"] is True
        tokens = c.get("/api/tokens?run=b&run=s&run=d").json()["token_counts"]
        assert tokens == {"b": 12, "s": 6, "d": 5}
        assert c.get("/api/runs/root/events").status_code == 200


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("wide_sqlite_layout")  # edits its columns
def test_token_counter_ends_on_any_parent_graph(tmp_path: Path) -> None:
    """Every run of a trace whose parents form any graph (loops, self-parents, parents
    from nowhere): counting ends and counts each run's own tokens once."""
    from hypothesis import given
    from hypothesis import strategies as st

    from runlog.web.model import parent_cycles

    ids = [f"r{i}" for i in range(6)]

    @given(st.lists(st.sampled_from([None, *ids, "elsewhere"]), min_size=6, max_size=6),
           st.lists(st.integers(0, 3), min_size=6, max_size=6))
    def check(parents: list[str | None], tokens: list[int]) -> None:
        runs = [{"run_id": rid, "trace_id": "r0", "parent_id": parents[i] if i else None,
                 "tokens": tokens[i]} for i, rid in enumerate(ids)]
        with tempfile.TemporaryDirectory() as d:
            db = Path(d) / "g.db"
            forge(db, runs)
            with runlog.open(db, create=False) as store:
                infos = store.trace_runs("r0")
                counts = TokenCounter(store).for_runs(infos)
                looped = parent_cycles(infos)
        children: dict[str | None, set[str]] = {}
        for r in runs:
            children.setdefault(r["parent_id"], set()).add(r["run_id"])
        own = dict(zip(ids, tokens, strict=True))
        for rid in ids[1:]:  # the root counts its whole trace
            below, todo = {rid}, [rid]
            while todo:
                for ch in children.get(todo.pop(), ()):
                    if ch not in below:
                        below.add(ch)
                        todo.append(ch)
            assert counts[rid] == sum(own[x] for x in below)
        assert counts["r0"] == sum(tokens)
        for rid in ids:  # marked exactly when walking up never reaches a run without one
            seen, cur = set(), rid
            parent_of = {r["run_id"]: r["parent_id"] for r in runs}
            while cur in parent_of and cur not in seen:
                seen.add(cur)
                cur = parent_of[cur]  # type: ignore[assignment]
            assert (rid in looped) == (cur in seen), (rid, parents)

    check()
