"""How runs and events look to a person: one place for colours, trees and JSON lines."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.tree import Tree

from runlog.events import Event, RunInfo

STATUS_STYLE = {"ok": "green", "error": "bold red", "running": "yellow", "abandoned": "magenta"}


def event_json_line(event: Event) -> bytes:
    """An event as one JSON line: the stored envelope with its ``seq`` put first.

    Built from the stored bytes by concatenation (never re-serialised), so what a live
    tailer prints and what ``runlog replay`` prints afterwards are the same bytes.
    """
    return b'{"seq":' + str(event.seq).encode() + b"," + event.raw[1:] + b"\n"


def short(value: Any, limit: int | None = 120) -> str:
    """A one-line preview of a value for tables and trees (``limit=None``: whole)."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = orjson.dumps(value, default=repr).decode()
        except TypeError:
            text = repr(value)
    text = text.replace("\n", "⏎")
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def fmt_time(t: dt.datetime | None) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S") if t else ""


def fmt_duration(d: dt.timedelta | None) -> str:
    if d is None:
        return ""
    s = d.total_seconds()
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def status_text(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def runs_table(runs: Iterable[RunInfo], totals: Mapping[str, int] | None = None,
               width: int | None = None) -> Table:
    """Runs as aligned columns; ids are never wrapped nor cut (they are what people copy).

    ``totals``: each root's whole-trace event count, shown as "events" (without it the
    column is each run's "own events"). ``width``: the terminal's width; columns are
    left out (tags, duration, started, type, in that order) until the table fits.
    """
    runs = list(runs)
    count_col = "events" if totals is not None else "own events"
    columns = ["run id", "name", "type", "status", "started", "duration", count_col, "tags"]
    rows = [{"run id": escape(r.run_id), "name": escape(r.name), "type": escape(r.run_type),
             "status": status_text(r.status), "started": fmt_time(r.start_time),
             "duration": fmt_duration(r.duration),
             count_col: str(totals[r.run_id] if totals is not None else r.event_count),
             "tags": escape(", ".join(r.tags))} for r in runs]
    id_width = max((len(r.run_id) for r in runs), default=6)

    def build(cols: list[str]) -> Table:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for c in cols:
            table.add_column(c, no_wrap=c not in ("name", "tags"), overflow="fold",
                             justify="right" if c == count_col else "left",
                             min_width=id_width if c == "run id" else None)
        for row in rows:
            table.add_row(*(row[c] for c in cols))
        return table

    table = build(columns)
    if width is None:
        return table
    wide = Console(width=100_000)
    for drop in ("tags", "duration", "started", "type"):
        if Measurement.get(wide, wide.options, table).maximum <= width:
            break
        columns.remove(drop)
        table = build(columns)
    return table


def run_tree(runs: list[RunInfo], root_id: str, outputs: dict[str, Any] | None = None,
             streamed: dict[str, str] | None = None, *,
             inputs: dict[str, Any] | None = None, limit: int | None = 120) -> Tree:
    """The runs of one trace as a tree: type, status, duration, output preview, error.

    ``inputs``/``outputs`` map run ids to what to show (a string is shown as it is:
    :mod:`runlog.content` makes readable text of LangChain values). ``limit`` cuts each
    value to one line of that many characters; ``None`` shows them whole, on as many
    lines as they have.
    """

    def value(v: Any) -> str:
        if limit is not None:
            return escape(short(v, limit))
        text = v if isinstance(v, str) else short(v, None)
        return escape(text).replace("\n", "\n  ") if "\n" in text else escape(text)

    by_parent: dict[str | None, list[RunInfo]] = {}
    by_id = {r.run_id: r for r in runs}
    for r in runs:
        by_parent.setdefault(r.parent_id, []).append(r)

    def label(r: RunInfo) -> str:
        text = (f"[bold]{escape(r.name)}[/] [dim]{r.run_type}[/] {status_text(r.status)} "
                f"[dim]{fmt_duration(r.duration)}[/]")
        if inputs is not None and inputs.get(r.run_id) not in (None, ""):
            text += f"\n[dim]input:[/] {value(inputs[r.run_id])}"
        if streamed and streamed.get(r.run_id):
            text += f"\n[cyan]streamed:[/] {value(streamed[r.run_id])}"
        if outputs is not None and r.run_id in outputs and outputs[r.run_id] is not None:
            text += f"\n[dim]output:[/] {value(outputs[r.run_id])}"
        if r.error is not None:
            text += f"\n[red]{escape(r.error.type)}: {value(r.error.message)}[/]"
        return text

    root = by_id[root_id]
    tree = Tree(label(root))
    # Iterative, and each run once: a store another process wrote may hold a parent
    # cycle or a nesting deeper than Python's recursion limit.
    seen = {root_id}
    todo: list[tuple[Tree, str]] = [(tree, root_id)]
    while todo:
        node, run_id = todo.pop()
        for child in by_parent.get(run_id, []):
            if child.run_id not in seen:
                seen.add(child.run_id)
                todo.append((node.add(label(child)), child.run_id))
    return tree


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=False)
