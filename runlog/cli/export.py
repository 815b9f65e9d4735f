"""Export and import commands: ``runlog export`` and ``runlog import``."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

import click
from rich.markup import escape

import runlog
from runlog.cli import cli, os_error_line
from runlog.cli.options import (
    db_option,
    filter_options,
    option_error,
    plural,
    resolve_run,
    resolve_trace_id,
    say,
)
from runlog.cli.render import console
from runlog.exporters import FORMATS, import_jsonl
from runlog.exporters import export as do_export
from runlog.exporters.chrome import MIN_MAX_BYTES
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
@click.option("--trace", "trace_id", metavar="TRACE_ID",
              help="Only this trace (its id, or a unique prefix/suffix of 8+ characters).")
@click.option("-o", "--output", "output", default="-", show_default=True, metavar="FILE",
              help="Where to write; - for standard output.")
@click.option("--max-bytes", type=click.IntRange(min=MIN_MAX_BYTES), default=None,
              metavar="N",
              help="chrome: split into FILE, FILE.1.json, ... of at most N bytes each "
                   "(default 100000000).")
@click.option("--max-value-bytes", type=click.IntRange(min=0), default=None, metavar="N",
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
    stream = output == "-" or _check_output(output)
    if stream and output != "-" and max_bytes is not None:
        raise click.UsageError("--max-bytes needs -o FILE to be a regular file: a device "
                               "or a pipe is never split")
    from runlog.exporters._common import Selection

    exported = [0]
    with runlog.open(db, create=False) as store, ExitStack() as stack:
        if run_id is not None:
            run_id = resolve_run(store, run_id)
        if trace_id is not None:
            trace_id = resolve_trace_id(store, trace_id)
            in_trace = store.run_info(run_id).trace_id if run_id is not None else trace_id
            if in_trace != trace_id:
                raise option_error("--run", f"run {run_id} is in trace {in_trace}, not in "
                                   f"--trace {trace_id}: give one of them")
        total = Selection(run_id=run_id, trace_id=trace_id, filter=filter).pinned(store)
        # A device or a pipe (/dev/stdout, a FIFO) is written to as a stream, never
        # replaced by a renamed file.
        target: str | BinaryIO = output
        if stream and output != "-":
            target = stack.enter_context(Path(output).open("wb"))

        def progress(n: int) -> None:
            exported[0] += n
            if bar is not None:
                bar(n)

        try:
            with progress_bar(f"exporting {fmt}", total.count(store)) as bar:
                result = do_export(store, fmt, target, run_id=run_id,  # type: ignore[arg-type]
                                   trace_id=trace_id, filter=filter, progress=progress,
                                   **options)
            stack.close()  # a device's last write fails here (a full disk), not later
        except KeyboardInterrupt:
            sys.stdout.flush()
            name = "standard output" if output == "-" else output
            where = (f"{name} got an incomplete export (stopped after "
                     f"{plural(exported[0], 'event')})" if stream else
                     f"nothing was written to {output} (the export goes to {output}.partial, "
                     "renamed only when complete; it was removed)")
            if not stream and max_bytes is not None:
                where += "; parts completed before the interruption stay"
            say(escape(f"runlog export: interrupted; {where}"))
            raise SystemExit(130) from None
        except OSError as e:
            if e.filename2 is not None and str(e.filename).endswith(".partial"):
                Path(e.filename).unlink(missing_ok=True)  # the rename into place failed
            with suppress(OSError):  # closing a full device fails again: once is enough
                stack.close()
            raise click.ClickException(f"cannot write -o {output}: {os_error_line(e)}") from None
    if output != "-":
        files = ", ".join(result.files)
        say(escape(f"exported {plural(result.events, 'event')} of "
                   f"{plural(result.runs, 'run')} to {files}"))


def _check_output(output: str) -> bool:
    """Refuse an ``-o`` that cannot become a file before reading anything.

    Returns True when ``output`` exists and is not a regular file (a device, a pipe).
    """
    path = Path(output)
    if path.is_dir():
        raise option_error("-o/--output", f"{output} is a directory; give a file name, "
                           f"e.g. {path / 'runs.jsonl'}")
    parent = path.parent
    if not parent.exists():
        raise option_error("-o/--output", f"there is no directory {parent}; create it first")
    if not parent.is_dir():
        raise option_error("-o/--output", f"{parent} is not a directory")
    return path.exists() and not path.is_file()


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
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=2000,
              show_default=True, help="Events per transaction.")
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
    before: int | None = None
    try:
        with runlog.open(db) as store, progress_bar("importing", None) as progress:
            before = store.last_seq()
            try:
                result = import_jsonl(store, file,
                                      on_conflict="skip" if skip_existing else "error",
                                      batch_size=batch_size, progress=progress)
            except BaseException:
                if new_file is None or store.last_seq() != 0:
                    new_file = None
                raise
    except BaseException as e:
        if new_file is not None:  # a store this failed import created, still empty
            for path in (new_file, Path(f"{new_file}-wal"), Path(f"{new_file}-shm")):
                path.unlink(missing_ok=True)
        if isinstance(e, KeyboardInterrupt):
            _import_interrupted(db, file, before)
        raise
    finally:
        if collecting:
            gc.enable()
    msg = (f"imported {plural(result.events, 'event')} ({plural(result.runs, 'new run')}) "
           f"into {db}")
    if result.skipped_events:
        msg += (f"; skipped {plural(result.skipped_events, 'event')} of "
                f"{plural(len(result.skipped_runs), 'run')} the store already had")
    say(escape(msg))


def _import_interrupted(db: str, file: str, before: int | None) -> None:
    """Ctrl-C during an import: how far it got, and how to finish it.

    Batches are committed one transaction at a time, so what was committed stays;
    the count is the store's growth (another writer's events would be counted too).
    """
    committed = 0
    if before is not None:
        try:
            with runlog.open(db, create=False) as store:
                committed = store.last_seq() - before
        except Exception:  # the store went away: nothing more to say
            committed = 0
    if committed <= 0:
        say(escape(f"runlog import: interrupted; nothing was committed to {db}"))
    else:
        say(escape(f"runlog import: interrupted; {plural(committed, 'event')} committed to "
                   f"{db} (whole batches); finish with: runlog import {file} --db {db} "
                   "--skip-existing"))
    raise SystemExit(130)
