"""Core engine benchmarks (issue 3): append, durable append, per-token overhead, replay.

Every figure is a ratio against a baseline measured in the same run on the same
machine (see ../shared/perf-baselines.md for why absolute times mean little here):

* append:  the public recorder API (envelopes made by our codec, hash-chained, queued,
           group-committed by the writer thread) vs raw ``sqlite3.executemany`` of the
           same rows into the same schema, 1000 rows per commit, WAL + NORMAL.
           Goal >= 0.8x.
* durable: the same with ``durable=True`` vs raw executemany with synchronous=FULL at the
           batch size our writer used. Goal >= 0.8x.
* token:   the cost of one ``run.stream(token)`` call as the recorded code sees it, vs a
           loop that does nothing with the token.
* replay:  one run's events out of a 1M-event store through ``store.replay`` vs a raw
           ``SELECT seq, raw`` of the same rows. Goal >= 0.7x.

Run: ``python -m benchmarks.bench_core`` (``--quick`` for a smaller store).
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import runlog
from runlog.store.sqlite import _INSERT_EVENT, SQLiteBackend

TOKEN_CHUNKS = ["Hel", "lo", " wor", "ld", ",", " how", " are", " you", "?", " I"]


def _median(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def record_tokens(path: Path, n: int, *, durable: bool = False, runs: int = 10,
                  method: str = "stream") -> float:
    """Seconds to record ``n`` stream events spread over ``runs`` interleaved runs.

    ``method`` is the Run method each event goes through: ``stream`` (output chunks) or
    ``token`` (model tokens, the larger ``{"token", "chunk"}`` envelope).
    """
    store = runlog.open(path, durable=durable)
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


def raw_rows(path: Path) -> list[tuple[Any, ...]]:
    """The rows our recorder wrote (minus seq), to replay through raw sqlite3."""
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT trace_id, run_id, kind, name, run_type, time, raw, digest FROM events "
        "WHERE kind = 'stream' ORDER BY seq").fetchall()
    conn.close()
    return rows


def raw_insert(path: Path, rows: list[tuple[Any, ...]], *, batch: int = 1000,
               synchronous: str = "NORMAL") -> float:
    """Seconds for raw executemany of ``rows`` into a fresh store of the same schema."""
    SQLiteBackend(path).close()  # same tables, index and triggers
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    gc.disable()
    t0 = time.perf_counter()
    seq = 0
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        numbered = []
        for r in chunk:
            seq += 1
            numbered.append((seq, *r))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_INSERT_EVENT, numbered)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    gc.enable()
    conn.close()
    return elapsed


def bench_append(tmp: Path, n: int, repeat: int, durable: bool) -> dict[str, float]:
    ours, raw = [], []
    for i in range(repeat):  # interleave ours and raw so drift hits both
        p = tmp / f"ours-{durable}-{i}.db"
        ours.append(record_tokens(p, n, durable=durable))
        rows = raw_rows(p)
        raw.append(raw_insert(tmp / f"raw-{durable}-{i}.db", rows,
                              synchronous="FULL" if durable else "NORMAL"))
    o, r = statistics.median(ours), statistics.median(raw)
    return {"ours_eps": n / o, "raw_eps": n / r, "ratio": r / o}


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
            run.stream(TOKEN_CHUNKS[i % 10])
        dt = time.perf_counter() - t0
        store.flush()
        return dt

    base = _median(nothing, 5)
    rec = _median(recording, 5)
    store.close()
    return {"loop_us": base / n * 1e6, "stream_us": rec / n * 1e6,
            "overhead_us": (rec - base) / n * 1e6}


def build_replay_store(path: Path, n: int, runs: int = 10) -> str:
    store = runlog.open(path)
    handles = [store.start_run(f"run-{i}", "chat_model") for i in range(runs)]
    for i in range(n):
        handles[i % runs].stream(TOKEN_CHUNKS[i % 10])
        if i % 100_000 == 0:
            store.flush()
    for h in handles:
        h.end()
    store.close()
    return handles[3].id


def bench_replay(path: Path, run_id: str, repeat: int) -> dict[str, float]:
    store = runlog.open(path, create=False)
    conn = sqlite3.connect(path)
    conn.text_factory = bytes

    def ours() -> float:
        t0 = time.perf_counter()
        count = sum(1 for e in store.replay(run_id) if e.raw)
        elapsed = time.perf_counter() - t0
        assert count > 0
        return elapsed

    def raw() -> float:
        t0 = time.perf_counter()
        rows = conn.execute("SELECT seq, raw FROM events WHERE trace_id = ? ORDER BY seq",
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    args = ap.parse_args(argv)
    n = 50_000 if args.quick else 200_000
    total = 100_000 if args.quick else 1_000_000
    repeat = 3 if args.quick else 5
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        a = bench_append(tmp, n, repeat, durable=False)
        print(f"append   ours {a['ours_eps']:>9,.0f} ev/s   raw executemany "
              f"{a['raw_eps']:>9,.0f} ev/s   ratio {a['ratio']:.2f}x (goal >= 0.8x)")
        results["append"] = a
        dn = n // 4
        b = bench_append(tmp, dn, repeat, durable=True)
        print(f"durable  ours {b['ours_eps']:>9,.0f} ev/s   raw FULL        "
              f"{b['raw_eps']:>9,.0f} ev/s   ratio {b['ratio']:.2f}x (goal >= 0.8x)")
        results["durable"] = b
        t = bench_token_overhead(n)
        print(f"token    stream() {t['stream_us']:.2f} us/token, empty loop "
              f"{t['loop_us']:.2f} us/token, overhead {t['overhead_us']:.2f} us/token")
        results["token"] = t
        path = tmp / "replay.db"
        run_id = build_replay_store(path, total)
        r = bench_replay(path, run_id, repeat)
        print(f"replay   {r['rows']:,} of {total:,} events: ours {r['ours_rows_s']:>10,.0f} "
              f"rows/s   raw SELECT {r['raw_rows_s']:>10,.0f} rows/s   ratio "
              f"{r['ratio']:.2f}x (goal >= 0.7x)")
        results["replay"] = r
    return results


if __name__ == "__main__":
    main()
