"""The web viewer's server: pages, JSON API, filters, escaping and the live SSE stream.

Driven through Starlette's TestClient (the ASGI app in-process), over every backend;
the browser end-to-end tests are in tests/test_web_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

import runlog
from runlog.cli import cli
from runlog.cli.options import _meta_pairs
from runlog.tail import TailNotice
from runlog.web import close_streams, create_app, export_formats, is_loopback, server_url
from runlog.web.app import host_of
from runlog.web.model import TokenCounter, event_line, parse_meta
from runlog.web.stream import KIND_WORDS, parse_kinds, sse_message, status_message

EVIL = '<img src=x onerror="window.__pwned=1"><script>alert(1)</script>'


def client_for(store: runlog.Store) -> TestClient:
    return TestClient(create_app(store), base_url="http://127.0.0.1")


@pytest.fixture
def client(store: runlog.Store) -> Iterator[TestClient]:
    with client_for(store) as c:
        yield c


def record_pipeline(store: runlog.Store, name: str = "pipeline", *, tokens: int = 3,
                    tags: list[str] | None = None, metadata: dict[str, Any] | None = None,
                    fail: bool = False) -> str:
    """A root chain with a retriever, a streaming model and a (maybe failing) tool."""
    with store.run(name, "chain", inputs={"q": name}, tags=tags or ["t"],
                   metadata=metadata or {}) as root:
        with root.child("Docs", "retriever", inputs={"query": name}) as r:
            r.end(outputs={"documents": ["d1"]})
        with root.child("Model", "chat_model", inputs={"messages": [name]}) as m:
            for i in range(tokens):
                m.token(f"tok{i} ")
            m.end(outputs={"content": "done"})
        try:
            with root.child("tool", "tool", inputs={"x": 1}):
                if fail:
                    raise ValueError("tool broke")
        except ValueError:
            pass
        root.end(outputs={"answer": "done"})
    store.flush()
    return root.id


def sse_events(body: str) -> list[dict[str, Any]]:
    """Parse an SSE body into messages: {"id", "event", "data"}."""
    out = []
    for block in body.split("\n\n"):
        msg: dict[str, Any] = {"id": None, "event": "message", "data": []}
        for line in block.split("\n"):
            if line.startswith(":") or not line:
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                msg["data"].append(value)
            elif field in ("id", "event"):
                msg[field] = value
        if msg["data"]:
            msg["data"] = "\n".join(msg["data"])
            out.append(msg)
    return out


def stream(client: TestClient, url: str, **headers: str) -> list[dict[str, Any]]:
    with client.stream("GET", url, headers=headers) as r:
        if r.status_code == 204:  # nothing will follow (EventSource stops reconnecting)
            return []
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return sse_events(r.read().decode())


# ------------------------------------------------------------------ pages and static


def test_pages_and_assets_are_served_from_the_package(client: TestClient) -> None:
    for path in ("/", "/runs/anything"):
        r = client.get(path)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        # No CDN, no network: every script and stylesheet is the app's own.
        for ref in re.findall(r'(?:src|href)="([^"]+)"', r.text):
            assert ref.startswith("/"), ref
        assert "script-src 'self'" in r.headers["content-security-policy"]
    for asset in ("app.css", "common.js", "runs.js", "run.js", "favicon.svg"):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200, asset
        assert len(r.content) > 100
    assert "innerHTML" not in client.get("/static/run.js").text
    assert "innerHTML" not in client.get("/static/runs.js").text


def test_foreign_host_header_is_refused(store: runlog.Store) -> None:
    """DNS rebinding: a page on another site resolving to 127.0.0.1 gets nothing."""
    with TestClient(create_app(store), base_url="http://evil.example") as c:
        assert c.get("/api/runs").status_code == 400
    with TestClient(create_app(store), base_url="http://localhost:8765") as c:
        assert c.get("/api/runs").status_code == 200
    with TestClient(create_app(store), base_url="http://[::1]:8765") as c:
        assert c.get("/api/runs").status_code == 200
    with TestClient(create_app(store), base_url="http://127.0.0.1.evil.example") as c:
        assert c.get("/").status_code == 400
    assert host_of("[::1]:8765") == "::1"
    assert host_of("LOCALHOST:80") == "localhost"
    assert host_of("127.0.0.1") == "127.0.0.1"


# ------------------------------------------------------------------ runs list


def test_runs_list_shows_roots_with_status_duration_tokens_and_tags(
        store: runlog.Store, client: TestClient) -> None:
    a = record_pipeline(store, "alpha", tokens=4, tags=["prod"])
    b = record_pipeline(store, "beta", tokens=2, fail=True)
    running = store.start_run("gamma", "chain", tags=["live"])
    running.token("x")
    store.flush()
    data = client.get("/api/runs").json()
    rows = {r["name"]: r for r in data["runs"]}
    assert list(rows) == ["gamma", "beta", "alpha"]  # roots only, newest first
    assert rows["alpha"]["run_id"] == a
    assert rows["beta"]["run_id"] == b
    assert rows["alpha"]["status"] == "ok"
    assert rows["gamma"]["status"] == "running"
    assert rows["alpha"]["token_count"] == 4
    assert rows["beta"]["token_count"] == 2
    assert rows["gamma"]["token_count"] == 1
    assert rows["alpha"]["tags"] == ["prod"]
    assert rows["alpha"]["duration_ms"] is not None
    assert rows["gamma"]["duration_ms"] is None
    assert rows["alpha"]["run_type"] == "chain"
    assert data["last_seq"] == store.last_seq()
    running.end(outputs=None)


def test_token_counts_follow_new_tokens(store: runlog.Store, client: TestClient) -> None:
    run = store.start_run("streaming", "chat_model")
    counts = []
    for _ in range(3):
        run.token("t")
        store.flush()
        counts.append(client.get("/api/runs").json()["runs"][0]["token_count"])
    assert counts == [1, 2, 3]
    run.end(outputs=None)


def test_first_list_can_leave_uncounted_traces_for_a_second_request(
        store: runlog.Store, client: TestClient) -> None:
    a = record_pipeline(store, "alpha", tokens=4)
    b = record_pipeline(store, "beta", tokens=2)
    rows = client.get("/api/runs?tokens=cached").json()["runs"]
    assert [r["token_count"] for r in rows] == [None, None]  # nothing counted yet
    counts = client.get(f"/api/tokens?run={a}&run={b[-12:]}").json()["token_counts"]
    assert counts == {a: 4, b: 2}
    record_pipeline(store, "gamma", tokens=1)
    rows = client.get("/api/runs?tokens=cached").json()["runs"]
    assert {r["name"]: r["token_count"] for r in rows} == {"alpha": 4, "beta": 2,
                                                           "gamma": None}
    assert client.get("/api/runs").json()["runs"][0]["token_count"] == 1  # default: all
    assert client.get("/api/tokens?run=nope").status_code == 404
    assert client.get("/api/runs?tokens=some").status_code == 400


def test_filters_match_the_cli(store: runlog.Store, client: TestClient) -> None:
    record_pipeline(store, "alpha", tags=["prod"], metadata={"user": "ann", "n": 1})
    record_pipeline(store, "beta", tags=["dev"], metadata={"user": "bob"})
    record_pipeline(store, "Alphabet soup", tags=["dev"])

    def names(query: str) -> list[str]:
        r = client.get(f"/api/runs?{query}")
        assert r.status_code == 200, r.text
        return sorted(x["name"] for x in r.json()["runs"])

    assert names("") == ["Alphabet soup", "alpha", "beta"]
    assert names("name=alpha") == ["alpha"]
    assert names("tag=prod") == ["Docs", "Model", "alpha", "tool"]  # tags are inherited
    assert names("type=retriever") == ["Docs", "Docs", "Docs"]
    assert names("meta=user=bob") == ["Docs", "Model", "beta", "tool"]
    assert names("meta=user%3Dann&all=") == ["Docs", "Model", "alpha", "tool"]
    assert names("meta=n=1") == ["Docs", "Model", "alpha", "tool"]  # 1 compares as JSON
    assert names("meta=n=2") == []
    assert names("meta=n") == ["Docs", "Model", "alpha", "tool"]  # the key exists
    # Includes are OR-ed, excludes win (LangChain's rule, like the CLI).
    assert names("meta=user=bob&name=alpha") == ["Docs", "Model", "alpha", "beta", "tool"]
    assert names("type=chain&exclude_tag=dev") == ["alpha"]
    # Text search: case-insensitive substring of the name or of the run's content
    # (inputs, outputs, streamed text), at any depth (tests/test_web_content.py).
    assert names("q=ALPHA") == ["Alphabet soup", "Docs", "Docs", "Model", "Model", "alpha"]
    assert names("q=mod") == ["Model", "Model", "Model"]
    assert names("q=alpha&tag=dev") == ["Alphabet soup", "Docs", "Model"]
    assert names("status=ok") == ["Alphabet soup", "alpha", "beta"]
    assert len(names("all=1")) == 12
    data = client.get("/api/runs?all=1&limit=5").json()
    assert len(data["runs"]) == 5
    assert data["more"] is True
    assert client.get("/api/runs?all=1&limit=12").json()["more"] is False


def test_filter_results_equal_the_cli_json(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    with runlog.open(db) as s:
        record_pipeline(s, "alpha", tags=["prod"], metadata={"user": "ann"})
        record_pipeline(s, "beta", metadata={"user": "bob"})
    cases = [(["--include-tag", "prod"], "tag=prod"),
             (["--meta", "user=bob"], "meta=user=bob"),
             (["--include-type", "tool", "--exclude-name", "x"], "type=tool&exclude_name=x")]
    with runlog.open(db, create=False) as s, client_for(s) as c:
        for flags, query in cases:
            out = CliRunner().invoke(cli, ["runs", "--db", str(db), "--json", *flags]).output
            cli_ids = [json.loads(line)["run_id"] for line in out.splitlines()]
            web_ids = [r["run_id"] for r in c.get(f"/api/runs?{query}").json()["runs"]]
            assert web_ids == cli_ids, flags


@pytest.mark.parametrize(("query", "message"), [
    ("status=done", "status 'done'"),
    ("limit=0", "limit must be between"),
    ("limit=x", "not a whole number"),
    ("meta==1", "expected KEY=VALUE"),
])
def test_bad_parameters_are_explained(client: TestClient, query: str, message: str) -> None:
    r = client.get(f"/api/runs?{query}")
    assert r.status_code == 400
    assert message in r.json()["error"]


@given(st.lists(st.text(max_size=8), max_size=4))
def test_metadata_pairs_parse_like_the_cli(items: list[str]) -> None:
    try:
        cli_value = _meta_pairs(tuple(items), "--meta")
    except click.BadParameter:
        with pytest.raises(ValueError):
            parse_meta(items)
        return
    assert parse_meta(items) == cli_value


# ------------------------------------------------------------------ one run


def test_run_detail_has_the_tree_with_errors(store: runlog.Store, client: TestClient) -> None:
    root = record_pipeline(store, "alpha", tokens=2, fail=True)
    data = client.get(f"/api/runs/{root}").json()
    assert data["run"]["run_id"] == root
    runs = {r["name"]: r for r in data["runs"]}
    assert list(runs) == ["alpha", "Docs", "Model", "tool"]  # start order
    assert runs["Model"]["parent_id"] == root
    assert runs["Model"]["token_count"] == 2
    assert runs["alpha"]["token_count"] == 2
    assert runs["tool"]["status"] == "error"
    assert runs["tool"]["error"]["type"] == "ValueError"
    assert "tool broke" in runs["tool"]["error"]["traceback"]
    # A child run: its own subtree only; an id suffix resolves like the CLI.
    model = runs["Model"]["run_id"]
    sub = client.get(f"/api/runs/{model[-12:]}").json()
    assert [r["name"] for r in sub["runs"]] == ["Model"]


def test_unknown_run_is_a_404_with_a_hint(client: TestClient) -> None:
    for path in ("/api/runs/nope", "/api/runs/nope/events", "/api/stream?run=nope"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "runlog runs" in r.json()["error"]


def test_a_store_that_cannot_be_read_is_a_503(tmp_path: Path) -> None:
    store = runlog.open(tmp_path / "gone.db")
    app = create_app(store)
    store.close()
    with TestClient(app, base_url="http://127.0.0.1") as c:
        r = c.get("/api/runs")
    assert r.status_code == 503
    assert "closed" in r.json()["error"]


def test_event_pages_are_the_replay_bytes(store: runlog.Store, client: TestClient) -> None:
    root = record_pipeline(store, "alpha", tokens=7)
    record_pipeline(store, "other")
    expected = [event_line(e) for e in store.replay(root)]
    got: list[bytes] = []
    after = 0
    while True:
        r = client.get(f"/api/runs/{root}/events?after={after}&limit=4")
        page = r.json()
        # Each event in the body is the stored envelope with seq first, verbatim.
        for e in page["events"]:
            got.append(json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode())
        assert all(line in r.content for line in expected[len(got) - len(page["events"]):
                                                          len(got)])
        after = page["next"]
        if not page["more"]:
            break
    assert [json.loads(x) for x in got] == [json.loads(x) for x in expected]


def test_user_html_never_reaches_the_page_markup(store: runlog.Store,
                                                 client: TestClient) -> None:
    """Pages are fixed files; user values travel as JSON only (the browser test checks
    that the page puts them in as text)."""
    with store.run(EVIL, "chain", inputs={"html": EVIL}, tags=[EVIL]) as run:
        run.token(EVIL)
        run.end(outputs=EVIL)
    store.flush()
    for path in ("/", f"/runs/{run.id}", f"/runs/{EVIL}"):
        r = client.get(path)
        assert "<img" not in r.text
        assert "alert(1)" not in r.text
    r = client.get("/api/runs")
    assert r.headers["content-type"] == "application/json"
    assert r.json()["runs"][0]["name"] == EVIL
    assert r.headers["x-content-type-options"] == "nosniff"


def test_export_downloads_equal_the_library_export(store: runlog.Store,
                                                   client: TestClient, tmp_path: Path) -> None:
    root = record_pipeline(store, "exported", tokens=3, fail=True)
    record_pipeline(store, "not exported")
    formats = export_formats()
    assert "jsonl" in formats
    assert client.get(f"/api/runs/{root}").json()["export_formats"] == list(formats)
    for fmt in formats:
        r = client.get(f"/api/runs/{root}/export?format={fmt}")
        assert r.status_code == 200, r.text
        assert r.headers["content-disposition"].startswith(
            f'attachment; filename="run-{root}.')
        want = tmp_path / f"want.{fmt}"
        runlog.export(store, fmt, str(want), run_id=root)  # type: ignore[arg-type]
        assert r.content == want.read_bytes(), fmt
    assert b"not exported" not in client.get(f"/api/runs/{root}/export?format=jsonl").content
    r = client.get(f"/api/runs/{root}/export?format=pdf")
    assert r.status_code == 400
    assert "jsonl" in r.json()["error"]
    assert client.get("/api/runs/nope/export").status_code == 404


# ------------------------------------------------------------------ SSE


def test_stream_sends_each_event_with_its_seq_as_id(store: runlog.Store,
                                                    client: TestClient) -> None:
    root = record_pipeline(store, "alpha", tokens=3)
    msgs = stream(client, f"/api/stream?run={root}&after=0&until_end=1")
    expected = list(store.replay(root))
    assert [int(m["id"]) for m in msgs] == [e.seq for e in expected]
    assert [m["data"].encode() for m in msgs] == [event_line(e) for e in expected]


def test_reconnect_with_last_event_id_has_no_gap_and_no_duplicate(
        store: runlog.Store, client: TestClient) -> None:
    root = record_pipeline(store, "alpha", tokens=5)
    record_pipeline(store, "interleaved")
    full = [int(m["id"]) for m in stream(client, f"/api/stream?run={root}&after=0&until_end=1")]
    assert len(full) == len(list(store.replay(root)))
    for cut in range(len(full)):
        first = full[: cut + 1]
        # The browser reconnects to the URL it was given (after=0) plus Last-Event-ID.
        rest = stream(client, f"/api/stream?run={root}&after=0&until_end=1",
                      **{"Last-Event-ID": str(first[-1])})
        assert first + [int(m["id"]) for m in rest] == full, cut


@given(ops=st.lists(st.tuples(st.sampled_from(["root", "child", "grandchild", "other"]),
                              st.sampled_from(["token", "output", "custom"])), max_size=20),
       kinds=st.one_of(st.none(), st.sets(st.sampled_from(sorted(KIND_WORDS)), min_size=1)),
       cut=st.floats(0, 1))
def test_resumed_stream_equals_the_filtered_log_after_the_cursor(
        ops: list[tuple[str, str]], kinds: set[str] | None, cut: float) -> None:
    """Whatever was recorded (a run, its descendants, an unrelated run interleaved),
    a stream resumed after any seq yields exactly the followed subtree's events after
    it that pass ``kinds``, in order: nothing skipped, nothing repeated."""
    with runlog.open(":memory:") as store:
        root = store.start_run("root", "chain")
        other = store.start_run("other", "chain")
        child = root.start_child("child", "chat_model")
        grandchild = child.start_child("grandchild", "tool")
        runs = {"root": root, "child": child, "grandchild": grandchild, "other": other}
        for who, what in ops:
            run = runs[who]
            if what == "token":
                run.token("t")
            elif what == "output":
                run.stream("o")
            else:
                run.event("e", {"x": 1})
        for run in (grandchild, child, other, root):
            run.end(outputs=None)
        store.flush()
        subtree = {root.id, child.id, grandchild.id}
        after = int(cut * store.last_seq())
        expected = [event_line(e) for e in store.events(after=after)
                    if e.run_id in subtree and (
                        kinds is None or e.kind in kinds
                        or (e.kind == "stream" and e.channel in kinds))]
        query = f"run={root.id}&until_end=1" + (f"&kinds={','.join(kinds)}" if kinds else "")
        with client_for(store) as c:
            msgs = stream(c, f"/api/stream?{query}&after=0", **{"Last-Event-ID": str(after)})
        assert [m["data"].encode() for m in msgs] == expected
        assert [int(m["id"]) for m in msgs] == [json.loads(x)["seq"] for x in expected]


def test_finished_run_stream_ends_with_204_so_eventsource_stops(
        store: runlog.Store, client: TestClient) -> None:
    root = record_pipeline(store, "alpha")
    end = store.run_info(root).end_seq
    r = client.get(f"/api/stream?run={root}&until_end=1", headers={"Last-Event-ID": str(end)})
    assert r.status_code == 204


def test_live_events_from_a_writer_thread_arrive_in_order(store: runlog.Store,
                                                          client: TestClient) -> None:
    run = store.start_run("live", "chat_model")
    store.flush()
    start_seq = store.run_info(run.id).start_seq
    go = threading.Event()

    def writer() -> None:
        go.wait(10)
        for i in range(20):
            run.token(f"t{i}")
            if i % 5 == 0:
                store.flush()
        run.end(outputs={"n": 20})
        store.flush()

    t = threading.Thread(target=writer)
    t.start()
    try:
        with client.stream("GET", f"/api/stream?run={run.id}&after={start_seq}&until_end=1") as r:
            go.set()  # the stream is open: write while it follows
            msgs = sse_events(r.read().decode())
    finally:
        go.set()
        t.join()
    expected = [e for e in store.events(run.id) if e.seq > start_seq]
    assert [m["data"].encode() for m in msgs] == [event_line(e) for e in expected]
    assert json.loads(msgs[-1]["data"])["kind"] == "end"


def test_global_stream_with_kinds_and_idle_timeout(store: runlog.Store,
                                                   client: TestClient) -> None:
    record_pipeline(store, "alpha", tokens=3)
    msgs = stream(client, "/api/stream?after=0&kinds=start,end&idle_timeout=0.2")
    kinds = [json.loads(m["data"])["kind"] for m in msgs]
    assert kinds.count("start") == 4
    assert kinds.count("end") == 4
    assert len(kinds) == 8
    msgs = stream(client, "/api/stream?after=0&kinds=token&idle_timeout=0.2")
    assert [json.loads(m["data"])["data"]["token"] for m in msgs] == ["tok0 ", "tok1 ", "tok2 "]
    assert client.get("/api/stream?kinds=bogus").status_code == 400


def test_abandoned_run_is_reported_as_a_status_message(tmp_path: Path) -> None:
    db = tmp_path / "abandoned.db"
    writer = runlog.open(db, lease_seconds=0.5)
    run = writer.start_run("orphan", "chain")
    run.token("last words")
    writer.flush()
    writer.close()  # the writer is gone with the run still open
    with runlog.open(db, create=False) as store, client_for(store) as c:
        msgs = stream(c, f"/api/stream?run={run.id}&after=0&until_end=1")
    assert [m["event"] for m in msgs] == ["message", "message", "status"]
    status = json.loads(msgs[-1]["data"])
    assert status["run_id"] == run.id
    assert status["status"] == "abandoned"
    assert msgs[-1]["id"] is None  # not an event: the cursor does not move


def test_close_streams_ends_open_streams(store: runlog.Store) -> None:
    app = create_app(store)
    ended = threading.Event()
    opened = threading.Event()
    with TestClient(app, base_url="http://127.0.0.1") as c:

        def follow() -> None:
            with c.stream("GET", "/api/stream") as r:
                opened.set()
                r.read()  # until the server ends the stream
            ended.set()

        t = threading.Thread(target=follow)
        t.start()
        assert opened.wait(30)
        while not app.state.streams:  # registered once its task group runs
            assert t.is_alive()
            threading.Event().wait(0.01)
        assert c.portal is not None
        assert c.portal.call(close_streams, app) == 1
        t.join(30)
        assert ended.is_set()
        assert not app.state.streams


def test_sse_message_keeps_multiline_envelopes_intact() -> None:
    pretty = b'{\n  "kind": "start",\r\n "name": "x"}'
    e = runlog.Event(9, pretty)
    msgs = sse_events(sse_message(e).decode())
    assert msgs[0]["id"] == "9"
    assert json.loads(msgs[0]["data"]) == {"seq": 9, "kind": "start", "name": "x"}
    notice = status_message(TailNotice(kind="abandoned", run_id="r", cursor=3, name="n"))
    assert sse_events(notice.decode())[0]["event"] == "status"
    assert parse_kinds("start, token") == {"start", "token"}
    assert parse_kinds("") is None


# ------------------------------------------------------------------ token counter


@given(st.lists(st.sampled_from(["token", "output", "count", "child"]), max_size=25))
def test_token_counter_is_incremental_and_exact(ops: list[str]) -> None:
    """Counting after any interleaving of writes and reads equals a full recount."""
    with runlog.open(":memory:") as store:
        counter = TokenCounter(store)
        root = store.start_run("root", "chain")
        child = root.start_child("model", "chat_model")
        for op in ops:
            if op == "token":
                root.token("a")
            elif op == "child":
                child.token("b")
            elif op == "output":
                child.stream("c")
            else:
                store.flush()
                infos = store.trace_runs(root.id)
                got = counter.for_runs(infos)
                for info in infos:
                    _, subtree = store.subtree_ids(info.run_id)
                    want = sum(1 for e in store.events(trace_id=root.id)
                               if e.channel == "token" and e.run_id in subtree)
                    assert got[info.run_id] == want
        child.end(outputs=None)
        root.end(outputs=None)


# ------------------------------------------------------------------ the command


def test_serve_refuses_a_missing_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--db", str(tmp_path / "none.db"), "--no-open"])
    assert result.exit_code == 1
    assert "none.db" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "none.db").exists()


def test_serve_runs_a_real_server_on_loopback(tmp_path: Path) -> None:
    import httpx

    db = tmp_path / "s.db"
    with runlog.open(db) as s:
        record_pipeline(s, "served")
    with subprocess.Popen(
            [sys.executable, "-c", "from runlog.cli import main; main()", "serve", "--db",
             str(db), "--port", "0", "--no-open"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("runlog web viewer: http://127.0.0.1:"), line
            url = line.split()[-1]
            runs = httpx.get(url + "api/runs", timeout=10).json()["runs"]
            assert [r["name"] for r in runs] == ["served"]
            page = httpx.get(url, timeout=10)
            assert page.status_code == 200
            assert "runs.js" in page.text
            # An open page's event stream does not hold up Ctrl-C.
            with httpx.stream("GET", url + "api/stream", timeout=10) as r:
                lines = r.iter_lines()
                assert next(lines) == "retry: 1000"
                proc.send_signal(signal.SIGINT)
                rest = list(lines)  # ends: the server closed the stream
            assert rest[0].startswith(": runlog stream after")
            assert proc.wait(timeout=10) == 0
            assert "ERROR" not in proc.stdout.read()
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)


def test_loopback_detection_and_urls() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert is_loopback("127.3.4.5")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("192.168.1.2")
    assert server_url("::1", 80) == "http://[::1]:80/"
    assert server_url("127.0.0.1", 8765) == "http://127.0.0.1:8765/"
