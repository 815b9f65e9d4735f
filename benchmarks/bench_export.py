"""Export and import benchmarks (issue 7), as same-run ratios.

* export: ``runlog.export(store, "jsonl", path)`` of every event of a 1M-event store
          (``--quick``: 100k) vs a raw ``SELECT seq, raw, digest FROM events ORDER BY seq``
          written to a file line by line in the same run, each to a new file (see
          :func:`fresh`), medians of 5 interleaved runs. Goal >= 0.7x.
* rss:    peak RSS of a fresh process doing the same export (``VmHWM``, the peak over
          the whole run, not a sample). Goal < 200 MB. The OTLP and Chrome exports and
          the import are measured the same way for information.
* import: ``runlog.import_jsonl`` of that file into a fresh SQLite store vs the core
          append rate: as many events recorded through the public recorder at full
          speed (tokens into open runs, group commit; what ``bench_core`` calls
          "append"). Goal >= 0.8x. Both are timed with the garbage collector off
          (``bench_core``'s convention). Recording the very same traces (each root's
          end waits for its commit) and a raw ``executemany`` of the rows are shown for
          context.

The store holds traces of 100 events: a chain root, a retriever, a chat model
streaming 95 tokens, the way a RAG pipeline records.

Run: ``python -m benchmarks.bench_export`` (``--quick`` for 100k events).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import runlog
from benchmarks.bench_core import TOKEN_CHUNKS, record_tokens
from runlog.store.sqlite import _INSERT_EVENT, SQLiteBackend

# The raw baselines here read and write the wide layout's columns (seq, raw, ...); new
# stores are compact by default (docs/storage.md), so this benchmark asks for wide ones
# (also in the processes it starts).
os.environ.setdefault("RUNLOG_SQLITE_LAYOUT", "wide")

TOKENS = TOKEN_CHUNKS
FORMATS = ("jsonl", "otlp", "chrome")
PER_TRACE = 100  # 1 chain start + retriever start/end + model start + 95 tokens + ends


def record_traces(store: runlog.Store, n_events: int) -> int:
    """Record ``n_events`` events as RAG-like traces of ``PER_TRACE`` events."""
    written = 0
    while written + PER_TRACE <= n_events:
        with store.run("rag", "chain", inputs={"question": "what is runlog?"},
                       tags=["bench"], metadata={"user": "bench"}) as root:
            with root.child("Docs", "retriever", inputs={"query": "runlog"}) as r:
                r.end(outputs={"documents": ["runlog stores events", "append-only"]})
            with root.child("model", "chat_model", inputs={"messages": ["hi"]},
                            metadata={"ls_model_name": "fake"}) as m:
                for i in range(PER_TRACE - 5):
                    m.token(TOKENS[i % 10])
                m.end(outputs={"content": "Hello", "usage": {"output_tokens": 95}})
            root.end(outputs={"answer": "Hello"})
        written += PER_TRACE
    store.flush()
    return written


def timed_record(path: Path, n_events: int) -> float:
    store = runlog.open(path)
    gc.disable()
    t0 = time.perf_counter()
    record_traces(store, n_events)
    elapsed = time.perf_counter() - t0
    gc.enable()
    store.close()
    return elapsed


def timed_stream(path: Path, n_events: int, runs: int = 10) -> float:
    """The core append rate: tokens streamed into open runs, group-committed.

    What ``bench_core`` measures as "append" (the recorder at full speed, no wait for a
    commit until the final flush), with model tokens as the events.
    """
    return record_tokens(path, n_events, runs=runs, method="token")


def raw_select_to_file(db: Path, out: Path, fetch: int = SQLiteBackend.bulk_page_rows, *,
                       earlier: bool = False) -> float:
    """The baseline: every stored payload (and its digest) to a file, in seq order.

    It does what the export does around its own work: as many rows per fetch as the
    export reads per page, each fetch's lines written straight to the file as one
    chunk (no copy through a file buffer). Both settings make this loop faster on the
    benchmark's VM (the fetch size alone ~1.4x), so the export is held to the faster
    baseline. ``earlier=True`` is the baseline used before: 5000 rows per fetch,
    written through a 1 MB buffer.
    """
    conn = sqlite3.connect(db)
    conn.text_factory = bytes
    if earlier:
        fetch = 5000
    t0 = time.perf_counter()
    with out.open("wb", buffering=1 << 20 if earlier else 0) as fp:
        cur = conn.execute("SELECT seq, raw, digest FROM events ORDER BY seq")
        while True:
            rows = cur.fetchmany(fetch)
            if not rows:
                break
            chunk = b"".join([r[1] + b"\n" for r in rows])
            done = fp.write(chunk)
            while done < len(chunk):  # a short write (the export continues them too)
                done += fp.write(memoryview(chunk)[done:])
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def fresh(path: Path) -> Path:
    """Remove ``path`` and flush the page cache to disk, outside any timing.

    Every timed export writes a new file, with nothing of an earlier run still being
    written back. Overwriting the earlier run's file is not the same work for both
    sides on ext4 (``auto_da_alloc``): the export renames its ``.partial`` over the old
    file, which flushes the whole new file at the rename (0.6-1.1 s for 400 MB on the
    benchmark's VM), while the baseline's truncate-and-write flushes at close (0.15 s).
    """
    path.unlink(missing_ok=True)
    os.sync()
    return path


def our_export(db: Path, out: Path, fmt: str = "jsonl") -> float:
    store = runlog.open(db, create=False)
    t0 = time.perf_counter()
    runlog.export(store, fmt, out)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t0
    store.close()
    return elapsed


def our_import(src: Path, db: Path) -> float:
    """Timed with the garbage collector off, as the core append it is compared with is
    (``bench_core.record_tokens``) and the recording of the same traces: both sides
    under the same conditions (with it on, the import alone takes ~8% longer)."""
    store = runlog.open(db)
    gc.disable()
    t0 = time.perf_counter()
    runlog.import_jsonl(store, src)
    elapsed = time.perf_counter() - t0
    gc.enable()
    store.close()
    return elapsed


def raw_insert(db_from: Path, db: Path) -> float:
    """executemany of the same rows (read beforehand) in batches of 2000."""
    conn = sqlite3.connect(db_from)
    rows = conn.execute("SELECT seq, trace_id, run_id, kind, name, run_type, time, raw, digest "
                        "FROM events ORDER BY seq").fetchall()
    conn.close()
    SQLiteBackend(db).close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")
    t0 = time.perf_counter()
    for start in range(0, len(rows), 2000):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_INSERT_EVENT, rows[start:start + 2000])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


_PRINT_HWM = (
    # VmHWM is this process's own peak RSS. ru_maxrss is not: on Linux it starts from the
    # parent's peak when the child was forked (vfork+exec), which is this benchmark.
    "import resource\n"
    "try:\n"
    "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
    "    print(int(hwm[0].split()[1]))\n"
    "except (OSError, IndexError):\n"
    "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
)


def peak_rss_mb(db: Path, out: Path, fmt: str) -> float:
    """Peak RSS of a fresh interpreter exporting ``db`` (ru_maxrss covers the whole run)."""
    code = (
        "import sys, runlog\n"
        "s = runlog.open(sys.argv[1], create=False)\n"
        "runlog.export(s, sys.argv[3], sys.argv[2])\n"
        "s.close()\n"
        + _PRINT_HWM
    )
    res = subprocess.run([sys.executable, "-c", code, str(db), str(out), fmt],
                         capture_output=True, text=True, check=True)
    return int(res.stdout.strip()) / 1024


def peak_rss_import_mb(src: Path, db: Path) -> float:
    """Peak RSS of a fresh interpreter importing ``src`` into a new store."""
    code = (
        "import sys, runlog\n"
        "s = runlog.open(sys.argv[2])\n"
        "runlog.import_jsonl(s, sys.argv[1])\n"
        "s.close()\n"
        + _PRINT_HWM
    )
    res = subprocess.run([sys.executable, "-c", code, str(src), str(db)],
                         capture_output=True, text=True, check=True)
    return int(res.stdout.strip()) / 1024


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100k events instead of 1M")
    args = ap.parse_args(argv)
    n = 100_000 if args.quick else 1_000_000
    repeat = 5 if args.quick else 3
    results: dict[str, Any] = {"events": n}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        db = tmp / "src.db"
        record_s = timed_record(db, n)
        size = db.stat().st_size
        print(f"store    {n:,} events in traces of {PER_TRACE}, {size / 1e6:.0f} MB "
              f"(recorded in {record_s:.1f} s)")

        ours, raw, raw_big = [], [], []
        for i in range(5):  # interleaved, alternating who goes first, so drift hits both
            if i % 2:
                raw.append(raw_select_to_file(db, fresh(tmp / "raw.txt")))
                raw_big.append(raw_select_to_file(db, fresh(tmp / "raw.txt"), earlier=True))
            ours.append(our_export(db, fresh(tmp / "export.jsonl")))
            if not i % 2:
                raw_big.append(raw_select_to_file(db, fresh(tmp / "raw.txt"), earlier=True))
                raw.append(raw_select_to_file(db, fresh(tmp / "raw.txt")))
        o, r, rb = statistics.median(ours), statistics.median(raw), statistics.median(raw_big)
        results["export"] = {"ours_eps": n / o, "raw_eps": n / r, "ratio": r / o,
                             "raw_5000_eps": n / rb, "ratio_raw_5000": rb / o,
                             "file_mb": (tmp / "export.jsonl").stat().st_size / 1e6}
        print(f"export   jsonl {n / o:>10,.0f} ev/s   raw SELECT to file {n / r:>10,.0f} ev/s"
              f"   ratio {r / o:.2f}x (goal >= 0.7x; medians of 5, interleaved)")
        print(f"         the earlier baseline (5000 rows per fetch, through a file buffer) "
              f"{n / rb:,.0f} ev/s ({rb / o:.2f}x)")

        rss = {fmt: peak_rss_mb(db, tmp / f"rss.{fmt}", fmt) for fmt in FORMATS}
        results["rss_mb"] = rss
        print("rss      peak " + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items())
              + " (goal < 200 MB)")
        for fmt in FORMATS[1:]:
            t = our_export(db, tmp / f"export.{fmt}.json", fmt)
            results[f"export_{fmt}_eps"] = n / t
            print(f"export   {fmt:<6} {n / t:>10,.0f} ev/s (for information)")

        imp, rec, stream, rawi = [], [], [], []
        for i in range(repeat):
            imp.append(our_import(tmp / "export.jsonl", tmp / f"imp-{i}.db"))
            stream.append(timed_stream(tmp / f"stream-{i}.db", n))
            rec.append(timed_record(tmp / f"rec-{i}.db", n))
            rawi.append(raw_insert(db, tmp / f"raw-{i}.db"))
            for p in tmp.glob(f"*-{i}.db*"):
                os.unlink(p)
        rss["import"] = peak_rss_import_mb(tmp / "export.jsonl", tmp / "rss-import.db")
        print(f"rss      peak import {rss['import']:.0f} MB")
        im, sm = statistics.median(imp), statistics.median(stream)
        rm, ri = statistics.median(rec), statistics.median(rawi)
        results["import"] = {"ours_eps": n / im, "core_eps": n / sm, "traces_eps": n / rm,
                             "raw_eps": n / ri, "ratio": sm / im, "ratio_traces": rm / im,
                             "ratio_raw": ri / im}
        print(f"import   jsonl {n / im:>10,.0f} ev/s   core append (recorder streaming) "
              f"{n / sm:>10,.0f} ev/s   ratio {sm / im:.2f}x (goal >= 0.8x)")
        print(f"         recording the same traces {n / rm:,.0f} ev/s ({rm / im:.2f}x); "
              f"raw executemany of the rows {n / ri:,.0f} ev/s ({ri / im:.2f}x)")
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
