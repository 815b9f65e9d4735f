"""``runlog diff RUN_A RUN_B``: what changed between two recordings of a pipeline."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from typing import Any

import click
import orjson
from rich.markup import escape
from rich.table import Table

from runlog.cli import cli
from runlog.cli.core import open_store
from runlog.cli.options import db_option, json_option
from runlog.cli.render import console, short
from runlog.diff import RunDiff, diff


def _ms(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


def _delta(v: float | None) -> str:
    if v is None:
        return ""
    style = "red" if v > 0 else "green"
    return f"[{style}]{v:+.1f}[/]"


def _patch_table(title: str, patch: list[dict[str, Any]]) -> Table:
    table = Table(title=title, box=None, pad_edge=False, title_justify="left",
                  header_style="bold")
    for col in ("op", "path", "value"):
        table.add_column(col, overflow="fold")
    for op in patch:
        value = short(op["value"]) if "value" in op else op.get("from", "")
        table.add_row(op["op"], escape(op["path"]), escape(value))
    return table


def render(d: RunDiff) -> None:
    """The human report: verdict, first divergence, patch, timings."""
    out = console()
    out.print(f"[bold]A[/] {d.a}\n[bold]B[/] {d.b}")
    if d.same:
        out.print("[green]same events and outputs[/] (ids and times aside)")
    if d.first_divergence is not None:
        out.print(f"\n[bold]first divergence[/]: {escape(d.first_divergence.describe())}")
    for title, keys in (("only in A", d.only_in_a), ("only in B", d.only_in_b)):
        if keys:
            out.print(f"[bold]{title}[/]: " + ", ".join(escape(k) for k in keys))
    for title, patch in (("runs: JSON Patch A -> B", d.patch),
                         ("RunState (astream_log): JSON Patch A -> B", d.state_patch)):
        if patch:
            out.print()
            out.print(_patch_table(title, patch))
    if d.state_note:
        out.print(f"[yellow]{escape(d.state_note)}[/]")
    table = Table(title="timings (ms)", box=None, pad_edge=False, title_justify="left",
                  header_style="bold")
    for col in ("run", "start A", "start B", "duration A", "duration B", "delta",
                "first output A", "first output B"):
        table.add_column(col, overflow="fold")
    for t in d.timings:
        table.add_row(escape(t.run), _ms(t.start_a_ms), _ms(t.start_b_ms), _ms(t.duration_a_ms),
                      _ms(t.duration_b_ms), _delta(t.delta_ms), _ms(t.first_output_a_ms),
                      _ms(t.first_output_b_ms))
    out.print()
    out.print(table)


@cli.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@db_option
@click.option("--db-b", "db_b", default=None, metavar="PATH_OR_URL",
              help="Store holding RUN_B, to compare across stores (default: --db).")
@json_option
@click.option("--exit-code", is_flag=True,
              help="Exit with status 1 when the runs differ (as diff(1) does).")
def diff_command(run_a: str, run_b: str, db: str, db_b: str | None, as_json: bool,
                 exit_code: bool) -> None:
    """Compare two runs (and their child runs): first diverging event, patch, timings.

    Runs are aligned by tree position and name, never by ids or times, so two
    recordings of the same pipeline (before and after a prompt change) line up.
    RUN_A and RUN_B are ids or unique prefixes/suffixes.

    \b
    Example:
        runlog diff 0193a1f2 0193a1f9
        runlog diff OLD_ID NEW_ID --db-b new.db --json
    """
    with ExitStack() as stack:
        store = stack.enter_context(open_store(db))
        other = (stack.enter_context(open_store(db_b, flag="--db-b")) if db_b is not None
                 else None)
        result = diff(store, run_a, run_b, store_b=other)
    if as_json:
        data: dict[str, Any] = result.to_dict()
        sys.stdout.buffer.write(orjson.dumps(data) + b"\n")
    else:
        render(result)
    if exit_code and not result.same:
        raise SystemExit(1)
