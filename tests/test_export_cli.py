"""`runlog export`, `runlog import` and `runlog verify --file`, as a person uses them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import runlog
from runlog.cli import cli


def run(*args: str, input: bytes | None = None) -> tuple[int, bytes, str]:
    result = CliRunner().invoke(cli, list(args), input=input)
    return result.exit_code, result.stdout_bytes, result.stderr


@pytest.fixture
def demo_db(tmp_path: Path) -> Path:
    db = tmp_path / "demo.db"
    code, _, err = run("demo", "--db", str(db), "--delay", "0")
    assert code == 0, err
    return db


def test_export_to_stdout_is_the_library_export(demo_db: Path) -> None:
    code, out, _ = run("export", "--db", str(demo_db))
    assert code == 0
    with runlog.open(demo_db) as store:
        buf = io.BytesIO()
        runlog.export(store, "jsonl", buf)
    assert out == buf.getvalue()


def test_export_import_verify_round_trip(demo_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    code, _, err = run("export", "--db", str(demo_db), "-o", str(out))
    assert code == 0
    assert "exported" in err
    code, stdout, _ = run("verify", "--file", str(out))
    assert code == 0
    assert b"ok" in stdout
    target = tmp_path / "target.db"
    code, _, err = run("import", str(out), "--db", str(target))
    assert code == 0, err
    assert "imported" in err
    code, _, _ = run("verify", "--db", str(target))
    assert code == 0
    again = tmp_path / "again.jsonl"
    run("export", "--db", str(target), "-o", str(again))
    assert again.read_bytes() == out.read_bytes()


def test_importing_twice_is_refused_then_deduplicated(demo_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    run("export", "--db", str(demo_db), "-o", str(out))
    target = tmp_path / "target.db"
    assert run("import", str(out), "--db", str(target))[0] == 0
    code, _, err = run("import", str(out), "--db", str(target))
    assert code == 1
    assert "already in" in err
    assert "--skip-existing" in err
    assert "Traceback" not in err
    code, _, err = run("import", str(out), "--db", str(target), "--skip-existing")
    assert code == 0
    assert "imported 0 events" in err
    assert "skipped" in err
    with runlog.open(target) as store, runlog.open(demo_db) as source:
        assert store.last_seq() == source.last_seq()


def test_import_from_stdin(demo_db: Path, tmp_path: Path) -> None:
    _, data, _ = run("export", "--db", str(demo_db))
    code, _, err = run("import", "-", "--db", str(tmp_path / "t.db"), input=data)
    assert code == 0, err
    with runlog.open(tmp_path / "t.db") as store:
        assert store.verify().ok
        assert store.last_seq() == data.count(b'"event":')


def test_verify_file_reports_a_tampered_line(demo_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    run("export", "--db", str(demo_db), "-o", str(out))
    lines = out.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4].replace(b'"kind":', b'"kind" :', 1)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(lines))
    code, _, err = run("verify", "--file", str(bad))
    assert code == 1
    assert "broken" in err
    assert "line 5" in err
    code, _, err = run("import", str(bad), "--db", str(tmp_path / "t.db"))
    assert code == 1
    assert "line 5" in err
    code, _, err = run("verify", "--file", str(tmp_path / "missing.jsonl"))
    assert code == 1


def test_export_formats_and_selection(demo_db: Path, tmp_path: Path) -> None:
    with runlog.open(demo_db) as store:
        root = store.runs(roots_only=True)[0].run_id
    code, out, _ = run("export", "--db", str(demo_db), "--format", "otlp", "--run", root[-12:])
    assert code == 0
    spans = json.loads(out)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert len(spans) == 6
    code, out, _ = run("export", "--db", str(demo_db), "--include-type", "tool")
    assert code == 0
    assert out.count(b'"kind":"start"') == 2
    trace = tmp_path / "trace.json"
    code, _, err = run("export", "--db", str(demo_db), "--format", "chrome", "--trace", root,
                       "-o", str(trace), "--max-bytes", "20000", "--max-value-bytes", "64")
    assert code == 0, err
    assert json.loads(trace.read_bytes())["traceEvents"]


def test_export_usage_errors(demo_db: Path, tmp_path: Path) -> None:
    code, _, err = run("export", "--db", str(demo_db), "--max-bytes", "100000")
    assert code == 2
    assert "chrome only" in err
    code, _, err = run("export", "--db", str(demo_db), "--max-value-bytes", "10")
    assert code == 2
    code, _, err = run("export", "--db", str(demo_db), "--format", "chrome",
                       "--max-bytes", "100000")
    assert code == 2
    assert "never split" in err
    code, _, err = run("export", "--db", str(tmp_path / "nothing.db"))
    assert code == 1
    assert "no runlog store" in err
    assert not (tmp_path / "nothing.db").exists()
    code, _, err = run("export", "--db", str(demo_db), "--run", "ffffffffffff")
    assert code == 1
    assert "no run" in err
