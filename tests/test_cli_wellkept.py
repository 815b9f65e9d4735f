"""The CLI as a well-kept tool (issue 19): one clear line for every mistake, never a
traceback; ids resolved the same way everywhere; output that survives a pipe.

Every test runs the real ``runlog`` command in a subprocess and checks that no
traceback reached its output (``cli``, below, asserts it on every call).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

import runlog
from runlog.ids import new_run_id

ENTRY = "from runlog.cli import main; main()"
# A Python traceback as printed (a recorded error's traceback inside a JSON line is data).
TRACEBACK = re.compile(r"^Traceback \(most recent call last\):", re.M)


def no_traceback(text: str) -> None:
    assert not TRACEBACK.search(text), text

# Runs the CLI with a real SIGINT sent to itself once the command has handled N events
# (through the progress callback export and import report to), so Ctrl-C lands in
# the middle of the work, deterministically.
INTERRUPT_AFTER = textwrap.dedent("""
    import contextlib, os, signal, sys
    import runlog.cli.export as cli_export

    after = int(sys.argv[1])

    @contextlib.contextmanager
    def bar(label, total):
        seen = [0]
        def progress(n):
            seen[0] += n
            if seen[0] >= after:
                os.kill(os.getpid(), signal.SIGINT)
        yield progress

    cli_export.progress_bar = bar
    from runlog.cli import main
    sys.argv = ["runlog", *sys.argv[2:]]
    main()
""")


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(*args: str, cwd: Path | None = None, timeout: float = 60,
        env: dict[str, str] | None = None) -> Result:
    """Run ``runlog ARGS`` in a subprocess; no traceback may reach its output."""
    p = subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True,
                       cwd=cwd, timeout=timeout, env={**os.environ, **(env or {})})
    no_traceback(p.stdout + p.stderr)
    return Result(p.returncode, p.stdout, p.stderr)


def one_error_line(r: Result) -> str:
    """The error of a command that failed with one line (and nothing on stdout)."""
    assert r.code == 1, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("Error: ")
    return lines[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[runlog.RunInfo]]:
    """A store holding two demo recordings: (path, newest root id, every run)."""
    db = tmp_path_factory.mktemp("wellkept") / "demo.db"
    for _ in range(2):
        assert cli("demo", "--db", str(db), "--delay", "0").code == 0
    with runlog.open(db, create=False) as store:
        runs = store.runs()
        root = store.runs(roots_only=True)[0]
    return db, root.run_id, runs


# ------------------------------------------------------------------ export -o


def test_export_to_a_missing_directory_a_directory_or_proc_is_one_line(
        demo: tuple[Path, str, list[runlog.RunInfo]], tmp_path: Path) -> None:
    db = str(demo[0])
    line = one_error_line(cli("export", "--db", db, "-o", str(tmp_path / "nope" / "x.jsonl")))
    assert "-o/--output" in line
    assert "no directory" in line
    target = tmp_path / "adir"
    target.mkdir()
    line = one_error_line(cli("export", "--db", db, "-o", str(target)))
    assert "is a directory" in line
    assert target.is_dir()
    assert list(target.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"]  # no stray .partial
    if Path("/proc/version").is_file():
        line = one_error_line(cli("export", "--db", db, "-o", "/proc/version"))
        assert "cannot write -o /proc/version" in line


def test_export_into_a_fifo_writes_it_and_never_replaces_it(
        demo: tuple[Path, str, list[runlog.RunInfo]], tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = cli("export", "--db", str(demo[0]), "-o", str(fifo))
    reader.join(60)
    assert r.code == 0, r.err
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still the pipe, not a renamed file
    lines = got[0].splitlines()
    assert len(lines) == 2 + sum(x.event_count for x in demo[2])  # header, events, trailer
    assert "74 events of 12 runs" in r.err


# ------------------------------------------------------------------ serve


def test_serve_on_a_busy_port_or_a_bad_host_is_one_line_with_a_hint(
        demo: tuple[Path, str, list[runlog.RunInfo]]) -> None:
    db = str(demo[0])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_error_line(cli("serve", "--db", db, "--port", str(port), "--no-open"))
    assert "--port" in line
    assert "in use" in line
    assert "--port 0" in line
    line = one_error_line(cli("serve", "--db", db, "--host", "no-such-host.invalid",
                              "--no-open"))
    assert "--host" in line
    assert "no-such-host.invalid" in line


# ------------------------------------------------------------------ ids


def test_verify_and_export_resolve_trace_like_run(
        demo: tuple[Path, str, list[runlog.RunInfo]], tmp_path: Path) -> None:
    db, root, runs = str(demo[0]), demo[1], demo[2]
    trace_events = sum(r.event_count for r in runs if r.trace_id == root)
    r = cli("verify", "--db", db, "--trace", root[-12:])
    assert r.code == 0, r.err
    assert r.out.strip() == f"ok: {trace_events} events in 6 runs verified"
    r = cli("verify", "--db", db)
    assert r.out.strip() == f"ok: {2 * trace_events} events in 12 runs verified"
    for cmd in (["verify"], ["export"]):
        line = one_error_line(cli(*cmd, "--db", db, "--trace", "0123456789ab"))
        assert "--trace" in line
        assert "no trace" in line
        child = next(x for x in runs if x.parent_id is not None)
        line = one_error_line(cli(*cmd, "--db", db, "--trace", child.run_id))
        assert f"inside trace {child.trace_id}" in line
    out = tmp_path / "t.jsonl"
    r = cli("export", "--db", db, "--trace", root[:13], "-o", str(out))
    assert r.code == 0, r.err
    assert f"{trace_events} events of 6 runs" in r.err
    other = next(x for x in runs if x.trace_id != root)
    line = one_error_line(cli("export", "--db", db, "--trace", root, "--run", other.run_id))
    assert "--run" in line
    assert "not in --trace" in line


def test_ambiguous_ids_are_refused_by_trace_and_run(tmp_path: Path) -> None:
    db = tmp_path / "amb.db"
    with runlog.open(db) as store:
        for rid in ("job-aaaaaaaa-1", "job-aaaaaaaa-2"):
            with store.run("r", run_id=rid) as run:
                run.end(outputs=1)
    for args in (["verify", "--trace"], ["export", "--trace"], ["export", "--run"],
                 ["tail", "--run"], ["tail", "--trace"]):
        line = one_error_line(cli(*args, "job-aaaaaaaa", "--db", str(db)))
        assert "matches several" in line
        assert args[-1] in line
    r = cli("verify", "--trace", "job-aaaaaaaa-2", "--db", str(db))
    assert r.out.strip() == "ok: 2 events in 1 run verified"  # singular


def test_tail_refuses_an_id_that_could_never_start_and_says_what_it_waits_for(
        demo: tuple[Path, str, list[runlog.RunInfo]]) -> None:
    db, root = str(demo[0]), demo[1]
    for flag in ("--run", "--trace"):
        line = one_error_line(cli("tail", "--db", db, flag, "not-an-id"))
        assert flag in line
        assert "not a full id" in line
    future = new_run_id()
    r = cli("tail", "--db", db, "--run", future, "--until-end", "--idle-timeout", "0.3")
    assert r.code == 0, r.err
    assert f"waiting for run {future} to start, then following it until it ends" in r.err
    r = cli("tail", "--db", db, "--trace", root[-10:], "--until-end", "--json")
    assert r.code == 0, r.err
    assert f"following trace {root} until its root run ends" in r.err
    lines = [json.loads(x) for x in r.out.splitlines()]
    assert lines[-1]["kind"] == "end"
    assert lines[-1]["run_id"] == root


def test_tail_messages_name_the_cli_flags(demo: tuple[Path, str, list[runlog.RunInfo]]) -> None:
    db = str(demo[0])
    for args, want in ((["--until-end"], "--until-end needs --run or --trace"),
                       (["--view", "log"], "--view log folds one run"),
                       (["--run", demo[1], "--trace", demo[1]], "give --run or --trace")):
        r = cli("tail", "--db", db, *args)
        assert r.code == 2, r.err
        assert want in r.err
        assert "run_id" not in r.err
        assert "until_end" not in r.err


def test_tail_waits_for_a_store_that_does_not_exist_yet(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    tail = subprocess.Popen([sys.executable, "-c", ENTRY, "tail", "--db", str(db), "--json",
                             "--idle-timeout", "3"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert tail.stderr is not None
    first = tail.stderr.readline()
    assert "waiting for it to be created" in first
    assert cli("demo", "--db", str(db), "--delay", "0").code == 0
    out, err = tail.communicate(timeout=60)
    assert tail.returncode == 0, err
    no_traceback(out + err)
    with runlog.open(db, create=False) as store:
        assert [json.loads(x)["seq"] for x in out.splitlines()] == [
            e.seq for e in store.events()]  # from the store's first event, none skipped


# ------------------------------------------------------------------ runs


def test_runs_in_a_pipe_keeps_every_id_whole_on_one_line(
        demo: tuple[Path, str, list[runlog.RunInfo]]) -> None:
    db, runs = str(demo[0]), demo[2]
    r = cli("runs", "--db", db, "--all")
    assert r.code == 0
    rows = r.out.splitlines()
    assert rows[0].split()[:2] == ["run", "id"]
    assert "own events" in rows[0]
    assert [row.split()[0] for row in rows[1:]] == [x.run_id for x in runs]
    roots = cli("runs", "--db", db).out.splitlines()
    assert "own events" not in roots[0]
    assert "events" in roots[0]
    for row in roots[1:]:
        assert row.split()[-2] == "37"  # the whole trace's events, not the root's own 2
    tsv = cli("runs", "--db", db, "--all", "--format", "tsv").out.splitlines()
    assert tsv[0].split("\t")[:2] == ["run_id", "name"]
    assert [row.split("\t")[0] for row in tsv[1:]] == [x.run_id for x in runs]
    as_json = [json.loads(x) for x in cli("runs", "--db", db, "--format", "json").out.split()]
    assert [x["trace_event_count"] for x in as_json] == [37, 37]


def test_runs_on_a_narrow_terminal_keeps_ids_whole(
        demo: tuple[Path, str, list[runlog.RunInfo]]) -> None:
    import pty

    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "60", "LINES": "40", "TERM": "xterm"}
    p = subprocess.Popen([sys.executable, "-c", ENTRY, "runs", "--db", str(demo[0]), "--all"],
                         stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the pty closes when the command exits
            break
        if not chunk:
            break
        chunks.append(chunk)
    p.wait(60)
    os.close(leader)
    text = b"".join(chunks).decode()
    no_traceback(text)
    for x in demo[2]:
        assert x.run_id in text


def test_runs_limit_since_until_and_what_it_says(
        demo: tuple[Path, str, list[runlog.RunInfo]], tmp_path: Path) -> None:
    db = str(demo[0])
    r = cli("runs", "--db", db, "--limit", "1")
    assert len(r.out.splitlines()) == 2
    assert "showing the newest 1 run; more exist" in r.err
    assert "more exist" not in cli("runs", "--db", db, "--limit", "2").err
    assert len(cli("runs", "--db", db, "--since", "1h").out.splitlines()) == 3
    assert len(cli("runs", "--db", db, "--since", "2000-01-01", "--all").out.splitlines()) == 13
    r = cli("runs", "--db", db, "--until", "2000-01-01T00:00Z")
    assert r.code == 0
    assert r.out.strip() == "no runs match"
    r = cli("runs", "--db", db, "--since", "yesterdayish")
    assert r.code == 2
    assert "2h" in r.err
    assert "2026-12-04" in r.err
    empty = tmp_path / "empty.db"
    runlog.open(empty).close()
    r = cli("runs", "--db", str(empty))
    assert "no runs match" not in r.out
    assert "no runs in" in r.out


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("args", [
    ["runs", "--limit", "0"], ["runs", "--limit", "-1"],
    ["import", "x.jsonl", "--batch-size", "0"], ["import", "x.jsonl", "--batch-size", "-5"],
    ["export", "--format", "otlp", "--max-value-bytes", "-1"],
    ["tail", "--idle-timeout", "-1"], ["tail", "--after", "-1"], ["demo", "--delay", "-1"],
])
def test_out_of_range_values_are_refused_by_their_option(args: list[str],
                                                         tmp_path: Path) -> None:
    r = cli(*args, "--db", str(tmp_path / "x.db"))
    assert r.code == 2
    assert f"Invalid value for '{args[-2]}'" in r.err
    assert not (tmp_path / "x.db").exists()


BUG = textwrap.dedent("""
    import sys
    import runlog.cli.core as core

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug stands in here")

    core.open_store = broken
    from runlog.cli import main
    sys.argv = ["runlog", "runs", "--db", sys.argv[1]]
    main()
""")


def test_an_unexpected_error_is_one_line_unless_asked_for_the_traceback(
        tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-c", BUG, str(tmp_path / "x.db")],
                       capture_output=True, text=True, timeout=60)
    no_traceback(p.stdout + p.stderr)
    line = one_error_line(Result(p.returncode, p.stdout, p.stderr))
    assert "unexpected ZeroDivisionError: a bug stands in here" in line
    assert "RUNLOG_TRACEBACK=1" in line
    p = subprocess.run([sys.executable, "-c", BUG, str(tmp_path / "x.db")],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "RUNLOG_TRACEBACK": "1"})
    assert TRACEBACK.search(p.stderr)
    assert p.returncode == 1


def test_a_missing_second_store_is_named_by_its_option(
        demo: tuple[Path, str, list[runlog.RunInfo]], tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.db")
    line = one_error_line(cli("copy", "--from", missing, "--to", str(tmp_path / "to.db")))
    assert line.startswith("Error: --from: no runlog store at")
    assert "pass --from" in line
    assert not (tmp_path / "to.db").exists()
    line = one_error_line(cli("diff", demo[1], demo[1], "--db", str(demo[0]), "--db-b", missing))
    assert line.startswith("Error: --db-b: no runlog store at")


def test_long_messages_are_never_wrapped(tmp_path: Path) -> None:
    deep = tmp_path / ("a-rather-long-directory-name-" * 3)
    deep.mkdir()
    db = deep / "store.db"
    with runlog.open(db) as store, store.run("r") as run:
        run.stream("original")
    dump = deep / "runs.jsonl"
    assert cli("export", "--db", str(db), "-o", str(dump)).code == 0
    r = cli("import", str(dump), "--db", str(db), "--skip-existing")
    assert r.code == 0
    assert len(r.err.splitlines()) == 1
    assert "skipped 3 events of 1 run " in r.err
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")  # tamper with the log
    conn.execute("UPDATE events SET raw = replace(raw, 'original', 'modified') WHERE seq = 2")
    conn.close()
    r = cli("verify", "--db", str(db))
    assert r.code == 1
    assert len(r.err.splitlines()) == 1
    assert r.err.startswith("broken: seq 2")


DOOMED = textwrap.dedent("""
    import sys, runlog
    store = runlog.open(sys.argv[1], lease_seconds=0.5)
    run = store.start_run("doomed-run-with-a-name-long-enough-to-wrap-an-80-column-line",
                          run_id=sys.argv[2])
    run.stream("x")
    store.flush()
    print("ACK", flush=True)
    sys.stdin.read()                 # wait here until killed
""")


def test_the_abandoned_notice_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    rid = new_run_id()
    writer = subprocess.Popen([sys.executable, "-c", DOOMED, str(db), rid],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "ACK"
    os.kill(writer.pid, signal.SIGKILL)
    writer.communicate()
    r = cli("tail", "--db", str(db), "--run", rid, "--until-end")
    assert r.code == 0, r.err
    notice = [line for line in r.out.splitlines() if "abandoned" in line]
    assert len(notice) == 1
    assert notice[0].endswith("(process killed or hung)")


# ------------------------------------------------------------------ Ctrl-C


def test_ctrl_c_in_demo_says_what_was_recorded(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    p = subprocess.Popen([sys.executable, "-c", ENTRY, "demo", "--db", str(db), "--delay",
                          "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    seen = b""
    while b"FakeChatModel:\nrunlog" not in seen:  # the first token: the run is recording
        chunk = os.read(p.stdout.fileno(), 100)
        assert chunk, "the demo ended before streaming"
        seen += chunk
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    text = (seen + out + err).decode()
    no_traceback(text)
    assert "Aborted!" not in text
    assert p.returncode == 130
    with runlog.open(db, create=False) as store:
        root = store.runs(roots_only=True)[0]
    assert f"runlog demo: interrupted; what ran so far is recorded as run {root.run_id}" in text
    assert f"runlog show {root.run_id}" in text


def _interrupt(after: int, *args: str) -> Result:
    p = subprocess.run([sys.executable, "-c", INTERRUPT_AFTER, str(after), *args],
                       capture_output=True, text=True, timeout=120)
    no_traceback(p.stdout + p.stderr)
    assert "Aborted!" not in p.stderr, p.stderr
    return Result(p.returncode, p.stdout, p.stderr)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store of 200 runs of 52 events and its JSONL export."""
    where = tmp_path_factory.mktemp("big")
    db, dump = where / "big.db", where / "big.jsonl"
    with runlog.open(db) as store:
        for i in range(200):
            with store.run("r", inputs={"i": i}) as run:
                for k in range(50):
                    run.stream({"k": k})
    assert cli("export", "--db", str(db), "-o", str(dump)).code == 0
    return db, dump


def test_ctrl_c_in_import_says_how_much_was_committed_and_how_to_finish(
        big: tuple[Path, Path], tmp_path: Path) -> None:
    db = tmp_path / "into.db"
    runlog.open(db).close()
    r = _interrupt(3000, "import", str(big[1]), "--db", str(db), "--batch-size", "1000")
    assert r.code == 130
    with runlog.open(db, create=False) as store:
        committed = store.last_seq()
    assert len(r.err.splitlines()) == 1
    if committed:
        assert f"interrupted; {committed} events committed to {db}" in r.err
        assert f"runlog import {big[1]} --db {db} --skip-existing" in r.err
    else:
        assert "nothing was committed" in r.err
    done = cli("import", str(big[1]), "--db", str(db), "--skip-existing")
    assert done.code == 0, done.err
    assert cli("verify", "--db", str(db)).out.strip() == "ok: 10400 events in 200 runs verified"


def test_ctrl_c_in_export_leaves_no_file_and_says_so(big: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    r = _interrupt(2000, "export", "--db", str(big[0]), "-o", str(out))
    assert r.code == 130
    assert f"interrupted; nothing was written to {out}" in r.err
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .partial
    r = _interrupt(2000, "export", "--db", str(big[0]))
    assert r.code == 130
    assert "standard output got an incomplete export (stopped after" in r.err
