"""Export and import commands: ``runlog export`` and ``runlog import``."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

import runlog
from runlog.cli import cli
from runlog.cli.options import db_option, filter_options
from runlog.cli.render import console
from runlog.exporters import FORMATS, import_jsonl
from runlog.exporters import export as do_export
from runlog.filters import Filter


@contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise.

    Yields the callback the exporters call with each batch's size (or None, so a
    pipeline or a test pays nothing).
    """
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@cli.command()
@db_option
@filter_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl",
              show_default=True,
              help="jsonl: lossless, importable; otlp: OpenTelemetry OTLP/JSON; "
                   "chrome: Trace Event Format for chrome://tracing and Perfetto.")
@click.option("--run", "run_id", metavar="RUN_ID",
              help="Only this run and its descendants (id, or a unique prefix/suffix).")
@click.option("--trace", "trace_id", metavar="TRACE_ID", help="Only this trace.")
@click.option("-o", "--output", "output", default="-", show_default=True, metavar="FILE",
              help="Where to write; - for standard output.")
@click.option("--max-bytes", type=int, default=None, metavar="N",
              help="chrome: split into FILE, FILE.1.json, ... of at most N bytes each "
                   "(default 100000000).")
@click.option("--max-value-bytes", type=int, default=None, metavar="N",
              help="otlp, chrome: keep at most N bytes of each input, output and chunk "
                   "(default: otlp 65536, chrome 1024).")
def export(db: str, filter: Filter | None, fmt: str, run_id: str | None,
           trace_id: str | None, output: str, max_bytes: int | None,
           max_value_bytes: int | None) -> None:
    """Export runs as lossless JSONL, OTLP JSON or a Chrome / Perfetto trace.

    Streams whatever the size: memory stays flat, and a progress bar is shown when
    stderr is a terminal. Without --run, --trace or a filter, the whole store is exported.

    \b
    Examples:
        runlog export -o runs.jsonl                      # everything, importable
        runlog export --run 1f2e3d4c --format otlp -o run.otlp.json
        runlog export --trace TRACE_ID --format chrome -o trace.json
        runlog export --include-tag prod | gzip > prod.jsonl.gz
    """
    options: dict[str, int] = {}
    if max_bytes is not None:
        if fmt != "chrome":
            raise click.UsageError("--max-bytes applies to --format chrome only")
        if output == "-":
            raise click.UsageError("--max-bytes needs -o FILE: standard output is never split")
        options["max_bytes"] = max_bytes
    if max_value_bytes is not None:
        if fmt == "jsonl":
            raise click.UsageError("--max-value-bytes does not apply to jsonl (it is lossless)")
        options["max_value_bytes"] = max_value_bytes
    from runlog.exporters._common import Selection

    with runlog.open(db, create=False) as store:
        total = Selection(run_id=run_id, trace_id=trace_id, filter=filter).pinned(store)
        with progress_bar(f"exporting {fmt}", total.count(store)) as progress:
            result = do_export(store, fmt, output, run_id=run_id,  # type: ignore[arg-type]
                               trace_id=trace_id, filter=filter, progress=progress, **options)
    if output != "-":
        files = ", ".join(result.files)
        console(stderr=True).print(
            f"exported {result.events} events of {result.runs} runs to {files}")


def _sqlite_path(db: str) -> Path | None:
    """The file ``db`` names when it is a SQLite store (as :func:`runlog.open` reads it)."""
    if db == ":memory:" or ("://" in db and not db.lower().startswith("sqlite")):
        return None
    if "://" in db:
        path = db.split("://", 1)[1]
        return Path(path[1:] if path.startswith("/") else path)
    return Path(db)


@cli.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@db_option
@click.option("--skip-existing", is_flag=True,
              help="Deduplicate: skip runs the store already has (or append only what it "
                   "lacks of them) instead of refusing the import.")
@click.option("--batch-size", type=int, default=2000, show_default=True,
              help="Events per transaction.")
def import_(file: str, db: str, skip_existing: bool, batch_size: int) -> None:
    """Import a JSONL export (from `runlog export`) into --db.

    Run ids, event order and stored bytes are kept; events get new seq numbers after
    the store's own. The file is checked completely before anything is written. A run
    the store already has makes the import fail (nothing is written) unless
    --skip-existing is given, so importing the same file twice never doubles it.

    \b
    Examples:
        runlog import runs.jsonl --db team.db
        gunzip -c prod.jsonl.gz | runlog import - --db team.db
    """
    # The import allocates records by the million and frees them a batch later; the
    # collector's passes over them find nothing to collect (about 8 % of the import's
    # time at 100k events). The process is ours, so it is switched off for the import.
    collecting = gc.isenabled()
    gc.disable()
    new_file = _sqlite_path(db)
    if new_file is not None and new_file.exists():
        new_file = None
    try:
        with runlog.open(db) as store, progress_bar("importing", None) as progress:
            try:
                result = import_jsonl(store, file,
                                      on_conflict="skip" if skip_existing else "error",
                                      batch_size=batch_size, progress=progress)
            except BaseException:
                if new_file is None or store.last_seq() != 0:
                    new_file = None
                raise
    except BaseException:
        if new_file is not None:  # a store this failed import created, still empty
            for path in (new_file, Path(f"{new_file}-wal"), Path(f"{new_file}-shm")):
                path.unlink(missing_ok=True)
        raise
    finally:
        if collecting:
            gc.enable()
    msg = f"imported {result.events} events ({result.runs} new runs) into {db}"
    if result.skipped_events:
        msg += (f"; skipped {result.skipped_events} events of {len(result.skipped_runs)} "
                "runs the store already had")
    console(stderr=True).print(msg)
