"""Store administration: ``runlog migrate`` and ``runlog copy``."""

from __future__ import annotations

import click

from runlog.cli import cli
from runlog.cli.options import db_option
from runlog.store.copy import compact_postgres, compact_sqlite, copy_store
from runlog.store.migrations import Migration
from runlog.store.migrations import migrate as do_migrate


@cli.command()
@db_option
@click.option("--compact", is_flag=True,
              help="Convert a store to the compact layout (schema 3), in place "
                   "or (with --to) into a new file (PostgreSQL: a new ?schema=).")
@click.option("--to", "to", metavar="PATH", default=None,
              help="With --compact: write the compact store here (a path, or a "
                   "PostgreSQL URL), leave --db as it is.")
def migrate(db: str, compact: bool, to: str | None) -> None:
    """Create the store if absent, or upgrade its schema to this runlog's version.

    \b
    Safe to run any time and from several hosts at once: each step runs in its own
    transaction with its version bump, and a store already current is left alone.
    A store newer than this runlog is refused, never touched.

    \b
    --compact converts a SQLite store of the wide layout (schema 1: each event row
    repeats its run's ids, name, type, tags and metadata) to the compact one (schema 3:
    those once per run, each event row only what the event adds; about a fifth of
    the bytes). Seqs, envelope bytes and digests stay as they are, so exports and
    their chains do not change; every event is checked on the way and the result
    verified. In place, the original file is kept as PATH.wide; an interrupted
    conversion resumes where it stopped. Runlog older than this one cannot open a
    compact store.

    \b
    A compact store at schema 2 (made before token rows without their JSON quotes,
    layout code 7) is taken to schema 3 in place by the version alone: no row is
    rewritten, tokens recorded after it are stored without quotes, and runlog older
    than schema 3 refuses the store from then on (stop its tails and viewers first).
    """
    if to is not None and not compact:
        raise click.UsageError("--to goes with --compact")
    if compact:
        _compact(db, to)
        return

    def say(m: Migration) -> None:
        click.echo(f"applying {m.version}: {m.description}", err=True)

    report = do_migrate(db, progress=say)
    if report.created:
        click.echo(f"created {report.location} at schema version {report.after}")
    elif report.applied:
        click.echo(f"migrated {report.location} from schema version {report.before} to "
                   f"{report.after}")
    else:
        click.echo(f"{report.location} is at schema version {report.after}: up to date")


def _compact(db: str, to: str | None) -> None:
    import runlog
    from runlog.store.base import Backend

    def verify(backend: Backend) -> str | None:
        report = runlog.Store(backend).verify()
        return None if report.ok else report.first_error

    def progress(done: int, total: int) -> None:
        click.echo(f"  {done:,} of {total:,} events", err=True)

    if db.startswith("postgres"):  # in place needs ?schema=; the wide one is kept
        report = compact_postgres(db, to=to, verify=verify, progress=progress)
    elif "://" in db and not db.startswith("sqlite"):
        raise click.UsageError("--compact converts SQLite and PostgreSQL stores only")
    else:
        path = db.split("://", 1)[1] if "://" in db else db
        path = path[1:] if "://" in db and path.startswith("/") else path  # as runlog.open
        report = compact_sqlite(path, to=to, verify=verify, progress=progress)
    if report.already:
        click.echo(f"{report.source} is in the compact layout already: nothing to do")
        return
    click.echo(
        f"converted {report.events:,} events of {report.runs:,} runs to the compact layout "
        f"(schema 3) in {report.destination}: {report.bytes_before:,} -> "
        f"{report.bytes_after:,} bytes; seqs, envelope bytes and digests unchanged, "
        "every chain verified")
    if report.kept is not None:
        click.echo(f"the original (wide layout) is kept as {report.kept}")


@cli.command()
@click.option("--from", "source", required=True, metavar="URL",
              help="The store to copy: a SQLite path, sqlite:///path or PostgreSQL URL.")
@click.option("--to", "destination", required=True, metavar="URL",
              help="An empty (or absent) store to fill; created if absent.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=1000,
              show_default=True, help="Events per destination transaction.")
def copy(source: str, destination: str, batch_size: int) -> None:
    """Copy a whole store to another place or backend, bytes and hash chains intact.

    \b
    Example: runlog copy --from runlog.db --to postgresql://me@db/runs?schema=runlog
    Seqs, bytes, digests and runs are reproduced exactly; every chain is checked on
    the way. The destination must be empty (use export/import to merge).
    """
    from runlog.cli.core import open_store

    open_store(source, flag="--from").close()  # a missing source is named as --from
    report = copy_store(source, destination, batch_size=batch_size)
    click.echo(f"copied {report.events} events of {report.runs} runs from {report.source} "
               f"to {report.destination} (seq 1..{report.last_seq})")
