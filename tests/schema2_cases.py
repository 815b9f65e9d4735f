"""The runs recorded into the schema-2 fixture store (``tests/fixtures/schema2/``).

Run by the code before layout code 7 (main at 8b1880f, whose compact stores are at
schema 2 and hold code-5 token rows)::

    PYTHONPATH=<that checkout> python tests/schema2_cases.py tests/fixtures/schema2

It writes ``store.db`` and ``expected.json`` (every event's seq, envelope and digest as
that code stored them); ``tests/test_schema3_bare_tokens.py`` reads them with today's
code and keeps writing into a copy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TOKENS = ["tok", "", " the", 'say "hi"', "back\\slash", "tab\tnew\nline", "\x00\x1f\x7f",
          "caf\u00e9 \u2603 \U0001f600", "\u2028\u2029", "\\\"", "\ud800 lone"]
"""Tokens of every shape a JSON string takes (escapes, quotes, control characters,
non-ASCII); the last holds a lone surrogate, which the codec keeps as a tagged object."""


def record(db: Path) -> None:
    """Record the fixture's runs into a new store at ``db``."""
    import runlog

    t = 1_796_000_000_000_000
    with runlog.open(db) as store:
        with store.run("chat", run_type="llm", tags=["fixture", "schema2"], time=t) as run:
            for i, tok in enumerate(TOKENS):
                run.token(tok, time=t + 10 * (i + 1))
            run.token(["block", {"type": "text"}], time=t + 500)
            run.stream({"out": 1}, time=t + 600)
        with store.run("chunks", run_type="llm", time=t + 1000) as run:
            for i, tok in enumerate(["a", "b", 'c"d']):
                run.token(tok, {"text": tok, "id": "x"}, time=t + 1001 + i)


def main(out: Path) -> None:
    import runlog

    out.mkdir(parents=True, exist_ok=True)
    db = out / "store.db"
    if db.exists():
        db.unlink()
    record(db)
    import sqlite3

    conn = sqlite3.connect(db)  # one file: the WAL's pages moved into it
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with runlog.open(db, create=False) as store:
        events = [{"seq": e.seq, "raw": e.raw.decode(), "digest": e.digest.hex()}
                  for e in store.events(digests=True)]
    (out / "expected.json").write_text(json.dumps({"events": events}, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
