"""Live tail across processes on one SQLite file.

Small versions of the issue's guarantees (the large never-skip run is in
``benchmarks/bench_tail.py``): several writer processes and filtered tail processes,
live bytes equal replay bytes, kill -9 of a writer, Ctrl-C and resume, bounded WAL.
No assertion here is about time; deadlines only stop a broken test from hanging.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import runlog
from runlog.cli import cli
from runlog.cli.render import event_json_line
from runlog.ids import new_run_id
from runlog.tail import TailNotice

pytestmark = pytest.mark.slow

RUNLOG = [sys.executable, "-c", "from runlog.cli import main; main()"]

WRITER = textwrap.dedent("""
    import random, sys, runlog
    path, w, nruns, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(w)
    store = runlog.open(path)
    live = []
    for r in range(nruns):
        root = store.start_run(f"{w}-r{r % 3}", tags=[f"t{r % 3}", w],
                               metadata={"k": r % 2, "w": w})
        live.append(root)
        if r % 2:
            live.append(root.start_child("child", "tool", tags=["c"]))
        for i in range(n):
            rng.choice(live).stream({"i": i, "w": w})
        while len(live) > 3:
            live.pop(0).end({"done": True})
    for run in reversed(live):
        run.end(None)
    store.close()
""")


def wait_for(predicate: Any, what: str, timeout: float = 60.0) -> None:
    """Poll until ``predicate()``; fail with ``what`` if a broken build makes it hang."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def line_count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _has_lines(path: Path, n: int) -> Any:
    return lambda: line_count(path) >= n


def test_three_writer_processes_two_filtered_tail_processes_never_skip_never_repeat(
        tmp_path: Path) -> None:
    """Each tailer's output equals the filtered stored events, in order, with no gap
    and no duplicate, while three processes append interleaved runs at once."""
    db = tmp_path / "runs.db"
    runlog.open(db).close()
    filters = {
        "a": (["--include-tag", "t1", "--include-name", "w0-r0"],
              runlog.Filter(include_tags=["t1"], include_names=["w0-r0"])),
        "b": (["--exclude-tag", "t0", "--meta", "k=1"],
              runlog.Filter(exclude_tags=["t0"], include_metadata={"k": 1})),
    }
    tailers = {}
    for key, (flags, _) in filters.items():
        out = (tmp_path / f"{key}.out").open("wb")
        err = (tmp_path / f"{key}.err").open("wb")
        tailers[key] = subprocess.Popen(
            [*RUNLOG, "tail", "--db", str(db), "--json", "--after", "0", *flags],
            stdout=out, stderr=err)
        out.close()
        err.close()
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), f"w{k}", "6", "150"],
                                stderr=subprocess.PIPE, text=True) for k in range(3)]
    for p in writers:
        _, err_text = p.communicate(timeout=120)
        assert p.returncode == 0, err_text
    with runlog.open(db) as store:
        last = store.last_seq()
        assert last > 2500
        expected = {key: list(store.events(filter=f)) for key, (_, f) in filters.items()}
    for key, proc in tailers.items():
        want = expected[key]
        assert 0 < len(want) < last  # the filter keeps some and drops some
        out_path = tmp_path / f"{key}.out"
        wait_for(_has_lines(out_path, len(want)), f"tailer {key}")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        assert out_path.read_bytes() == b"".join(event_json_line(e) for e in want)
        stderr = (tmp_path / f"{key}.err").read_text()
        assert f"--after {last}" in stderr  # caught up: the cursor is the high-water mark


RECORD = textwrap.dedent("""
    import sys, time, runlog
    store = runlog.open(sys.argv[1])
    with store.run("rag", inputs={"q": "hi"}, tags=["live"], run_id=sys.argv[2]) as root:
        with root.child("model", "chat_model", metadata={"ls_model_name": "fake"}) as m:
            for i in range(30):
                m.token(f"tok{i} ")
                if i % 10 == 0:
                    store.flush()
                    time.sleep(0.02)
            m.end({"content": "done"})
        try:
            with root.child("check", "tool", inputs={"x": 1}):
                raise LookupError("nope")
        except LookupError:
            pass
        root.end({"answer": "done"})
    store.close()
""")


def test_live_bytes_equal_replay_bytes_for_raw_log_and_events(tmp_path: Path) -> None:
    """What `runlog tail --json` printed while the run ran, started before the run
    existed, equals byte for byte what `runlog replay` prints afterwards."""
    db = tmp_path / "runs.db"
    runlog.open(db).close()
    rid = new_run_id()
    views = ["raw", "log", "events"]
    tails = {v: subprocess.Popen([*RUNLOG, "tail", "--db", str(db), "--run", rid,
                                  "--until-end", "--json", "--view", v],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for v in views}
    subprocess.run([sys.executable, "-c", RECORD, str(db), rid], check=True, timeout=60)
    for v, proc in tails.items():
        live, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        done = CliRunner().invoke(cli, ["replay", rid, "--db", str(db), "--view", v])
        assert done.exit_code == 0, done.output
        replayed = done.stdout_bytes
        assert live == replayed
        assert live.count(b"\n") > 30


DOOMED = textwrap.dedent("""
    import sys, time, runlog
    store = runlog.open(sys.argv[1], lease_seconds=1)
    run = store.start_run("doomed", run_id=sys.argv[2])
    i = 0
    while True:                      # keep writing until killed
        run.stream(i)
        i += 1
        if i % 20 == 0:
            store.flush()            # acknowledged: events 0..i-1 must reach the tailer
            print("ACK", i, flush=True)
        time.sleep(0.001)
""")


def test_kill_9_of_the_writer_the_tail_sees_every_acknowledged_event_then_abandoned(
        tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    runlog.open(db).close()
    rid = new_run_id()
    items: list[Any] = []
    with runlog.open(db) as store:
        t = store.tail(run_id=rid, until_end=True)
        reader = threading.Thread(target=lambda: items.extend(t), daemon=True)
        reader.start()
        proc = subprocess.Popen([sys.executable, "-c", DOOMED, str(db), rid],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        acked = 0
        while acked < 100:
            line = proc.stdout.readline()
            assert line.startswith("ACK"), line
            acked = int(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        reader.join(60)
        assert not reader.is_alive(), "the tail never reported the dead writer"
        notice = items[-1]
        assert isinstance(notice, TailNotice)
        assert (notice.kind, notice.run_id) == ("abandoned", rid)
        events = items[:-1]
        assert all(isinstance(e, runlog.Event) for e in events)
        data = [e.data for e in events if e.kind == "stream"]
        assert data == list(range(len(data)))  # in order, no gap, no duplicate
        assert len(data) >= acked
        assert [e.raw for e in events] == [e.raw for e in store.events(run_id=rid)]
        assert notice.cursor == t.cursor >= events[-1].seq
        assert store.run_info(rid).status == "abandoned"


def test_ctrl_c_prints_the_cursor_and_resuming_from_it_continues_exactly(
        tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with runlog.open(db) as store:
        for i in range(5):
            with store.run(f"r{i}") as r:
                r.stream(i)
        first_batch = list(store.events())
    out = tmp_path / "out"
    with out.open("wb") as fh:
        proc = subprocess.Popen([*RUNLOG, "tail", "--db", str(db), "--json", "--after", "0"],
                                stdout=fh, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: line_count(out) >= len(first_batch), "the first batch")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    found = re.search(r"--after (\d+)", err)
    assert found, err
    cursor = int(found.group(1))
    with runlog.open(db) as store:
        for i in range(3):
            with store.run(f"s{i}") as r:
                r.stream(i)
        everything = list(store.events())
    rest = subprocess.run([*RUNLOG, "tail", "--db", str(db), "--json", "--after", str(cursor),
                           "--idle-timeout", "0"], check=True, capture_output=True,
                          timeout=60).stdout
    assert out.read_bytes() + rest == b"".join(event_json_line(e) for e in everything)


def _write_a_lot(db: Path, mb: int, probe: Any) -> int:
    """Write about ``mb`` MB of events; return the largest WAL size seen on the way."""
    biggest = 0
    with runlog.open(db) as store, store.run("bulk") as run:
        chunk = "x" * 2000
        for i in range(mb * 500):
            run.stream(chunk)
            if i % 500 == 0:
                store.flush()
                probe()
                biggest = max(biggest, os.path.getsize(f"{db}-wal"))
    return biggest


@pytest.mark.usefixtures("wide_sqlite_layout")  # edits its columns
def test_a_tailer_left_open_does_not_stop_checkpoints(tmp_path: Path) -> None:
    """With a tailer following every commit, SQLite's automatic checkpoints still
    recycle the WAL (it stays near 1000 pages); a reader holding one snapshot, the
    mistake the tail avoids, makes it grow with everything written."""
    mb = 16
    db = tmp_path / "tailed.db"
    runlog.open(db).close()
    seen = [0]
    with runlog.open(db) as reader:
        t = reader.tail()
        thread = threading.Thread(
            target=lambda: seen.__setitem__(0, sum(1 for _ in t)), daemon=True)
        thread.start()
        tailed = _write_a_lot(db, mb, lambda: None)
        t.stop()
        thread.join(30)
    assert seen[0] >= mb * 500  # the tailer kept up with the writes
    assert tailed < 8 * 2**20

    pinned_db = tmp_path / "pinned.db"
    runlog.open(pinned_db).close()
    pin = sqlite3.connect(pinned_db, isolation_level=None)
    pin.execute("BEGIN")
    pin.execute("SELECT count(*) FROM events").fetchone()  # holds its snapshot
    pinned = _write_a_lot(pinned_db, mb, lambda: None)
    pin.execute("COMMIT")
    pin.close()
    assert pinned > mb * 2**20  # the control: a pinned snapshot stops every checkpoint


def test_runlog_checkpoint_truncates_the_wal(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    keep = runlog.open(db)  # an open connection keeps the -wal file in place
    with keep.run("r") as r:
        for i in range(200):
            r.stream("y" * 500 + str(i))
    keep.flush()
    assert os.path.getsize(f"{db}-wal") > 0
    done = subprocess.run([*RUNLOG, "checkpoint", "--db", str(db)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert os.path.getsize(f"{db}-wal") == 0
    assert keep.verify().ok
    keep.close()
