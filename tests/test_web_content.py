"""The viewer's readable content, runs-list columns, content search, sort, time range,
pages, time travel and compare, through the JSON API over every backend.

The LangChain-shaped store is written in a subprocess by ``content_fixtures.py`` (so
this process registers nothing under the adapter's tags) and copied into each
backend: the viewer reads it as any reader of someone else's store would.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from content_fixtures import FORGED_PATH
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

import runlog
from runlog.content import VIEW
from runlog.store.copy import copy_store
from runlog.web import create_app

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def agent_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Two recordings of the agent trace (a SQLite file) and their root ids."""
    where = tmp_path_factory.mktemp("agent")
    db = where / "agent.db"
    roots = []
    for _ in range(2):
        done = subprocess.run([sys.executable, str(HERE / "content_fixtures.py"), str(db)],
                              capture_output=True, text=True, cwd=where, timeout=120)
        assert done.returncode == 0, done.stderr
        roots.append(done.stdout.strip())
    return db, roots


@pytest.fixture
def agent(store: runlog.Store, agent_source: tuple[Path, list[str]],
          monkeypatch: pytest.MonkeyPatch,
          tmp_path: Path) -> Iterator[tuple[TestClient, list[str]]]:
    copy_store(agent_source[0], store.backend)
    monkeypatch.chdir(tmp_path)  # where a revived FileIO would create its file
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        yield c, agent_source[1]
    assert not (tmp_path / FORGED_PATH).exists()


def rows(client: TestClient, query: str = "") -> list[dict[str, Any]]:
    r = client.get(f"/api/runs?{query}")
    assert r.status_code == 200, r.text
    return r.json()["runs"]  # type: ignore[no-any-return]


def test_rows_show_previews_usage_and_failed_children(
        store: runlog.Store, agent: tuple[TestClient, list[str]]) -> None:
    client, roots = agent
    top = rows(client)
    assert [r["run_id"] for r in top] == roots[::-1]
    row = top[0]
    assert row["input_preview"] == '{"question":"Weather in Paris?"}'
    assert row["output_preview"] == '{"answer":"18 C, light rain"}'
    assert row["usage"] == {"input_tokens": 31, "output_tokens": 12, "total_tokens": 43}
    assert row["status"] == "ok"
    assert row["failed_children"] == 1  # the "check" tool failed under an ok root
    children = {r["name"]: r for r in rows(client, "all=1")}
    assert children["Docs"]["output_preview"] == "1 document: Paris is in France."
    assert children["prompt"]["output_preview"] == (
        "prompt: system: You answer in one line. | human: Weather in Paris?")
    assert children["ChatOpenAI"]["output_preview"].startswith(
        'ai: Let me look. [tool calls: get_weather({"city":"Paris"}) id=call_42]')
    assert children["get_weather"]["output_preview"] == "tool: 18 C, light rain [result of call_42]"
    assert children["check"]["failed_children"] == 0
    assert children["check"]["output_preview"] == "null"
    # rows first listed uncounted get their usage and failures from /api/tokens
    fresh = TestClient(create_app(store), base_url="http://127.0.0.1")
    cached = rows(fresh, "tokens=cached")[0]
    assert (cached["usage"], cached["failed_children"], cached["token_count"]) == (
        None, None, None)
    got = fresh.get(f"/api/tokens?run={roots[0]}").json()
    assert got["usage"][roots[0]]["total_tokens"] == 43
    assert got["failed_children"][roots[0]] == 1


def test_search_covers_inputs_outputs_and_streamed_text(
        store: runlog.Store, agent: tuple[TestClient, list[str]]) -> None:
    client, _ = agent
    names = lambda q: sorted(r["name"] for r in rows(client, f"q={q}"))  # noqa: E731
    assert names("light%20RAIN") == ["agent", "agent", "get_weather", "get_weather"]
    assert names("paris%20is%20in") == ["Docs", "Docs"]  # a document's text
    assert names("geo.md") == ["Docs", "Docs"]  # its metadata
    assert names("get_weather") == ["ChatOpenAI", "ChatOpenAI", "get_weather", "get_weather"]
    assert names(FORGED_PATH) == ["forged", "forged"]  # shown as stored, never revived
    assert names("kwargs") == []  # the codec's structure is not content
    with store.run("splitter", "chat_model", inputs={"q": "x"}) as m:
        for piece in ("Bon", "jour", " tout"):
            m.token(piece)
        m.end(outputs=None)
    store.flush()
    assert names("bonjour") == ["splitter"]  # tokens are searched joined


def test_sort_time_range_and_pages(store: runlog.Store) -> None:
    # Explicit event times (one second apart, the durations given): the sort is
    # checked on recorded values, never on how long recording took.
    base = runlog.events.now_micros() - 60_000_000
    ids = []
    for i, (ms, toks) in enumerate([(30, 1), (1, 5), (60, 0), (10, 3)]):
        start = base + i * 1_000_000
        run = store.start_run(f"r{i}", "chain", inputs={"i": i}, time=start)
        for k in range(toks):
            run.token("t", time=start + k)
        run.end(outputs=None, time=start + ms * 1000)
        ids.append(run.id)
    store.flush()
    client = TestClient(create_app(store), base_url="http://127.0.0.1")
    names = lambda q: [r["name"] for r in rows(client, q)]  # noqa: E731
    assert names("") == ["r3", "r2", "r1", "r0"]
    assert names("sort=latency") == ["r2", "r0", "r3", "r1"]
    assert names("sort=tokens") == ["r1", "r3", "r0", "r2"]
    infos = {r.name: r for r in store.runs()}
    since = infos["r1"].start_time.isoformat()
    until = infos["r2"].start_time.isoformat()
    assert names(f"since={since.replace('+', '%2B')}&until={until.replace('+', '%2B')}") == [
        "r2", "r1"]
    naive_utc = infos["r2"].start_time.replace(tzinfo=None).isoformat()
    assert names(f"since={naive_utc}") == ["r3", "r2"]  # a naive time is UTC
    us = runlog.events.datetime_to_micros(infos["r3"].start_time)
    assert names(f"since={us}") == ["r3"]
    page = client.get("/api/runs?limit=3").json()
    assert (len(page["runs"]), page["more"], page["offset"]) == (3, True, 0)
    page = client.get("/api/runs?limit=3&offset=3").json()
    assert [r["name"] for r in page["runs"]] == ["r0"]
    assert page["more"] is False
    page = client.get("/api/runs?limit=2&offset=1&sort=latency").json()
    assert [r["name"] for r in page["runs"]] == ["r0", "r3"]
    assert page["more"] is True
    for bad, message in [("sort=name", "sort 'name'"), ("since=yesterday", "ISO 8601"),
                         ("offset=-1", "offset must be"), ("offset=x", "not a whole number")]:
        r = client.get(f"/api/runs?{bad}")
        assert r.status_code == 400, (bad, r.text)
        assert message in r.json()["error"], (bad, r.text)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(1, 7), sort=st.sampled_from(["start", "latency", "tokens"]))
def test_pages_cover_every_run_once(sqlite_store: runlog.Store, limit: int, sort: str) -> None:
    if not sqlite_store.runs():
        for i in range(11):
            with sqlite_store.run(f"p{i}", inputs=i) as run:
                for _ in range(i % 4):
                    run.token("t")
        sqlite_store.flush()
    client = TestClient(create_app(sqlite_store), base_url="http://127.0.0.1")
    seen, offset = [], 0
    while True:
        page = client.get(f"/api/runs?limit={limit}&offset={offset}&sort={sort}").json()
        seen += [r["run_id"] for r in page["runs"]]
        offset += limit
        if not page["more"]:
            break
    assert sorted(seen) == sorted(r.run_id for r in sqlite_store.runs())
    assert len(seen) == len(set(seen))


def test_content_of_a_run_is_readable(agent: tuple[TestClient, list[str]]) -> None:
    client, roots = agent
    data = client.get(f"/api/runs/{roots[0][-12:]}/content").json()
    assert data["run_id"] == roots[0]
    by_name = {}
    for info in client.get(f"/api/runs/{roots[0]}").json()["runs"]:
        by_name[info["name"]] = data["runs"][info["run_id"]]
    model = by_name["ChatOpenAI"]
    assert [m["role"] for m in model["inputs"]["messages"][0]] == ["system", "human"]
    gen = model["outputs"]["generations"][0][0]["message"]
    assert gen[VIEW] == "message"
    assert gen["tool_calls"][0]["args"] == {"city": "Paris"}
    assert model["usage"]["total_tokens"] == 43
    assert by_name["get_weather"]["outputs"]["tool_call_id"] == "call_42"
    assert by_name["forged"]["inputs"]["x"] == {
        VIEW: "tag", "tag": "exception", "payload": ["io:FileIO", [FORGED_PATH, "w"], ""]}
    assert client.get("/api/runs/0123456789abcdef/content").status_code == 404


def test_state_at_any_event(store: runlog.Store, agent: tuple[TestClient, list[str]]) -> None:
    client, roots = agent
    info = store.run_info(roots[0])
    first = client.get(f"/api/runs/{roots[0]}/state?seq={info.start_seq}").json()
    assert first["seq"] == info.start_seq
    assert first["state"]["logs"] == {}
    assert first["state"]["final_output"] is None
    model = next(r for r in store.trace_runs(info.trace_id) if r.name == "ChatOpenAI")
    mid = client.get(f"/api/runs/{roots[0]}/state?seq={model.end_seq - 1}").json()["state"]
    assert mid["logs"]["ChatOpenAI"]["end_time"] is None
    assert mid["logs"]["ChatOpenAI"]["streamed_output_str"] == ["Let me look."]
    assert mid["logs"]["prompt"]["final_output"][VIEW] == "prompt"
    end = client.get(f"/api/runs/{roots[0]}/state").json()["state"]
    assert end["final_output"] == {"answer": "18 C, light rain"}
    assert end["logs"]["ChatOpenAI"]["final_output"][VIEW] == "generations"
    earlier = client.get(f"/api/runs/{roots[0]}/state?seq={info.start_seq}").json()
    assert earlier == first  # going back gives the same answer
    assert client.get(f"/api/runs/{roots[0]}/state?seq=x").status_code == 400
    assert client.get("/api/runs/0123456789abcdef/state?seq=1").status_code == 404


def test_compare_two_recordings(store: runlog.Store, agent: tuple[TestClient, list[str]]) -> None:
    client, roots = agent
    same = client.get(f"/api/compare?a={roots[0]}&b={roots[1]}").json()
    assert same["same"] is True
    assert same["patch"] == []
    assert [r["key"] for r in same["runs"]] == ["agent", "agent/Docs", "agent/prompt",
                                                "agent/ChatOpenAI", "agent/get_weather",
                                                "agent/forged", "agent/check"]
    tool = same["runs"][4]
    assert tool["a"]["outputs"]["tool_call_id"] == "call_42" == tool["b"]["outputs"]["tool_call_id"]
    with store.run("agent", "chain", inputs={"question": "Weather in Rome?"}) as root:
        with root.child("Docs", "retriever", inputs={"query": "Rome"}) as r:
            r.end(outputs=[])
        root.end(outputs={"answer": "sunny"})
    store.flush()
    other = client.get(f"/api/compare?a={roots[0]}&b={root.id}").json()
    assert other["same"] is False
    rows_ = {r["key"]: r for r in other["runs"]}
    assert rows_["agent"]["changed"] == ["inputs", "outputs"]
    assert rows_["agent/Docs"]["changed"] == ["inputs", "outputs"]
    assert rows_["agent/prompt"]["b"] is None
    assert rows_["agent/prompt"]["a"]["name"] == "prompt"
    assert "agent/prompt" in other["only_in_a"]
    assert other["first_divergence"]["description"]
    assert client.get("/api/compare?a=" + roots[0]).status_code == 400
    assert client.get(f"/api/compare?a={roots[0]}&b=0123456789abcdef").status_code == 404


def test_compare_page_is_served(agent: tuple[TestClient, list[str]]) -> None:
    client, _ = agent
    page = client.get("/compare?a=x&b=y")
    assert page.status_code == 200
    assert b"compare.js" in page.content
    assert client.get("/static/compare.js").status_code == 200


def test_previews_are_read_once_per_run_state(store: runlog.Store) -> None:
    from runlog.web.model import Previews

    run = store.start_run("p", inputs={"q": "first"})
    store.flush()
    previews = Previews(size=2)
    reads = []
    real = store.events

    def counting(*args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs)
        return real(*args, **kwargs)

    store.events = counting  # type: ignore[method-assign]
    try:
        assert previews.of(store, store.run_info(run.id)) == ('{"q":"first"}', None)
        assert previews.of(store, store.run_info(run.id)) == ('{"q":"first"}', None)
        assert len(reads) == 1  # running: only the start read, then remembered
        run.end(outputs="done")
        store.flush()
        assert previews.of(store, store.run_info(run.id)) == ('{"q":"first"}', "done")
        assert len(reads) == 3  # ended: a new key, start and end read
    finally:
        del store.events


def test_content_of_some_runs_reads_only_them(store: runlog.Store,
                                              agent: tuple[TestClient, list[str]]) -> None:
    client, roots = agent
    whole = client.get(f"/api/runs/{roots[0]}/content").json()["runs"]
    ids = list(whole)
    some = client.get(f"/api/runs/{roots[0]}/content?run={ids[3]}&run={ids[1]}").json()
    assert some["runs"] == {ids[3]: whole[ids[3]], ids[1]: whole[ids[1]]}
    other_trace = next(iter(client.get(f"/api/runs/{roots[1]}/content").json()["runs"]))
    r = client.get(f"/api/runs/{roots[0]}/content?run={other_trace}")
    assert r.status_code == 400
    assert "not" in r.json()["error"]
    child = ids[1]
    r = client.get(f"/api/runs/{child}/content?run={roots[0]}")  # a parent is not below
    assert r.status_code == 400
    running = store.start_run("live", inputs={"q": 1})
    store.flush()
    got = client.get(f"/api/runs/{running.id}/content?run={running.id}").json()["runs"]
    assert got == {running.id: {"inputs": {"q": 1}}}  # no outputs while it runs
    running.end(outputs={"a": 2})
    store.flush()
    got = client.get(f"/api/runs/{running.id}/content?run={running.id}").json()["runs"]
    assert got == {running.id: {"inputs": {"q": 1}, "outputs": {"a": 2}, "usage": {}}}


def test_search_does_not_match_across_pieces(store: runlog.Store) -> None:
    with store.run("ab", inputs={"x": "cd"}) as run:
        run.token("ef")
        run.end(outputs={"y": "gh"})
    store.flush()
    client = TestClient(create_app(store), base_url="http://127.0.0.1")
    for q in ("ab", "cd", "ef", "gh", "x", "y"):
        assert [r["name"] for r in rows(client, f"q={q}")] == ["ab"], q
    for q in ("bc", "de", "fg", "cde", "abc"):  # a match never spans two values
        assert rows(client, f"q={q}") == [], q
