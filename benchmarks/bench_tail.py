"""Live tail benchmarks (issue 5): commit -> tailer latency, reader CPU, never-skip at scale.

Latency is measured across processes on one SQLite file. A writer process commits with
``SQLiteBackend.append`` directly and notes ``time.monotonic_ns()`` as each commit
returns; a reader process notes the same clock (system-wide on Linux) when it receives
the event. Three readers run against the same writer pattern in the same invocation:

* ``runlog``:  ``store.tail()`` (inotify on the db directory + re-read back-off + 100 ms
               fallback poll);
* ``inotify``: the baseline of ``perf-baselines.md``: raw sqlite3, inotify on the
               ``-wal`` file, a query per wake (100 ms fallback);
* ``poll1ms``: raw sqlite3 polling every 1 ms.

Every reader decodes every row (``orjson.loads``), as the baseline did. Scenarios:
``idle`` (one event per commit, a commit every ~5 ms) and ``saturated`` (100-event
batches back to back; latency of each batch's last event). Reader CPU is user+sys
time of the reader process from its first event to its last, and for a tail with no
writes.
Goal: p99 < 2 ms idle, < 20 ms saturated.

``neverskip``: 3 writer processes (interleaved runs, 100k+ events in total; 20k with
``--quick``) while 2 ``runlog tail --json`` processes follow with filters; each output
must equal the filtered ``store.events()`` byte for byte.
``abandon``: seconds from ``kill -9`` of a writer (lease 1 s) to the tail's notice.

Run: ``python -m benchmarks.bench_tail`` (``--quick`` for smaller sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import orjson

import runlog
from runlog.cli.render import event_json_line
from runlog.store.base import Pending, WriterInfo, pending_from_raw
from runlog.store.sqlite import SQLiteBackend

# The raw baselines here read and write the wide layout's columns (seq, raw, ...); new
# stores are compact by default (docs/storage.md), so this benchmark asks for wide ones
# (also in the processes it starts).
os.environ.setdefault("RUNLOG_SQLITE_LAYOUT", "wide")

READERS = ("runlog", "inotify", "poll1ms")


# ------------------------------------------------------------------------ processes


def make_pending(n: int, runs: int = 10) -> list[Pending]:
    """``n`` realistic stream events (~250 B) over ``runs`` interleaved runs."""
    mem = runlog.open(":memory:")
    handles = [mem.start_run(f"model-{i}", "chat_model", tags=["bench", f"r{i}"],
                             metadata={"ls_model_name": "fake"}) for i in range(runs)]
    for i in range(n):
        handles[i % runs].stream(f"tok{i % 97} ")
    mem.flush()
    prev: dict[str, bytes | None] = {}
    out = []
    for e in mem.events():
        if e.kind != "stream":
            continue
        p = pending_from_raw(e.raw, prev.get(e.run_id))
        prev[e.run_id] = p.digest
        out.append(p)
    mem.close()
    return out[:n]


def writer_main(db: str, mode: str, n: int, out: str) -> None:
    """Commit ``n`` events; write ``[[last_seq_of_commit, t_commit_ns], ...]`` to ``out``."""
    pend = make_pending(n)
    backend = SQLiteBackend(db)
    info = WriterInfo(writer_id=f"bench-{os.getpid()}")
    marks: list[tuple[int, int]] = []
    batch = 1 if mode == "idle" else 100
    time.sleep(0.3)  # let the reader settle
    for start in range(0, n, batch):
        seq = backend.append(pend[start:start + batch], info, time.time_ns() // 1000)
        marks.append((seq, time.monotonic_ns()))
        if mode == "idle":
            time.sleep(0.004 + 0.002 * ((start * 7919) % 10) / 10)
    backend.close()
    Path(out).write_text(json.dumps(marks))


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def reader_main(kind: str, db: str, after: int, n: int, out: str) -> None:
    """Receive ``n`` events after ``after``; write seq -> receive time and CPU use."""
    seen: dict[int, int] = {}
    last = after
    target = after + n
    print("READY", flush=True)
    cpu0, wall0 = _cpu(), time.monotonic()
    first = True
    if kind == "runlog":
        store = runlog.open(db)
        with store.tail(after=after) as t:
            for e in t:
                e.kind  # noqa: B018 - decode, as the baselines do
                seen[e.seq] = time.monotonic_ns()
                if first:  # CPU is measured while commits arrive, not before
                    cpu0, wall0, first = _cpu(), time.monotonic(), False
                if e.seq >= target:
                    break
        store.close()
    else:
        conn = sqlite3.connect(db, isolation_level=None)
        ino: Any = None
        poller = None
        if kind == "inotify":
            from asyncinotify import Inotify, Mask

            ino = Inotify()
            ino.sync_timeout = 0
            ino.add_watch(f"{db}-wal", Mask.MODIFY)
            poller = select.poll()
            poller.register(ino.fd, select.POLLIN)
        while last < target:
            rows = conn.execute("SELECT seq, raw FROM events WHERE seq > ? ORDER BY seq",
                                (last,)).fetchall()
            now = time.monotonic_ns()
            for seq, raw in rows:
                orjson.loads(raw)
                seen[seq] = now
                last = seq
            if rows and first:
                cpu0, wall0, first = _cpu(), time.monotonic(), False
            if rows:
                continue
            if poller is not None:
                poller.poll(100)
                while ino.sync_get() is not None:
                    pass
            else:
                time.sleep(0.001)
        conn.close()
    cpu = _cpu() - cpu0
    wall = time.monotonic() - wall0
    Path(out).write_text(json.dumps({"seen": seen, "cpu": cpu, "wall": wall}))


def idle_cpu_main(db: str, seconds: float, out: str) -> None:
    """CPU share of a tail that waits with nothing committed (heartbeats aside)."""
    store = runlog.open(db)
    cpu0, wall0 = _cpu(), time.monotonic()
    with store.tail(after=store.last_seq(), idle_timeout=seconds) as t:
        for _ in t:
            pass
    share = (_cpu() - cpu0) / (time.monotonic() - wall0)
    store.close()
    Path(out).write_text(json.dumps({"cpu_share": share}))


def _spawn(*args: str, stdout: Any = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.bench_tail", *args],
                            stdout=stdout, text=True)


# ------------------------------------------------------------------------ scenarios


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def latency_round(tmp: Path, kind: str, mode: str, n: int) -> dict[str, float]:
    db = tmp / f"lat-{kind}-{mode}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    backend = SQLiteBackend(db)
    backend.append(make_pending(1), WriterInfo(writer_id="warm"), 0)
    after = backend.last_seq()
    reader_out, writer_out = tmp / "reader.json", tmp / "writer.json"
    reader = _spawn("--reader", kind, str(db), str(after), str(n), str(reader_out),
                    stdout=subprocess.PIPE)
    assert reader.stdout is not None
    assert reader.stdout.readline().strip() == "READY"
    time.sleep(0.2)
    writer = _spawn("--writer", mode, str(db), str(n), str(writer_out))
    writer.wait(timeout=600)
    reader.wait(timeout=600)
    reader.stdout.close()
    backend.close()
    got = json.loads(reader_out.read_text())
    seen = {int(k): v for k, v in got["seen"].items()}
    marks = json.loads(writer_out.read_text())
    lat = [(seen[seq] - t) / 1e6 for seq, t in marks if seq in seen]
    return {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "max": max(lat),
            "cpu": got["cpu"] / got["wall"], "samples": len(lat)}


def bench_latency(tmp: Path, mode: str, n: int, rounds: int) -> dict[str, dict[str, float]]:
    per: dict[str, list[dict[str, float]]] = {k: [] for k in READERS}
    for _ in range(rounds):  # interleaved, so drift hits every reader alike
        for kind in READERS:
            per[kind].append(latency_round(tmp, kind, mode, n))
    return {k: {m: statistics.median(r[m] for r in rs) for m in rs[0]} for k, rs in per.items()}


NEVERSKIP_WRITER = textwrap.dedent("""
    import random, sys, runlog
    path, w, nruns, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(w)
    store = runlog.open(path)
    live = []
    for r in range(nruns):
        root = store.start_run(f"{w}-r{r % 3}", tags=[f"t{r % 3}", w],
                               metadata={"k": r % 2})
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
RUNLOG = [sys.executable, "-c", "from runlog.cli import main; main()"]


def bench_neverskip(tmp: Path, total: int) -> dict[str, Any]:
    db = tmp / "neverskip.db"
    runlog.open(db).close()
    filters = {
        "a": (["--include-tag", "t1", "--include-name", "w0-r0"],
              runlog.Filter(include_tags=["t1"], include_names=["w0-r0"])),
        "b": (["--exclude-tag", "t0", "--meta", "k=1"],
              runlog.Filter(exclude_tags=["t0"], include_metadata={"k": 1})),
    }
    procs = {}
    for key, (flags, _) in filters.items():
        with (tmp / f"{key}.out").open("wb") as fh:
            procs[key] = subprocess.Popen(
                [*RUNLOG, "tail", "--db", str(db), "--json", "--after", "0", *flags],
                stdout=fh, stderr=subprocess.DEVNULL)
    nruns = 12
    per_run = total // (3 * nruns)
    t0 = time.perf_counter()
    writers = [subprocess.Popen([sys.executable, "-c", NEVERSKIP_WRITER, str(db), f"w{k}",
                                 str(nruns), str(per_run)]) for k in range(3)]
    for w in writers:
        assert w.wait(timeout=1800) == 0
    wrote = time.perf_counter() - t0
    out: dict[str, Any] = {"write_s": wrote}
    with runlog.open(db) as store:
        out["events"] = store.last_seq()
        for key, (_, f) in filters.items():
            want = b"".join(event_json_line(e) for e in store.events(filter=f))
            path = tmp / f"{key}.out"
            deadline = time.monotonic() + 300
            while path.stat().st_size < len(want) and time.monotonic() < deadline:
                time.sleep(0.05)
            out[f"lag_{key}_s"] = time.perf_counter() - t0 - wrote
            procs[key].send_signal(signal.SIGINT)
            procs[key].wait(timeout=60)
            got = path.read_bytes()
            out[f"ok_{key}"] = got == want
            out[f"lines_{key}"] = want.count(b"\n")
    return out


DOOMED = textwrap.dedent("""
    import sys, time, runlog
    store = runlog.open(sys.argv[1], lease_seconds=1)
    run = store.start_run("doomed", run_id=sys.argv[2])
    while True:
        run.stream("x")
        store.flush()
        print("ACK", flush=True)
        time.sleep(0.01)
""")


def bench_abandon(tmp: Path, rounds: int) -> list[float]:
    from runlog.ids import new_run_id
    from runlog.tail import TailNotice

    delays = []
    for r in range(rounds):
        db = tmp / f"abandon{r}.db"
        runlog.open(db).close()
        rid = new_run_id()
        proc = subprocess.Popen([sys.executable, "-c", DOOMED, str(db), rid],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for _ in range(20):
            proc.stdout.readline()
        with runlog.open(db) as store, store.tail(run_id=rid, until_end=True) as t:
            killed = 0.0
            for item in t:
                if not killed:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = time.monotonic()
                if isinstance(item, TailNotice):
                    delays.append(time.monotonic() - killed)
        proc.wait()
        proc.stdout.close()
    return delays


# ------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    ap.add_argument("--reader", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--writer", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--idle-cpu", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.reader:
        k, db, after, n, out = args.reader
        reader_main(k, db, int(after), int(n), out)
        return {}
    if args.writer:
        mode, db, n, out = args.writer
        writer_main(db, mode, int(n), out)
        return {}
    if args.idle_cpu:
        db, secs, out = args.idle_cpu
        idle_cpu_main(db, float(secs), out)
        return {}

    quick = args.quick
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rounds = 1 if quick else 3
        for mode, n in (("idle", 300 if quick else 1500),
                        ("saturated", 30_000 if quick else 150_000)):
            res = bench_latency(tmp, mode, n, rounds)
            results[mode] = res
            goal = 2.0 if mode == "idle" else 20.0
            base = res["inotify"]
            for kind in READERS:
                r = res[kind]
                print(f"{mode:9} {kind:8} p50 {r['p50']:7.3f} ms  p99 {r['p99']:7.3f} ms  "
                      f"max {r['max']:7.2f} ms  reader CPU {100 * r['cpu']:5.1f} %  "
                      f"(p99 vs inotify baseline {r['p99'] / base['p99']:.2f}x)")
            ok = res["runlog"]["p99"] < goal
            print(f"{mode:9} runlog p99 goal < {goal:.0f} ms: {'met' if ok else 'MISSED'}")
        db = tmp / "idle.db"
        runlog.open(db).close()
        out = tmp / "idle.json"
        secs = "2" if quick else "5"
        _spawn("--idle-cpu", str(db), secs, str(out)).wait(timeout=120)
        share = json.loads(out.read_text())["cpu_share"]
        results["idle_cpu"] = share
        print(f"idle tail (no commits) reader CPU {100 * share:.2f} % (goal < 5 %)")
        delays = bench_abandon(tmp, 2 if quick else 5)
        results["abandon_s"] = delays
        print(f"abandoned reported {statistics.median(delays):.2f} s after kill -9 "
              f"(lease 1 s; max {max(delays):.2f} s)")
        ns = bench_neverskip(tmp, 20_000 if quick else 120_000)
        results["neverskip"] = ns
        print(f"neverskip {ns['events']:,} events from 3 writer processes in "
              f"{ns['write_s']:.1f} s; tailer a {ns['lines_a']:,} lines "
              f"{'identical' if ns['ok_a'] else 'DIFFERENT'}, tailer b {ns['lines_b']:,} "
              f"lines {'identical' if ns['ok_b'] else 'DIFFERENT'}; caught up "
              f"{ns['lag_a_s']:.2f} s / {ns['lag_b_s']:.2f} s after the writers finished")
    return results


if __name__ == "__main__":
    main()
