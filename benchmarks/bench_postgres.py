"""PostgreSQL backend benchmarks (issue 8): concurrent append throughput, tail latency.

Every figure is taken in the same run against a baseline on the same server:

* append:  P writer processes (1, 4, 16) each record runs through the public API
           (codec, hash chain, group-commit writer, one-statement append with the
           gap-free seq counter, runs projection, heartbeat, NOTIFY) vs P processes
           doing plain ``COPY`` (and, separately, ``executemany``) of the same
           envelope bytes, in batches of the same size, into a minimal table
           (``seq bigserial PRIMARY KEY, run_id, time, payload``, one index on
           ``(run_id, seq)``): no ordering guarantee, no projection, no digest.
* layouts: one process records the same token events through the API into a wide
           and a compact store, and the same envelopes go by COPY into the minimal
           table: events/s, and bytes per event (``pg_total_relation_size`` of the
           tables with their indexes and TOAST, after VACUUM). ``--layouts`` runs
           only this part.
* insert:  one process appending pre-built batches of 1, 10 and 500 events through
           ``PostgresBackend.append`` with ``insert="unnest"`` (one statement) vs
           ``insert="copy"`` (counter, COPY, projection: three round trips), interleaved;
           ``insert="auto"`` (the default) switches to COPY at ``COPY_FROM`` events.
* tail:    a writer process records one token every 5 ms; this process follows with
           ``store.tail`` (LISTEN/NOTIFY wake-ups). Latency = time the tailer yields
           the event minus the event's recorded time (same host clock). Goal p99 < 10 ms.

Run: ``python -m benchmarks.bench_postgres`` (``--quick`` for smaller sizes). The
server is ``$RUNLOG_BENCH_POSTGRES_URL`` (default: the local CI server); everything
happens in a scratch schema that is dropped at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
import uuid
from typing import Any

import psycopg

import runlog
from runlog.events import now_micros
from runlog.store.base import Pending, WriterInfo
from runlog.store.postgres import PostgresBackend, parse_url

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TOKENS = ["Hel", "lo", " wor", "ld", ",", " how", " are", " you", "?", " I"]
BATCH = 500


def _libpq(url: str) -> str:
    return parse_url(url)[0].replace("postgresql+psycopg://", "postgresql://", 1)


def _schema_url(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


# ---------------------------------------------------------------- append workers

def _api_writer(url: str, events: int, start: Any, done: Any) -> None:
    """Record ``events`` stream events over runs of 100 tokens, then flush."""
    store = runlog.open(url)
    with store.run("warm-up") as run:
        run.token("x")
    done.put("ready")
    start.wait()
    t0 = time.perf_counter()
    written = 0
    while written < events:
        with store.run("model", "chat_model", tags=["bench"],
                       metadata={"ls_model_name": "fake"}) as run:
            for i in range(98):
                run.token(TOKENS[i % 10])
        written += 100
    store.flush()
    done.put((t0, time.perf_counter(), written))
    store.close()


def _sample_rows(url: str, n: int) -> list[Pending]:
    """``n`` realistic write records (envelopes from the recorder) to replay as rows."""
    with runlog.open(":memory:") as mem:
        while mem.last_seq() < n:
            with mem.run("model", "chat_model", tags=["bench"],
                         metadata={"ls_model_name": "fake"}) as run:
                for i in range(98):
                    run.token(TOKENS[i % 10])
        from runlog.store.base import pending_from_raw

        out: list[Pending] = []
        prev: dict[str, bytes] = {}
        counts: dict[str, int] = {}
        for e in mem.events(until=n):
            counts[e.run_id] = counts.get(e.run_id, 0) + 1
            p = pending_from_raw(e.raw, prev.get(e.run_id), counts[e.run_id])
            prev[e.run_id] = p.digest
            out.append(p)
    return out


PLAIN_DDL = ("CREATE TABLE {schema}.events_plain (seq bigserial PRIMARY KEY, "
             "run_id text NOT NULL, time bigint NOT NULL, payload text NOT NULL)",
             "CREATE INDEX ON {schema}.events_plain (run_id, seq)")
"""The physical limit's table: the envelope bytes, keyed as a reader needs them."""


def _plain_writer(url: str, events: int, method: str, start: Any, done: Any) -> None:
    """The baseline: pre-built rows into ``events_plain`` (bigserial seq), no guarantees."""
    rows = [(p.run_id, p.time_us, p.raw.decode()) for p in _sample_rows(url, BATCH)]
    schema = parse_url(url)[1]
    conn = psycopg.connect(_libpq(url), options=f"-c search_path={schema} "
                           "-c synchronous_commit=off", autocommit=False)
    done.put("ready")
    start.wait()
    t0 = time.perf_counter()
    written = 0
    cols = "run_id, time, payload"
    while written < events:
        with conn.cursor() as cur:
            if method == "copy":
                with cur.copy(f"COPY events_plain ({cols}) FROM STDIN") as cp:
                    for r in rows:
                        cp.write_row(r)
            else:
                cur.executemany(f"INSERT INTO events_plain ({cols}) VALUES (%s, %s, %s)",
                                rows)
        conn.commit()
        written += len(rows)
    done.put((t0, time.perf_counter(), written))
    conn.close()


def _run_procs(target: Any, args: tuple[Any, ...], procs: int) -> float:
    """Start ``procs`` workers together; total events per second, first start to last end."""
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    done = ctx.Queue()
    ps = [ctx.Process(target=target, args=(*args, start, done)) for _ in range(procs)]
    for p in ps:
        p.start()
    for _ in ps:  # every worker has connected and warmed up
        assert done.get(timeout=600) == "ready"
    start.set()
    results = [done.get(timeout=600) for _ in ps]
    for p in ps:
        p.join()
    t0 = min(r[0] for r in results)
    t1 = max(r[1] for r in results)
    return float(sum(r[2] for r in results) / (t1 - t0))


# ---------------------------------------------------------------- insert methods

def _insert_methods(url: str, size: int, events: int, repeat: int) -> tuple[float, float]:
    """events/s of ``insert="unnest"`` and ``insert="copy"`` at one batch size, measured
    interleaved (A, B, A, B, ...) so machine load hits both alike; medians."""
    backends = {m: PostgresBackend(url, insert=m) for m in ("unnest", "copy")}
    sample = _sample_rows(url, 2 * size + 2)
    writer = WriterInfo(writer_id=uuid.uuid4().hex)
    # The runs once, then batches of their later events again and again (a second start
    # of a run is refused; a repeated end finds the run ended and changes nothing).
    backends["unnest"].append(sample, writer, now_micros())
    rows = [p for p in sample if p.kind != "start"][:size]
    rates: dict[str, list[float]] = {"unnest": [], "copy": []}
    batches = max(events // size, 5)
    for _ in range(repeat):
        for method, backend in backends.items():
            t0 = time.perf_counter()
            for _ in range(batches):
                # the same envelopes again: the projection ignores repeated starts/ends
                backend.append(rows, writer, now_micros())
            rates[method].append(batches * size / (time.perf_counter() - t0))
    for backend in backends.values():
        backend.close()
    return statistics.median(rates["unnest"]), statistics.median(rates["copy"])


# ---------------------------------------------------------------- tail latency

def _tail_writer(url: str, n: int, interval: float, ready: Any) -> None:
    store = runlog.open(url)
    store.flush()
    ready.wait()
    with store.run("model", "chat_model") as run:
        for i in range(n):
            run.token(TOKENS[i % 10])
            time.sleep(interval)
    store.close()


def _notify_sender(url: str, n: int, interval: float, ready: Any) -> None:
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        ready.wait()
        for _ in range(n):
            conn.execute("SELECT pg_notify('runlog_bench_floor', %s)", (str(time.time()),))
            time.sleep(interval)


def _notify_floor(url: str, n: int) -> tuple[float, float, float]:
    """The baseline: bare NOTIFY -> LISTEN latency between two processes, same load."""
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    lat: list[float] = []
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute("LISTEN runlog_bench_floor")
        proc = ctx.Process(target=_notify_sender, args=(url, n, 0.005, ready))
        proc.start()
        ready.set()
        for note in conn.notifies(timeout=60, stop_after=n):
            lat.append((time.time() - float(note.payload)) * 1000)
        proc.join()
    return _percentiles(lat)


def _percentiles(lat: list[float]) -> tuple[float, float, float]:
    lat = sorted(lat)
    return (statistics.median(lat), lat[max(int(len(lat) * 0.99) - 1, 0)], lat[-1])


def _tail_latency(url: str, n: int) -> tuple[float, float, float]:
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    store = runlog.open(url)
    after = store.last_seq()
    proc = ctx.Process(target=_tail_writer, args=(url, n, 0.005, ready))
    proc.start()
    tail = store.tail(after=after, idle_timeout=30)
    lat: list[float] = []
    ready.set()
    for item in tail:
        if isinstance(item, runlog.Event) and item.kind == "stream":
            lat.append((now_micros() - item.time_us) / 1000)
            if len(lat) >= n:
                break
    tail.stop()
    proc.join()
    store.close()
    return _percentiles(lat)


# ---------------------------------------------------------------- layouts

def _bytes(url: str, tables: tuple[str, ...]) -> int:
    schema = parse_url(url)[1]
    with psycopg.connect(_libpq(url), autocommit=True,
                         options=f"-c search_path={schema}") as c:
        total = 0
        for t in tables:
            c.execute(f"VACUUM ANALYZE {t}")
            row = c.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()
            total += int(row[0]) if row else 0
        return total


def _layouts(fresh: Any, events: int) -> dict[str, Any]:
    """events/s and bytes/event of the API into each layout vs COPY into the minimal
    table, all in one process, the same token events (runs of 100)."""
    out: dict[str, Any] = {}
    for lay in ("wide", "compact"):
        u = fresh(lay)
        rate = _run_procs(_api_writer, (u, events), 1)
        with runlog.open(u) as s:
            n = s.last_seq()
        out[lay] = {"rate": rate, "events_bytes": _bytes(u, ("events",)) / n,
                    "all_bytes": _bytes(u, ("events", "runs")) / n}
    u = fresh("compact")
    for method in ("copy", "executemany"):
        out[method] = {"rate": _run_procs(_plain_writer, (u, events, method), 1)}
    with psycopg.connect(_libpq(u)) as c:
        row = c.execute(f"SELECT count(*) FROM {parse_url(u)[1]}.events_plain"
                        ).fetchone()
    out["copy"]["events_bytes"] = _bytes(u, ("events_plain",)) / (row[0] if row else 1)
    return out


def _print_layouts(r: dict[str, Any]) -> None:
    print("\nlayouts, 1 process, token events (runs of 100) through the API vs the same "
          "envelopes into the minimal table:")
    base = r["copy"]["rate"]
    many = r["executemany"]["rate"]
    for lay in ("wide", "compact"):
        x = r[lay]
        print(f"  {lay:<8} {x['rate']:>9,.0f} events/s  {x['rate'] / base:.2f}x COPY  "
              f"{x['rate'] / many:.2f}x executemany   {x['events_bytes']:6.0f} B/event "
              f"(events), {x['all_bytes']:6.0f} B/event (events + runs)")
    print(f"  minimal  COPY {base:>9,.0f} events/s, executemany {many:,.0f} events/s, "
          f"{r['copy']['events_bytes']:6.0f} B/event")


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--layouts", action="store_true",
                    help="only the wide vs compact comparison")
    args = ap.parse_args(argv)
    url = os.environ.get("RUNLOG_BENCH_POSTGRES_URL", DEFAULT_URL)
    per_writer_total = 20_000 if args.quick else 100_000
    schema_prefix = f"runlog_bench_{uuid.uuid4().hex[:8]}"
    made: list[str] = []
    results: dict[str, Any] = {}

    def fresh(lay: str | None = None) -> str:
        name = f"{schema_prefix}_{len(made)}"
        made.append(name)
        u = _schema_url(url, name)
        PostgresBackend(u, layout=lay).close()
        with psycopg.connect(_libpq(url), autocommit=True) as c:
            for stmt in PLAIN_DDL:
                c.execute(stmt.format(schema=name))
        return u

    try:
        print(f"PostgreSQL benchmarks ({'quick' if args.quick else 'full'}), {url}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
        results["layouts"] = _layouts(fresh, per_writer_total)
        _print_layouts(results["layouts"])
        if args.layouts:
            return results
        print("\ninsert method, 1 process, events/s (interleaved, medians):")
        u = fresh()
        results["insert"] = {}
        for size in (1, 10, 500):
            unnest, copy = _insert_methods(u, size, 2_000 if args.quick else 10_000,
                                           3 if args.quick else 5)
            print(f"  batch {size:>4}: unnest (1 statement) {unnest:>9,.0f}   copy (3 round "
                  f"trips) {copy:>9,.0f}   unnest/copy {unnest / copy:.2f}x")
            results["insert"][size] = {"unnest": unnest, "copy": copy}

        print("\nappend throughput, P writer processes, total events/s "
              "(runlog API vs the same envelopes into the minimal table):")
        print(f"  {'P':>3} {'runlog':>10} {'plain COPY':>11} {'plain execmany':>15} "
              f"{'vs COPY':>8} {'vs execmany':>12}")
        results["append"] = {}
        for procs in (1, 4, 16):
            per = max(per_writer_total // procs, 2_000)
            ours = _run_procs(_api_writer, (fresh(), per), procs)
            plain_copy = _run_procs(_plain_writer, (fresh(), per, "copy"), procs)
            plain_many = _run_procs(_plain_writer, (fresh(), per, "executemany"), procs)
            print(f"  {procs:>3} {ours:>10,.0f} {plain_copy:>11,.0f} {plain_many:>15,.0f} "
                  f"{ours / plain_copy:>7.2f}x {ours / plain_many:>11.2f}x")
            results["append"][procs] = {"runlog": ours, "copy": plain_copy,
                                        "executemany": plain_many}

        n = 300 if args.quick else 2000
        p50, p99, worst = _tail_latency(fresh(), n)
        f50, f99, fworst = _notify_floor(url, n)
        print(f"\ntail latency, {n} tokens at 200/s, recorded -> yielded by store.tail:")
        print(f"  runlog tail      p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {worst:6.2f} ms"
              f"  (goal p99 < 10 ms: {'met' if p99 < 10 else 'MISSED'})")
        print(f"  bare NOTIFY      p50 {f50:6.2f} ms  p99 {f99:6.2f} ms  max {fworst:6.2f} ms"
              f"  (the floor on this machine now)")
        print(f"  ratio            p50 {p50 / f50:6.2f}x    p99 {p99 / f99:6.2f}x")
        results["tail"] = {"p50_ms": p50, "p99_ms": p99, "max_ms": worst,
                           "notify_p50_ms": f50, "notify_p99_ms": f99}
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end (figures are only "
              "comparable within one run)")
    finally:
        with psycopg.connect(_libpq(url), autocommit=True) as c:
            for name in made:
                c.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    return results


if __name__ == "__main__":
    main()
