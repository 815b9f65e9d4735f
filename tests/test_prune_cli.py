"""``runlog prune`` and ``runlog stats`` as real commands in a subprocess (SQLite and
PostgreSQL): what they print, their JSON, their refusals, and never a traceback."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pg_support
import pytest

import runlog

ENTRY = "from runlog.cli import main; main()"
TRACEBACK = re.compile(r"^Traceback \(most recent call last\):", re.M)
NOW = dt.datetime.now(dt.UTC)
OLD = NOW - dt.timedelta(days=40)


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(*args: str) -> Result:
    p = subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True,
                       timeout=120, env={**os.environ})
    assert not TRACEBACK.search(p.stdout + p.stderr), p.stdout + p.stderr
    return Result(p.returncode, p.stdout, p.stderr)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        pg_support.ensure_server()
        return pg_support.store_url(str(tmp_path))
    return str(tmp_path / "runs.db")


def fill(db: str) -> list[str]:
    """Three old traces (one tagged eval) and a fresh one; returns the old trace ids."""
    ids = []
    with runlog.open(db) as store:
        for i in range(3):
            root = store.start_run(f"old{i}", tags=["eval"] if i == 0 else [], time=OLD,
                                   run_type="chain" if i else "llm")
            root.stream("tok", time=OLD)
            root.end("ok", time=OLD)
            ids.append(root.id)
        with store.run("fresh") as run:
            run.stream("now")
    return ids


def test_prune_archive_verify_import_stats(db: str, tmp_path: Path) -> None:
    old = fill(db)
    dry = cli("prune", "--db", db, "--before", "30d", "--dry-run")
    assert dry.code == 0
    assert dry.out.strip().startswith("would remove 3 traces (3 runs, 9 events) over before")
    tagged = cli("prune", "--db", db, "--before", "30d", "--tag", "eval", "--json")
    assert tagged.code == 0, tagged
    report = json.loads(tagged.out)
    assert report["trace_ids"] == [old[0]]
    assert report["events"] == 3
    archive = tmp_path / "old.jsonl"
    r = cli("prune", "--db", db, "--before", "30d", "--archive", str(archive))
    assert r.code == 0, r
    assert f"archived 6 events to {archive} (checked)" in r.out
    assert "removed 2 traces (2 runs, 6 events) over before" in r.out
    v = cli("verify", "--db", db)
    assert v.code == 0
    assert v.out.strip() == "ok: 3 events in 1 run verified (9 events removed by recorded prunes)"
    fresh = tmp_path / "fresh.db"
    imp = cli("import", "--db", str(fresh), str(archive))
    assert imp.code == 0, imp
    with runlog.open(fresh) as store:
        assert sorted(r.trace_id for r in store.runs()) == sorted(old[1:])
    nothing = cli("prune", "--db", db, "--before", "30d")
    assert nothing.out.startswith("nothing to prune")
    stats = cli("stats", "--db", db, "--json")
    assert stats.code == 0, stats
    figures = json.loads(stats.out)
    assert (figures["events"], figures["runs"], figures["traces"]) == (3, 1, 1)
    assert figures["prunes"] == 2
    assert figures["pruned_events"] == 9
    assert figures["by_type"][0]["run_type"] == "chain"
    human = cli("stats", "--db", db)
    assert human.code == 0
    assert re.search(r"^events\s+3$", human.out, re.M)
    assert "largest traces" in human.out
    assert "per day (UTC)" in human.out
    assert "pruned     9 events in 2 batches" in human.out


def test_prune_refusals_are_one_line(db: str, tmp_path: Path) -> None:
    old = fill(db)
    future = cli("prune", "--db", db, "--before", (NOW + dt.timedelta(days=1)).isoformat())
    assert future.code == 2
    assert "the cutoff is in the future" in future.err
    bad = cli("prune", "--db", db, "--before", "last tuesday")
    assert bad.code == 2
    assert "is not a time" in bad.err
    missing = cli("prune", "--db", db)
    assert missing.code == 2
    assert "--before" in missing.err
    unknown = cli("prune", "--db", db, "--before", "1d", "--trace", "0000000-nope")
    assert unknown.code == 1
    assert unknown.err.strip().startswith("Error: --trace: no trace")
    existing = tmp_path / "exists.jsonl"
    existing.write_text("")
    taken = cli("prune", "--db", db, "--before", "30d", "--archive", str(existing))
    assert taken.code == 1
    assert "exists" in taken.err
    no_dir = cli("prune", "--db", db, "--before", "30d", "--archive",
                 str(tmp_path / "no" / "such" / "dir.jsonl"))
    assert no_dir.code == 1
    assert len(no_dir.err.strip().splitlines()) == 1
    with runlog.open(db) as store:  # nothing was removed by any of them
        assert {r.trace_id for r in store.runs(roots_only=True)} >= set(old)
    one = cli("prune", "--db", db, "--before", "30d", "--trace", old[1][-12:])
    assert one.code == 0, one
    assert "removed 1 trace (1 run, 3 events)" in one.out


def test_stats_and_prune_on_a_missing_store(tmp_path: Path) -> None:
    for args in (["stats"], ["prune", "--before", "1d"]):
        r = cli(*args, "--db", str(tmp_path / "none.db"))
        assert r.code == 1
        assert "no runlog store" in r.err
        assert not (tmp_path / "none.db").exists()


def test_copying_a_pruned_store_says_to_export_and_import(tmp_path: Path) -> None:
    """A copy keeps every seq, so it cannot reproduce a prune's gap: one line naming
    the way that works (export, then import), not a report of a damaged log."""
    db = str(tmp_path / "runs.db")
    fill(db)
    assert cli("prune", "--db", db, "--before", "30d").code == 0
    r = cli("copy", "--from", db, "--to", str(tmp_path / "copy.db"))
    assert r.code == 1
    assert len(r.err.splitlines()) == 1
    assert "was pruned" in r.err
    assert "`runlog export` then `runlog import`" in r.err
    dump = tmp_path / "all.jsonl"
    assert cli("export", "--db", db, "-o", str(dump)).code == 0
    assert cli("import", str(dump), "--db", str(tmp_path / "moved.db")).code == 0
    assert cli("verify", "--db", str(tmp_path / "moved.db")).code == 0
