"""Keeping a store for months: ``runlog prune`` and ``runlog stats``."""

from __future__ import annotations

import datetime as dt
import sys

import click
import orjson
from rich.markup import escape

from runlog.cli import cli
from runlog.cli.core import open_store
from runlog.cli.options import (
    TIME_FORMATS,
    TimeParam,
    db_option,
    plural,
    resolve_trace_id,
    say,
)
from runlog.events import micros_to_datetime


def human_bytes(n: float) -> str:
    """``1.4 MB``: bytes for a person (powers of 1000, as disks are sold)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"  # pragma: no cover - the loop returns


@cli.command()
@db_option
@click.option("--before", "before", type=TimeParam(), required=True,
              help=f"Remove traces over before this time: {TIME_FORMATS}.")
@click.option("--trace", "trace_id", default=None, metavar="ID",
              help="Only this trace (its id, or 8+ characters of it).")
@click.option("--tag", "tag", default=None, metavar="TAG",
              help="Only traces whose root run carries this tag.")
@click.option("--archive", "archive", default=None, metavar="FILE.jsonl",
              help="First write the traces to this new file (lossless JSONL, what "
                   "`runlog import` reads) and check it; nothing is removed otherwise.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--vacuum", is_flag=True,
              help="SQLite store made before incremental vacuum: run one VACUUM to give "
                   "the space back (rewrites the file, blocks writers meanwhile).")
@click.option("--batch-events", type=click.IntRange(1, 1_000_000), default=5000,
              show_default=True, help="Events removed per transaction (about).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def prune(db: str, before: dt.datetime, trace_id: str | None, tag: str | None,
          archive: str | None, dry_run: bool, vacuum: bool, batch_events: int,
          as_json: bool) -> None:
    """Remove whole traces that were over before a time, optionally archiving them.

    \b
    Examples:
      runlog prune --before 30d --archive old.jsonl   (archive, then remove)
      runlog prune --before 2026-11-01 --tag eval --dry-run
    A trace goes only when every run of it ended, or was abandoned, before --before;
    never part of a run or a trace, never the store's newest trace. Each batch is
    one short transaction; writers and tails go on meanwhile. The store records
    each prune (who, when, what), so `runlog verify` accepts the gaps it leaves.
    """
    if before > dt.datetime.now(dt.UTC):
        raise click.BadParameter("the cutoff is in the future; prune removes only what "
                                 "was over before it", param_hint="--before")
    with open_store(db) as store:
        if trace_id is not None:
            trace_id = resolve_trace_id(store, trace_id)
        report = store.prune(before, trace_id=trace_id, tag=tag, archive=archive,
                             dry_run=dry_run, vacuum=vacuum, batch_events=batch_events)
    if as_json:
        out = {"before": report.before.isoformat(), "dry_run": report.dry_run,
               "traces": report.traces, "runs": report.runs, "events": report.events,
               "trace_ids": list(report.trace_ids), "kept": list(report.kept),
               "archive": report.archive, "archived_events": report.archived_events,
               "batches": report.batches, "reclaimed": report.reclaimed,
               "operation": report.operation}
        sys.stdout.buffer.write(orjson.dumps(out) + b"\n")
        return
    what = (f"{plural(report.traces, 'trace')} ({plural(report.runs, 'run')}, "
            f"{plural(report.events, 'event')})")
    cutoff = report.before.isoformat(timespec="seconds")
    if report.dry_run:
        say(f"would remove {what} over before {cutoff}", err=False)
        return
    if report.traces == 0 and not report.kept:
        say(f"nothing to prune: no trace was over before {cutoff}", err=False)
        return
    if report.archive is not None:
        say(f"archived {plural(report.archived_events, 'event')} to "
            f"{escape(report.archive)} (checked)", err=False)
    say(f"removed {what} over before {cutoff} in {plural(report.batches, 'batch', 'batches')}",
        err=False)
    if report.kept:
        say(f"kept {plural(len(report.kept), 'trace')} that changed or ran again meanwhile "
            "(a later prune takes them)", err=False)
    if report.reclaimed:
        say(f"gave {human_bytes(report.reclaimed)} back to the file system", err=False)


@cli.command()
@db_option
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="How many of the largest traces to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def stats(db: str, top: int, as_json: bool) -> None:
    """What the store holds: events, runs, traces, bytes on disk, growth per day.

    \b
    Bytes by run type, trace and day are each group's share of the events table on
    disk (in proportion to the bytes its rows store); counting them reads every
    event row once.
    """
    with open_store(db) as store:
        s = store.stats(top)
    if as_json:
        sys.stdout.buffer.write(s.json() + b"\n")
        return

    def when(us: int | None) -> str:
        return "-" if us is None else micros_to_datetime(us).isoformat(timespec="seconds")

    lines = [
        f"store      {escape(s.location)} ({s.layout})",
        f"events     {s.events:,}",
        f"runs       {s.runs:,}",
        f"traces     {s.traces:,}",
        f"on disk    {human_bytes(s.bytes_on_disk)} (events table {human_bytes(s.events_bytes)})",
        f"oldest     {when(s.oldest_us)}",
        f"newest     {when(s.newest_us)}",
        f"growth     {human_bytes(s.bytes_per_day)} per day (average)",
    ]
    if s.prunes:
        lines.append(f"pruned     {plural(s.pruned_events, 'event')} in "
                     f"{plural(s.prunes, 'batch', 'batches')}")
    if s.by_type:
        lines.append("by run type")
        lines += [f"  {escape(t.run_type):<16} {t.runs:>9,} runs {t.events:>11,} events "
                  f"{human_bytes(t.bytes):>10}" for t in s.by_type]
    if s.top_traces:
        lines.append("largest traces")
        lines += [f"  {t.trace_id}  {t.events:>11,} events {human_bytes(t.bytes):>10}  "
                  f"{escape(t.name)}" for t in s.top_traces]
    if s.per_day:
        lines.append("per day (UTC)")
        lines += [f"  {d.day}  {d.runs:>9,} runs {d.events:>11,} events "
                  f"{human_bytes(d.bytes):>10}" for d in s.per_day[-31:]]
    for line in lines:
        say(line, err=False)
