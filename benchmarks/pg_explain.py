"""The query plans in docs/postgres.md: build a 1M-event PostgreSQL store, EXPLAIN.

``python -m benchmarks.pg_explain --build`` records 10,000 traces (1,010,000 events,
100,000 runs: one root and nine children each; 20 names, 5 run types; 10 % of traces
carry a rare ``exp-N`` tag among 50; metadata ``user`` among 100 values) into the
schema ``runlog_docs_1m`` of ``$RUNLOG_BENCH_POSTGRES_URL`` (minutes), then prints
``EXPLAIN ANALYZE`` of the statements ``read_sql`` / ``run_filter_sql`` produce for
typical reads, as Markdown. Without ``--build`` it only explains (the store must
exist). ``--drop`` removes the schema afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
from typing import Any

import psycopg
from psycopg import ClientCursor

import runlog
from runlog import ANY, Filter
from runlog.store.base import EventQuery
from runlog.store.postgres import _SELECT_RUNS, parse_url, read_sql, run_filter_sql

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCHEMA = "runlog_docs_1m"


def build(url: str, traces: int) -> None:
    rnd = random.Random(7)
    names = [f"step_{i}" for i in range(20)]
    types = ["chain", "llm", "tool", "retriever", "chat_model"]
    with runlog.open(url) as store:
        for _ in range(traces):
            tags = ["prod"] if rnd.random() < 0.9 else ["prod", f"exp-{rnd.randrange(50)}"]
            with store.run("agent", "chain", tags=tags,
                           metadata={"user": f"u{rnd.randrange(100)}", "env": "prod"}) as root:
                for _ in range(9):
                    with root.child(rnd.choice(names), rnd.choice(types), metadata={
                            "ls_model_name": rnd.choice(["gpt", "claude", "llama"])}) as ch:
                        for k in range(9):
                            ch.token(f"tok{k}")
                        ch.end({"content": "x" * 20})
                root.end({"answer": "done"})


def explain(conn: psycopg.Connection[Any], sql: str, params: Any) -> None:
    text = ClientCursor(conn).mogrify(sql, params)
    print("```")
    for row in conn.execute("EXPLAIN (ANALYZE, COSTS OFF, BUFFERS OFF) " + text):
        print(row[0])
    print("```")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--build", action="store_true", help="(re)build the 1M-event store")
    ap.add_argument("--traces", type=int, default=10_000, help="traces of 101 events")
    ap.add_argument("--drop", action="store_true", help="drop the schema at the end")
    ap.add_argument("--quick", action="store_true", help="with --build: 500 traces")
    args = ap.parse_args(argv)
    base = os.environ.get("RUNLOG_BENCH_POSTGRES_URL", DEFAULT_URL)
    url = f"{base}{'&' if '?' in base else '?'}schema={SCHEMA}"
    libpq = parse_url(base)[0].replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq, autocommit=True) as admin:
        if args.build:
            admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            build(url, 500 if args.quick else args.traces)
            admin.execute(f"VACUUM ANALYZE {SCHEMA}.events")
            admin.execute(f"VACUUM ANALYZE {SCHEMA}.runs")
    conn = psycopg.connect(libpq, autocommit=True, options=f"-c search_path={SCHEMA}")
    try:
        row = conn.execute("SELECT count(*), max(seq) FROM events").fetchone()
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()
        assert row is not None
        assert runs is not None
        total, last = int(row[0]), int(row[1] or 0)
        print(f"-- store: {total} events (max seq {last}), {runs[0]} runs")
        trace = conn.execute("SELECT trace_id FROM runs WHERE parent_id IS NULL "
                             "ORDER BY start_seq OFFSET %s LIMIT 1",
                             (int(runs[0]) // 20,)).fetchone()
        assert trace is not None
        cases = [
            ("tail page: the next 1000 events after a cursor",
             EventQuery(after=last - 500, limit=1000)),
            ("one trace (replay)", EventQuery(after=0, trace_id=trace[0], limit=1000)),
            ("include_names=['step_3'] from the start",
             EventQuery(filter=Filter(include_names=["step_3"]))),
            ("include_types=['retriever'], exclude_names=['step_1']",
             EventQuery(filter=Filter(include_types=["retriever"], exclude_names=["step_1"]))),
            ("include_tags=['exp-7'] (a rare tag) from the start",
             EventQuery(filter=Filter(include_tags=["exp-7"]))),
            ("include_metadata={'user': 'u42'}",
             EventQuery(filter=Filter(include_metadata={"user": "u42"}))),
            ("include_metadata={'ls_model_name': ANY}, exclude_tags=['exp-3'] on a tail page",
             EventQuery(after=last - 500, filter=Filter(include_metadata={"ls_model_name": ANY},
                                                        exclude_tags=["exp-3"]))),
        ]
        for title, q in cases:
            sql, params = read_sql(q)
            print(f"\n#### {title}\n\n```sql\n{sql}\n```\n")
            explain(conn, sql, params)
        fsql, fparams = run_filter_sql(Filter(include_tags=["exp-7"]), "r")
        print("\n#### store.runs(filter=Filter(include_tags=['exp-7']))\n")
        explain(conn, f"{_SELECT_RUNS} WHERE {fsql} ORDER BY r.start_seq DESC", fparams)
        suffix = conn.execute("SELECT right(run_id, 12) FROM runs OFFSET 777 LIMIT 1").fetchone()
        assert suffix is not None
        print("\n#### run id by suffix (`runlog show <last 12 chars>`)\n")
        explain(conn, "SELECT run_id FROM runs WHERE reverse(run_id) LIKE %s "
                "ORDER BY run_id COLLATE \"C\" LIMIT 2", (suffix[0][::-1] + "%",))
    finally:
        conn.close()
        if args.drop:
            with psycopg.connect(libpq, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


if __name__ == "__main__":
    main()
