"""``runlog demo --langchain`` through click's CliRunner, and the demo module itself."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console
from runlog_langchain import stream_events, stream_log
from runlog_langchain.demo import ANSWER, QUESTION, build_rag, run_demo

import runlog
from runlog.cli import cli


def test_cli_demo_langchain(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = CliRunner().invoke(cli, ["demo", "--langchain", "--delay", "0", "--db", str(db)])
    assert result.exit_code == 0, result.output
    out = result.output
    # the live stream, then the tree, then both replays, in that order
    positions = [out.index(s) for s in (ANSWER, "Stored run tree", "Replay as astream_log",
                                        "Replay as astream_events v2")]
    assert positions == sorted(positions)
    tree, log_part = out.split("Replay as astream_log")
    for name in ("rag-demo", "Docs", "ChatPromptTemplate", "GenericFakeChatModel",
                 "StrOutputParser"):
        assert name in tree
    log_part, events_part = log_part.split("Replay as astream_events v2")
    assert "/logs/Docs" in log_part
    assert "/logs/GenericFakeChatModel" in log_part
    assert "/logs/ChatPromptTemplate" not in log_part  # filtered out
    assert "on_chat_model_stream" in events_part
    assert "on_retriever_start" not in events_part  # only the run tagged "model"
    with runlog.open(db, create=False) as store:
        roots = store.runs(roots_only=True)
        assert [r.name for r in roots] == ["rag-demo"]
        assert roots[0].status == "ok"
        assert store.verify().ok


def test_cli_demo_langchain_without_the_adapter(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "runlog_langchain.demo", None)  # import fails
    result = CliRunner().invoke(cli, ["demo", "--langchain", "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 1
    assert "pip install -e adapters/langchain" in result.output


def test_run_demo_records_what_the_app_streamed() -> None:
    live = list(build_rag().stream(QUESTION))
    buf = io.StringIO()
    seen: list[str] = []
    with runlog.open(":memory:") as store:
        root = run_demo(store, out=Console(file=buf, width=120), echo=seen.append)
        assert seen == live
        assert "".join(seen) == ANSWER
        events = list(store.events(root, descendants=True))
        root_chunks = [e.data for e in events if e.run_id == root and e.channel == "output"]
        assert root_chunks == live
        patches = list(stream_log(store, root, include_names=["Docs"], include_types=["llm"]))
        logs = {op["path"].split("/")[2] for p in patches for op in p.ops
                if op["path"].startswith("/logs/")}
        assert logs == {"Docs", "GenericFakeChatModel"}
        tagged = list(stream_events(store, root, include_tags=["model"]))
        assert {e["name"] for e in tagged} == {"GenericFakeChatModel"}
        streamed = "".join(str(e["data"]["chunk"].content) for e in tagged
                           if e["event"] == "on_chat_model_stream")
        assert streamed == ANSWER
    assert f"{len(patches) - 11} more patches" in buf.getvalue()
