"""``runlog replay --view log|events`` with --no-diff, --no-streamed-list and filters."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

import runlog
from runlog.cli import cli
from runlog.reducers import view_json_line


def _record(db: Path) -> str:
    with runlog.open(str(db)) as store:
        with store.run("root", inputs={"q": "hi"}, tags=["top"], metadata={"user": "ann"}) as r:
            with r.child("retriever", "retriever", inputs={"query": "hi"}) as ret:
                ret.end(["doc"])
            with r.child("model", "chat_model", inputs={"messages": [["hi"]]}) as m:
                m.token("Hel", "Hel")
                m.token("lo", "lo")
                m.end({"generations": [[{"text": "Hello", "message": "Hello"}]]})
            r.stream("Hel")
            r.stream("lo")
            r.end("Hello")
        return r.id


def _lines(db: Path, *args: str) -> list[bytes]:
    result = CliRunner().invoke(cli, ["replay", *args, "--db", str(db)])
    assert result.exit_code == 0, result.output
    return result.stdout_bytes.splitlines(keepends=True)


def test_views_print_the_library_bytes(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    rid = _record(db)
    with runlog.open(str(db)) as store:
        for args, view, opts in [
            ((), "log", {}),
            (("--no-diff",), "log", {"diff": False}),
            (("--no-streamed-list",), "log", {"with_streamed_output_list": False}),
            ((), "events", {}),
        ]:
            want = [view_json_line(x) for x in store.replay(rid, view=view, **opts)]  # type: ignore[arg-type]
            assert _lines(db, rid, "--view", view, *args) == want


def test_log_view_lines(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    rid = _record(db)
    lines = [orjson.loads(x) for x in _lines(db, rid, "--view", "log")]
    assert lines[0]["ops"][0]["path"] == ""
    assert {"op": "add", "path": "/logs/model/streamed_output_str/-", "value": "Hel"} in (
        lines[4]["ops"])
    cumulative = [orjson.loads(x) for x in _lines(db, rid, "--view", "log", "--no-diff")]
    assert cumulative[-1]["state"]["final_output"] == "Hello"
    assert cumulative[-1]["state"]["logs"]["model"]["type"] == "llm"
    assert cumulative[-1]["n_ops"] == sum(len(x["ops"]) for x in lines)
    no_list = [orjson.loads(x) for x in _lines(db, rid, "--view", "log", "--no-diff",
                                                "--no-streamed-list")]
    assert no_list[-1]["state"]["streamed_output"] == []


def test_filters_on_views(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    rid = _record(db)
    only_llm = [orjson.loads(x) for x in _lines(db, rid, "--view", "log", "--no-diff",
                                                 "--include-type", "llm")]
    assert list(only_llm[-1]["state"]["logs"]) == ["model"]
    no_model = [orjson.loads(x) for x in _lines(db, rid, "--view", "log", "--no-diff",
                                                 "--exclude-name", "model")]
    assert list(no_model[-1]["state"]["logs"]) == ["retriever"]
    events = [orjson.loads(x) for x in _lines(db, rid, "--view", "events",
                                               "--include-type", "retriever")]
    assert [e["event"] for e in events] == ["on_retriever_start", "on_retriever_end"]
    assert events[0]["data"]["input"] == {"q": "hi"}  # the root input, as LangChain does
    by_meta = [orjson.loads(x) for x in _lines(db, rid, "--view", "events", "--meta",
                                                "user=ann")]
    assert by_meta[0]["event"] == "on_chain_start"
    none = _lines(db, rid, "--view", "events", "--exclude-tag", "top")
    assert none == []
