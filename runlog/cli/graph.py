"""``runlog show`` for LangGraph runs: a thread's runs in order, and a graph's steps.

Reads the stream events ``runlog_langgraph`` stores (:mod:`runlog.reducers.graph`)
without importing LangGraph or the adapter: a store from anywhere can be shown.
"""

from __future__ import annotations

from typing import Any

import orjson
from rich.markup import escape

from runlog.api import Store
from runlog.cli.render import console, fmt_time, short, status_text
from runlog.codec import encode
from runlog.reducers.graph import GraphStep, graph_records, graph_steps

__all__ = ["agent_demo", "print_graph_steps", "show_thread"]


def steps_of(store: Store, run_id: str) -> list[GraphStep]:
    """The graph steps stored on a run (``[]`` for a run that is no graph)."""
    rid = store.resolve_run_id(run_id)
    return graph_steps(graph_records(store.events(rid), rid))


def _step_dict(s: GraphStep) -> dict[str, Any]:
    return {"step": s.step, "updates": [[n, u] for n, u in s.updates], "diff": s.diff,
            "interrupts": s.interrupts}


def print_graph_steps(store: Store, run_id: str) -> None:
    """Print a graph run's steps under its tree (nothing for other runs)."""
    steps = steps_of(store, run_id)
    if not steps:
        return
    out = console()
    out.print("\n[bold]graph steps[/]")
    for s in steps:
        nodes = ", ".join(escape(n) for n, _ in s.updates) or "-"
        out.print(f"  [bold]step {s.step}[/]  nodes: {nodes}")
        for op in s.diff:
            value = short(op["value"], 100) if "value" in op else ""
            out.print(f"    {op.get('op')} {escape(str(op.get('path')) or '/')} "
                      f"{escape(value)}")
        for i in s.interrupts:
            out.print(f"    [yellow]interrupt[/] {escape(short(i, 100))}")


def show_thread(store: Store, thread: str, as_json: bool) -> None:
    """Every run of a LangGraph thread, oldest first, each with its graph steps."""
    runs = store.runs(thread=thread, newest_first=False)
    if as_json:
        import sys
        for r in runs:
            line = {"run_id": r.run_id, "name": r.name, "status": r.status,
                    "start_time": r.start_time.isoformat(),
                    "steps": [_step_dict(s) for s in steps_of(store, r.run_id)]}
            sys.stdout.buffer.write(orjson.dumps(orjson.Fragment(encode(line,
                                                                        lossy=True))) + b"\n")
        return
    out = console()
    if not runs:
        out.print(f"no runs of thread {escape(thread)}")
        return
    out.print(f"[bold]thread {escape(thread)}[/]: {len(runs)} run(s)")
    for n, r in enumerate(runs, 1):
        out.print(f"\n[bold]{n}.[/] {r.run_id}  {escape(r.name)}  "
                  f"{status_text(r.status)}  {fmt_time(r.start_time)}")
        print_graph_steps(store, r.run_id)


def agent_demo(db: str, delay: float, out: Any) -> None:
    """``runlog demo --agent``: runs ``runlog_langgraph.demo`` (an optional
    distribution, imported only here: runlog itself never needs it)."""
    import importlib

    import click

    import runlog
    try:
        run_demo = importlib.import_module("runlog_langgraph.demo").run_demo
    except ImportError as e:
        raise click.ClickException(
            f"runlog demo --agent needs the LangGraph adapter ({e}); install it with: "
            "pip install -e adapters/langgraph") from e
    with runlog.open(db) as store:
        run_demo(store, delay=delay, out=out)
