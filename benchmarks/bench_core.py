"""Core engine benchmarks (issues 3 and 18): append, durable append, bytes on disk,
per-token overhead, replay.

Every figure is a ratio against the **physical limit** measured in the same run on the
same machine (``../shared/perf-baselines.md``): raw ``sqlite3`` storing the same
information in a minimal table, never our own layout::

    CREATE TABLE events (seq INTEGER PRIMARY KEY, run_id TEXT, time INTEGER, payload TEXT)
    CREATE INDEX events_run_seq ON events (run_id, seq)

Each baseline row holds what the event adds: its run's id, its time and its data as
JSON (``{"token":"Hel","chunk":null}`` for ``run.token("Hel")``), bound as ``str`` (the
fastest binding), 1000 rows per ``executemany`` and commit, WAL. The rows are taken from
the store the recorder just wrote, so both sides store the very same events.

* append:  the public recorder API (``run.token``: envelope made by our codec,
           hash-chained, queued, group-committed by the writer thread) vs raw
           ``executemany`` of the same events, ``synchronous=NORMAL``. Goal >= 0.8x.
           For reference the same raw insert is also timed with our envelope bytes as
           the payload (what the limit is for a format that stores them).
* durable: the same with ``durable=True`` vs the raw insert with ``synchronous=FULL``.
           Goal >= 0.8x.
* parts:   the append's halves apart (``bench_append_parts``): the writer's
           ``Backend.append`` of the very batches it committed, without the recorder,
           vs the raw insert; the recorder's ``token()`` into a store that stores
           nothing. Both run Python under one GIL, so raw / (writer + recorder) bounds
           the append ratio from above: what says which half to work on.
* bytes:   bytes on disk per plain ``token()`` event (100k events in 10 runs, after a
           checkpoint, the store's size with only the runs' start events subtracted),
           ours vs the minimal table. Goal <= 60 B.
* token:   the cost of one ``run.token(token)`` call as the recorded code sees it, vs a
           loop that does nothing with the token.
* replay:  one run's events out of a 1M-event store (``--quick``: 100k) through
           ``store.replay`` vs a raw ``SELECT seq, payload`` of the same run's rows from
           the minimal table holding the same events. Goal >= 0.8x.
* size:    that store's bytes on disk vs ``gzip -1`` (zlib level 1) of its JSONL export.
           Goal <= 1.5x.

* layouts (``--layouts``): the same 100k ``token()`` events stored by raw ``executemany``
           in the row layouts a compact event format could use (the minimal table with
           an integer run key instead of the 36-character id; with a 16-byte binary
           chain digest per row; with a kind/channel code and the bare token as the
           payload; with times relative to the run's start and an 8-byte digest):
           bytes on disk and insert rate of each, to say what a format needs to reach
           the bytes goal (``docs/storage.md``, "Where the bytes and the time go").

Run: ``python -m benchmarks.bench_core`` (``--quick`` for smaller sizes).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import sqlite3
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

import runlog
from runlog.store.sqlite import LAYOUTS, SQLiteBackend

TOKEN_CHUNKS = ["Hel", "lo", " wor", "ld", ",", " how", " are", " you", "?", " I"]

MINIMAL_DDL = (
    "CREATE TABLE events (seq INTEGER PRIMARY KEY, run_id TEXT, time INTEGER, payload TEXT)",
    "CREATE INDEX events_run_seq ON events (run_id, seq)",
)
"""The physical limit's table: what an event adds, and one index to find a run's rows."""
_MINIMAL_INSERT = "INSERT INTO events (seq, run_id, time, payload) VALUES (?, ?, ?, ?)"


def _median(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


LAYOUT: str | None = None
"""The SQLite layout of the stores the benchmarks make (``--layout``; None: the default
of new stores)."""


def open_store(path: Path, *, durable: bool = False) -> runlog.Store:
    """A new SQLite store in the benchmarked layout."""
    return runlog.Store(SQLiteBackend(path, durable=durable, layout=LAYOUT))


def record_tokens(path: Path, n: int, *, durable: bool = False, runs: int = 10,
                  method: str = "stream") -> float:
    """Seconds to record ``n`` stream events spread over ``runs`` interleaved runs.

    ``method`` is the Run method each event goes through: ``stream`` (output chunks) or
    ``token`` (model tokens, the larger ``{"token", "chunk"}`` envelope).
    """
    store = open_store(path, durable=durable)
    handles = [store.start_run(f"model-{i}", "chat_model", tags=["bench"],
                               metadata={"ls_model_name": "fake"}) for i in range(runs)]
    store.flush()
    record = [getattr(h, method) for h in handles]
    gc.disable()
    t0 = time.perf_counter()
    for i in range(n):
        record[i % runs](TOKEN_CHUNKS[i % 10])
    store.flush()
    elapsed = time.perf_counter() - t0
    gc.enable()
    for h in handles:
        h.end()
    store.close()
    return elapsed


def stream_rows(path: Path) -> tuple[list[tuple[str, int, str]], list[tuple[str, int, str]]]:
    """The stream events our recorder wrote, as minimal-table rows (minus seq).

    Two versions of the same events: ``(run_id, time, data JSON)``, what each event
    adds, and ``(run_id, time, envelope)``, with our stored bytes as the payload.
    """
    store = runlog.open(path, create=False)
    compact: list[tuple[str, int, str]] = []
    envelope: list[tuple[str, int, str]] = []
    for e in store.events():
        if e.kind != "stream":
            continue
        env = orjson.loads(e.raw)
        compact.append((e.run_id, e.time_us, orjson.dumps(env["data"]).decode()))
        envelope.append((e.run_id, e.time_us, e.raw.decode()))
    store.close()
    return compact, envelope


def minimal_insert(path: Path, rows: list[tuple[str, int, str]], *, batch: int = 1000,
                   synchronous: str = "NORMAL") -> float:
    """Seconds for raw executemany of ``rows`` into a fresh minimal table (module doc)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    for ddl in MINIMAL_DDL:
        conn.execute(ddl)
    gc.disable()
    t0 = time.perf_counter()
    seq = 0
    for start in range(0, len(rows), batch):
        numbered = []
        for r in rows[start:start + batch]:
            seq += 1
            numbered.append((seq, *r))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_MINIMAL_INSERT, numbered)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    gc.enable()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return elapsed


def disk_bytes(path: Path) -> int:
    """A SQLite file's size after folding its WAL in (what it occupies at rest)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    extra = sum(os.path.getsize(p) for p in (f"{path}-wal", f"{path}-shm")
                if os.path.exists(p))
    return os.path.getsize(path) + extra


def bench_append(tmp: Path, n: int, repeat: int, durable: bool) -> dict[str, float]:
    ours, raw, raw_env = [], [], []
    sync = "FULL" if durable else "NORMAL"
    for i in range(repeat):  # interleave ours and raw so drift hits both
        p = tmp / f"ours-{durable}-{i}.db"
        ours.append(record_tokens(p, n, durable=durable, method="token"))
        compact, envelope = stream_rows(p)
        raw.append(minimal_insert(tmp / f"raw-{durable}-{i}.db", compact, synchronous=sync))
        raw_env.append(minimal_insert(tmp / f"rawenv-{durable}-{i}.db", envelope,
                                      synchronous=sync))
    o, r, re_ = statistics.median(ours), statistics.median(raw), statistics.median(raw_env)
    return {"ours_eps": n / o, "raw_eps": n / r, "ratio": r / o,
            "raw_envelope_eps": n / re_, "ratio_envelope": re_ / o}


class _Capturing(SQLiteBackend):
    """A store that also keeps every batch its writer appends (``bench_append_parts``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[list[Any]] = []

    def append(self, batch: Any, writer: Any, heartbeat_us: int | None) -> int:
        self.batches.append(list(batch))
        return super().append(batch, writer, heartbeat_us)


class _Discarding(SQLiteBackend):
    """A store whose appends store nothing: what recording costs without the writing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._count = 0

    def append(self, batch: Any, writer: Any, heartbeat_us: int | None) -> int:
        if any(p.kind != "stream" for p in batch):
            return super().append(batch, writer, heartbeat_us)
        self._count += len(batch)
        return self._count


def bench_append_parts(tmp: Path, n: int, repeat: int) -> dict[str, float]:
    """The append's two halves apart, each vs the same raw insert (same run).

    *writer*: ``Backend.append`` of the batches the recorder's writer committed, replayed
    into a fresh store by the benchmark (no recorder, no queue, no second thread).
    *recorder*: the same ``token()`` calls into a store whose appends of stream events
    store nothing (queue, writer thread's dequeuing, envelope, digest, checks). Both hold
    the GIL for their Python steps, so the end-to-end ratio is at best raw / (both).
    """
    from runlog.store.base import WriterInfo

    source = _Capturing(tmp / "parts-source.db", layout=LAYOUT)
    store = runlog.Store(source)
    handles = [store.start_run(f"model-{i}", "chat_model", tags=["bench"],
                               metadata={"ls_model_name": "fake"}) for i in range(10)]
    store.flush()
    for i in range(n):
        handles[i % 10].token(TOKEN_CHUNKS[i % 10])
    store.flush()
    batches = source.batches
    store.close()
    starts = [p for b in batches for p in b if p.kind == "start"]
    streams = [p for b in batches for p in b if p.kind == "stream"]
    compact, _ = stream_rows(tmp / "parts-source.db")

    def writer_alone(i: int) -> float:
        backend = SQLiteBackend(tmp / f"parts-writer-{i}.db", layout=LAYOUT)
        info = WriterInfo(writer_id="bench")
        backend.append(starts, info, None)
        gc.disable()
        t0 = time.perf_counter()
        for at in range(0, len(streams), 1000):
            backend.append(streams[at:at + 1000], info, None)
        elapsed = time.perf_counter() - t0
        gc.enable()
        backend.close()
        return elapsed

    def recorder_alone(i: int) -> float:
        discard = runlog.Store(_Discarding(tmp / f"parts-discard-{i}.db", layout=LAYOUT))
        runs = [discard.start_run(f"model-{k}", "chat_model", tags=["bench"],
                                  metadata={"ls_model_name": "fake"}) for k in range(10)]
        discard.flush()
        record = [h.token for h in runs]
        gc.disable()
        t0 = time.perf_counter()
        for k in range(n):
            record[k % 10](TOKEN_CHUNKS[k % 10])
        discard.flush()
        elapsed = time.perf_counter() - t0
        gc.enable()
        discard.close()
        return elapsed

    w, r, raw = [], [], []
    for i in range(repeat):
        w.append(writer_alone(i))
        r.append(recorder_alone(i))
        raw.append(minimal_insert(tmp / f"parts-raw-{i}.db", compact))
    wm, rm, rawm = statistics.median(w), statistics.median(r), statistics.median(raw)
    return {"writer_us": wm / n * 1e6, "recorder_us": rm / n * 1e6, "raw_us": rawm / n * 1e6,
            "writer_ratio": rawm / wm, "bound_ratio": rawm / (wm + rm)}


def bench_bytes(tmp: Path, n: int) -> dict[str, float]:
    """Bytes on disk per plain ``token()`` event, ours vs the minimal table."""
    empty, full = tmp / "bytes-empty.db", tmp / "bytes.db"
    record_tokens(empty, 0, method="token")
    record_tokens(full, n, method="token")
    ours = (disk_bytes(full) - disk_bytes(empty)) / n
    compact, _ = stream_rows(full)
    raw_path = tmp / "bytes-raw.db"
    minimal_insert(raw_path, compact)
    raw = disk_bytes(raw_path) / n
    return {"events": n, "ours_bytes": ours, "raw_bytes": raw, "ratio": ours / raw}


ROW_LAYOUTS: dict[str, str] = {
    "minimal, text run id": "run_id TEXT, time INTEGER, payload TEXT",
    "integer run key": "run INTEGER, time INTEGER, payload TEXT",
    "+ 16-byte digest": "run INTEGER, time INTEGER, payload TEXT, digest BLOB",
    "+ channel code, bare token": "run INTEGER, time INTEGER, code INTEGER, payload TEXT, "
                                  "digest BLOB",
    "+ time since run start, 8-byte digest": "run INTEGER, time INTEGER, code INTEGER, "
                                             "payload TEXT, digest BLOB",
}
"""Candidate row layouts, each with one index on (its run column, seq)."""


def _layout_rows(name: str, compact: list[tuple[str, int, str]]) -> list[tuple[Any, ...]]:
    keys: dict[str, int] = {}
    starts: dict[str, int] = {}
    chains: dict[str, bytes] = {}
    out: list[tuple[Any, ...]] = []
    for run_id, time_us, data in compact:
        key = keys.setdefault(run_id, len(keys) + 1)
        start = starts.setdefault(run_id, time_us)
        if name.startswith("minimal"):
            out.append((run_id, time_us, data))
            continue
        if name == "integer run key":
            out.append((key, time_us, data))
            continue
        digest = hashlib.blake2b(chains.get(run_id, b"") + data.encode(),
                                 digest_size=16).digest()
        chains[run_id] = digest
        if name == "+ 16-byte digest":
            out.append((key, time_us, data, digest))
            continue
        token = orjson.dumps(orjson.loads(data)["token"]).decode()
        if name == "+ channel code, bare token":
            out.append((key, time_us, 1, token, digest))
        else:
            out.append((key, time_us - start, 1, token, digest[:8]))
    return out


def bench_layouts(tmp: Path, n: int) -> dict[str, dict[str, float]]:
    """Bytes on disk and insert rate of each candidate layout (module docstring)."""
    source = tmp / "layouts-source.db"
    record_tokens(source, n, method="token")
    compact, _ = stream_rows(source)
    out: dict[str, dict[str, float]] = {}
    for i, (name, columns) in enumerate(ROW_LAYOUTS.items()):
        rows = _layout_rows(name, compact)
        path = tmp / f"layout-{i}.db"
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"CREATE TABLE events (seq INTEGER PRIMARY KEY, {columns})")
        conn.execute(f"CREATE INDEX events_run_seq ON events ({columns.split()[0]}, seq)")
        sql = f"INSERT INTO events VALUES ({', '.join('?' * (len(rows[0]) + 1))})"
        gc.disable()
        t0 = time.perf_counter()
        for start in range(0, len(rows), 1000):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, [(start + j + 1, *r)
                                   for j, r in enumerate(rows[start:start + 1000])])
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        gc.enable()
        conn.close()
        out[name] = {"bytes": disk_bytes(path) / len(rows), "eps": len(rows) / elapsed}
        print(f"layout   {name:<40} {out[name]['bytes']:6.1f} B/event "
              f"{out[name]['eps']:>9,.0f} ev/s", flush=True)
    return out


def bench_token_overhead(n: int) -> dict[str, float]:
    store = runlog.open(":memory:")
    run = store.start_run("m", "chat_model")
    sink: list[str] = []

    def nothing() -> float:
        t0 = time.perf_counter()
        for i in range(n):
            sink.append(TOKEN_CHUNKS[i % 10])
        sink.clear()
        return time.perf_counter() - t0

    def recording() -> float:
        t0 = time.perf_counter()
        for i in range(n):
            run.token(TOKEN_CHUNKS[i % 10])
        dt = time.perf_counter() - t0
        store.flush()
        return dt

    base = _median(nothing, 5)
    rec = _median(recording, 5)
    store.close()
    return {"loop_us": base / n * 1e6, "token_us": rec / n * 1e6,
            "overhead_us": (rec - base) / n * 1e6}


def build_replay_store(path: Path, n: int, runs: int = 10) -> str:
    store = open_store(path)
    handles = [store.start_run(f"run-{i}", "chat_model") for i in range(runs)]
    for i in range(n):
        handles[i % runs].token(TOKEN_CHUNKS[i % 10])
        if i % 100_000 == 0:
            store.flush()
    for h in handles:
        h.end()
    store.close()
    return handles[3].id


def bench_replay(path: Path, raw_path: Path, run_id: str, repeat: int) -> dict[str, float]:
    store = runlog.open(path, create=False)
    conn = sqlite3.connect(raw_path)
    conn.text_factory = bytes

    def ours() -> float:
        t0 = time.perf_counter()
        count = sum(1 for e in store.replay(run_id) if e.raw)
        elapsed = time.perf_counter() - t0
        assert count > 0
        return elapsed

    def raw() -> float:
        t0 = time.perf_counter()
        rows = conn.execute("SELECT seq, payload FROM events WHERE run_id = ? ORDER BY seq",
                            (run_id,)).fetchall()
        count = sum(1 for r in rows if r[1])
        elapsed = time.perf_counter() - t0
        assert count > 0
        return elapsed

    o, r = [], []
    for _ in range(repeat):
        o.append(ours())
        r.append(raw())
    rows = sum(1 for _ in store.replay(run_id))
    store.close()
    conn.close()
    om, rm = statistics.median(o), statistics.median(r)
    return {"rows": rows, "ours_rows_s": rows / om, "raw_rows_s": rows / rm, "ratio": rm / om}


def bench_size(path: Path, tmp: Path) -> dict[str, float]:
    """The store on disk vs ``gzip -1`` of its JSONL export (same events)."""
    from runlog.exporters.jsonl import export_jsonl

    out = tmp / "export.jsonl"
    store = runlog.open(path, create=False)
    export_jsonl(store, out)
    store.close()
    zipped = len(zlib.compress(out.read_bytes(), 1))
    ours = disk_bytes(path)
    return {"store_bytes": ours, "jsonl_bytes": out.stat().st_size, "gzip1_bytes": zipped,
            "ratio": ours / zipped, "tables": table_bytes(path)}


def table_bytes(path: Path) -> dict[str, dict[str, int]]:
    """Where a store's bytes are: each table's and index's pages, free bytes in them and
    record payload (SQLite's ``dbstat``), to say what a row layout costs."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name, sum(pgsize), sum(unused), sum(payload) FROM dbstat "
                            "GROUP BY name ORDER BY sum(pgsize) DESC").fetchall()
    except sqlite3.OperationalError:  # a SQLite built without dbstat
        rows = []
    finally:
        conn.close()
    return {name: {"bytes": size, "unused": unused, "payload": payload}
            for name, size, unused, payload in rows}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    ap.add_argument("--layouts", action="store_true",
                    help="only the bytes and insert rate of candidate row layouts")
    ap.add_argument("--layout", choices=LAYOUTS, default=None,
                    help="the SQLite layout of our stores (default: that of new stores)")
    args = ap.parse_args(argv)
    global LAYOUT
    LAYOUT = args.layout
    if args.layouts:
        with tempfile.TemporaryDirectory() as d:
            return {"layouts": bench_layouts(Path(d), 100_000)}
    n = 50_000 if args.quick else 200_000
    total = 100_000 if args.quick else 1_000_000
    repeat = 3 if args.quick else 5
    results: dict[str, Any] = {}
    print(f"layout of our stores: {LAYOUT or 'default'}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        a = bench_append(tmp, n, repeat, durable=False)
        print(f"append   ours {a['ours_eps']:>9,.0f} ev/s   raw minimal table "
              f"{a['raw_eps']:>9,.0f} ev/s   ratio {a['ratio']:.2f}x (goal >= 0.8x); "
              f"raw with our envelopes {a['raw_envelope_eps']:,.0f} ev/s "
              f"({a['ratio_envelope']:.2f}x)", flush=True)
        results["append"] = a
        b = bench_append(tmp, n // 4, repeat, durable=True)
        print(f"durable  ours {b['ours_eps']:>9,.0f} ev/s   raw FULL          "
              f"{b['raw_eps']:>9,.0f} ev/s   ratio {b['ratio']:.2f}x (goal >= 0.8x); "
              f"raw FULL with our envelopes {b['raw_envelope_eps']:,.0f} ev/s "
              f"({b['ratio_envelope']:.2f}x)", flush=True)
        results["durable"] = b
        c = bench_append_parts(tmp, n, repeat)
        print(f"parts    raw {c['raw_us']:.2f} us/event; writer alone (Backend.append of the "
              f"same batches) {c['writer_us']:.2f} us/event = {c['writer_ratio']:.2f}x raw; "
              f"recorder alone (nothing stored) {c['recorder_us']:.2f} us/event; both under "
              f"one GIL: at best {c['bound_ratio']:.2f}x", flush=True)
        results["append_parts"] = c
        s = bench_bytes(tmp, 100_000)
        print(f"bytes    {s['events']:,} token() events: ours {s['ours_bytes']:.0f} B/event "
              f"on disk, minimal table {s['raw_bytes']:.0f} B/event, ratio "
              f"{s['ratio']:.2f}x (goal <= 60 B)", flush=True)
        results["bytes"] = s
        t = bench_token_overhead(n)
        print(f"token    token() {t['token_us']:.2f} us/token, empty loop "
              f"{t['loop_us']:.2f} us/token, overhead {t['overhead_us']:.2f} us/token",
              flush=True)
        results["token"] = t
        path = tmp / "replay.db"
        run_id = build_replay_store(path, total)
        raw_path = tmp / "replay-raw.db"
        minimal_insert(raw_path, stream_rows(path)[0])
        r = bench_replay(path, raw_path, run_id, repeat)
        print(f"replay   {r['rows']:,} of {total:,} events: ours {r['ours_rows_s']:>10,.0f} "
              f"rows/s   raw SELECT {r['raw_rows_s']:>10,.0f} rows/s   ratio "
              f"{r['ratio']:.2f}x (goal >= 0.8x)", flush=True)
        results["replay"] = r
        z = bench_size(path, tmp)
        print(f"size     {total:,} events: store {z['store_bytes'] / 1e6:.1f} MB, JSONL "
              f"{z['jsonl_bytes'] / 1e6:.1f} MB, gzip -1 of it {z['gzip1_bytes'] / 1e6:.1f} MB, "
              f"ratio {z['ratio']:.2f}x (goal <= 1.5x)", flush=True)
        for name, t in list(z["tables"].items())[:3]:
            print(f"         {name:<18} {t['bytes'] / total:5.1f} B/event on disk, "
                  f"{t['payload'] / total:5.1f} B/event payload, "
                  f"{t['unused'] / total:4.1f} B/event unused", flush=True)
        results["size"] = z
    return results


if __name__ == "__main__":
    main()
