"""The core commands, as a person and a program use them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import runlog
from runlog.cli import cli


@pytest.fixture
def demo_db(tmp_path: Path) -> Path:
    db = tmp_path / "demo.db"
    result = CliRunner().invoke(cli, ["demo", "--db", str(db), "--delay", "0"])
    assert result.exit_code == 0, result.output
    return db


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_demo_streams_tokens_then_shows_the_tree(tmp_path: Path) -> None:
    code, out = run("demo", "--db", str(tmp_path / "d.db"), "--delay", "0")
    assert code == 0
    assert "runlog stores each run's start" in out  # the streamed answer
    for name in ("rag-demo", "Docs", "prompt", "FakeChatModel", "word_count", "fact_check"):
        assert name in out
    assert "LookupError" in out  # the failing step is shown with its error
    assert "Try next" in out


def test_demo_records_every_kind_of_step(demo_db: Path) -> None:
    with runlog.open(demo_db) as store:
        runs = {r.name: r for r in store.runs()}
        assert {r.run_type for r in runs.values()} >= {"chain", "retriever", "prompt",
                                                     "chat_model", "tool"}
        assert runs["fact_check"].status == "error"
        assert runs["rag-demo"].status == "ok"
        tokens = [e for e in store.events() if e.channel == "token"]
        assert len(tokens) > 10
        assert store.verify().ok


def test_runs_table_and_json(demo_db: Path) -> None:
    code, out = run("runs", "--db", str(demo_db))
    assert code == 0
    assert "rag-demo" in out
    assert "FakeChatModel" not in out  # roots only by default
    code, out = run("runs", "--db", str(demo_db), "--all", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["name"] for r in rows} >= {"rag-demo", "FakeChatModel", "fact_check"}
    code, out = run("runs", "--db", str(demo_db), "--json", "--include-type", "tool")
    assert {json.loads(line)["name"] for line in out.splitlines()} == {"word_count",
                                                                       "fact_check"}
    code, out = run("runs", "--db", str(demo_db), "--json", "--status", "error", "--all")
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["fact_check"]


def test_show_accepts_a_suffix_of_the_id(demo_db: Path) -> None:
    with runlog.open(demo_db) as store:
        root = store.runs(roots_only=True)[0]
    code, out = run("show", root.run_id[-12:], "--db", str(demo_db))
    assert code == 0, out
    assert "FakeChatModel" in out
    assert "streamed:" in out
    code, out = run("show", root.run_id, "--db", str(demo_db), "--json")
    assert len(out.splitlines()) == 6


def test_replay_prints_stored_bytes_exactly(demo_db: Path) -> None:
    with runlog.open(demo_db) as store:
        root = store.runs(roots_only=True)[0]
        stored = [e.raw for e in store.replay(root.run_id)]
        seqs = [e.seq for e in store.replay(root.run_id)]
    runner = CliRunner()
    raw = runner.invoke(cli, ["replay", root.run_id, "--db", str(demo_db), "--raw"])
    assert raw.stdout_bytes == b"".join(r + b"\n" for r in stored)
    lines = runner.invoke(cli, ["replay", root.run_id, "--db", str(demo_db)]).stdout_bytes
    parsed = [json.loads(line) for line in lines.splitlines()]
    assert [p["seq"] for p in parsed] == seqs
    assert [{k: v for k, v in p.items() if k != "seq"} for p in parsed] == [
        json.loads(r) for r in stored]


def test_verify_ok(demo_db: Path) -> None:
    code, out = run("verify", "--db", str(demo_db))
    assert code == 0
    assert "ok" in out


@pytest.mark.parametrize(("args", "message"), [
    (["show", "0123456789abcdef"], "no run 0123456789abcdef"),
    (["replay", "nope-nope-nope"], "no run nope-nope-nope"),
])
def test_bad_input_is_one_clear_line(demo_db: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, [*args, "--db", str(demo_db)])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_and_foreign_databases(tmp_path: Path) -> None:
    code, out = run("runs", "--db", str(tmp_path / "nothing.db"))
    assert code == 1
    assert "no runlog store" in out
    assert not (tmp_path / "nothing.db").exists()  # reading never creates a store
    junk = tmp_path / "junk.db"
    junk.write_text("hello" * 1000)
    code, out = run("runs", "--db", str(junk))
    assert code == 1
    assert "not a runlog store" in out
    assert "Traceback" not in out


def test_db_defaults_to_environment(demo_db: Path) -> None:
    result = CliRunner(env={"RUNLOG_DB": str(demo_db)}).invoke(cli, ["runs", "--json"])
    assert result.exit_code == 0
    assert "rag-demo" in result.output
