"""Core commands: demo, runs, show, replay, verify."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
import orjson

import runlog
from runlog.api import Store
from runlog.cli import cli
from runlog.cli.options import db_option, filter_options, json_option
from runlog.cli.render import console, event_json_line, run_tree, runs_table
from runlog.filters import Filter


def open_store(db: str, *, create: bool = False) -> Store:
    """Open the store for a command; read-only commands never create a file."""
    return runlog.open(db, create=create)


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)


# ------------------------------------------------------------------------- demo

_DOCS = [
    {"id": "doc-1", "text": "runlog stores every start, stream and end event of a run."},
    {"id": "doc-2", "text": "Events are append-only and replay as the exact bytes streamed."},
    {"id": "doc-3", "text": "A tail in another process follows runs token by token."},
]
_ANSWER = ("runlog stores each run's start, stream and end events in an append-only log, "
           "so a run can be followed live and replayed byte for byte.")


def record_demo(store: Store, delay: float = 0.0, echo: Any = None) -> str:
    """Record the demo pipeline offline; return the root run id.

    A retriever, a prompt, a chat model streaming tokens, a tool, and one failing step
    (a fact-checker that raises; the pipeline catches it, the run records the error).
    """
    question = "What does runlog store?"
    with store.run("rag-demo", "chain", inputs={"question": question},
                   tags=["demo"], metadata={"user": "demo", "app": "runlog-demo"}) as root:
        with root.child("Docs", "retriever", inputs={"query": question}) as r:
            r.end(outputs={"documents": _DOCS})
        with root.child("prompt", "prompt", inputs={"question": question}) as p:
            prompt = "Answer from the context.\n" + "\n".join(d["text"] for d in _DOCS)
            p.end(outputs={"text": prompt})
        with root.child("FakeChatModel", "chat_model", inputs={"messages": [prompt]},
                        metadata={"ls_model_name": "fake-chat"}) as m:
            tokens = [t + " " for t in _ANSWER.split(" ")]
            tokens[-1] = tokens[-1].rstrip()
            for tok in tokens:
                m.token(tok)
                if echo:
                    echo(tok)
                if delay:
                    time.sleep(delay)
            m.end(outputs={"content": _ANSWER, "usage": {"output_tokens": len(tokens)}})
        with root.child("word_count", "tool", inputs={"text": _ANSWER}) as tool:
            tool.end(outputs={"words": len(_ANSWER.split())})
        try:
            with root.child("fact_check", "tool", inputs={"claim": _ANSWER}):
                raise LookupError("no source for 'byte for byte' in the context")
        except LookupError:
            pass  # recorded as the step's error; the pipeline goes on without it
        root.end(outputs={"answer": _ANSWER})
    return root.id


@cli.command()
@db_option
@click.option("--delay", type=float, default=0.03, show_default=True,
              help="Seconds between streamed tokens (0 for no pause).")
@click.option("--langchain", "use_langchain", is_flag=True,
              help="Record a real LangChain chain (needs runlog-langchain) and replay it "
                   "as astream_log / astream_events.")
@click.option("--agent", "use_agent", is_flag=True,
              help="Record an offline LangGraph ReAct agent (needs runlog-langgraph) and "
                   "replay its stream from the store.")
def demo(db: str, delay: float, use_langchain: bool, use_agent: bool) -> None:
    """Record a realistic pipeline offline and show it.

    A retriever, a prompt, a chat model streaming tokens, a tool and one failing step
    are recorded into --db; the tokens are printed as they stream, then the stored run
    tree is read back. With --langchain the pipeline is a LangChain chain built from
    its fake models, recorded by runlog_langchain and also replayed as LangChain's
    astream_log patches and astream_events.

    \b
    Example:
        runlog demo --db /tmp/demo.db
        runlog demo --langchain --db /tmp/demo.db
    """
    out = console()
    if use_agent:
        from runlog.cli.graph import agent_demo
        agent_demo(db, delay, out)
        return
    if use_langchain:
        import importlib

        try:  # an optional distribution; imported only here (and runlog never needs it)
            run_demo = importlib.import_module("runlog_langchain.demo").run_demo
        except ImportError as e:
            raise click.ClickException(
                f"runlog demo --langchain needs the LangChain adapter ({e}); install it "
                "with: pip install -e adapters/langchain") from e
        with runlog.open(db) as lc_store:
            run_demo(lc_store, delay=delay, out=out)
        return
    store = runlog.open(db)
    try:
        out.print(f"[bold]Recording a RAG pipeline into[/] {store.location}\n")
        out.print("[dim]streaming tokens from FakeChatModel:[/]")

        def echo(tok: str) -> None:
            sys.stdout.write(tok)
            sys.stdout.flush()

        root_id = record_demo(store, delay=delay, echo=echo)
        out.print("\n")
        _print_tree(store, root_id)
        out.print(
            "\n[bold]Try next:[/]\n"
            f"  runlog runs --db {db}\n"
            f"  runlog show {root_id} --db {db}\n"
            f"  runlog replay {root_id} --db {db}\n"
            f"  runlog verify --db {db}"
        )
    finally:
        store.close()


# ------------------------------------------------------------------------- runs


@cli.command()
@db_option
@json_option
@filter_options
@click.option("--all", "all_runs", is_flag=True, help="Include child runs, not only roots.")
@click.option("--status", type=click.Choice(["running", "ok", "error", "abandoned"]),
              help="Only runs with this status.")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many.")
def runs(db: str, as_json: bool, filter: Filter | None, all_runs: bool, status: str | None,
         limit: int) -> None:
    """List recorded runs, newest first (root runs unless --all or a filter is given)."""
    with open_store(db) as store:
        found = store.runs(roots_only=not all_runs and filter is None, status=status,
                           filter=filter, limit=limit)
        if as_json:
            for r in found:
                _write(orjson.dumps(_run_dict(r)) + b"\n")
            return
        if not found:
            console().print("no runs match")
            return
        console().print(runs_table(found))


def _run_dict(r: runlog.RunInfo) -> dict[str, Any]:
    return {
        "run_id": r.run_id, "trace_id": r.trace_id, "parent_id": r.parent_id, "name": r.name,
        "run_type": r.run_type, "status": r.status, "start_time": r.start_time.isoformat(),
        "end_time": r.end_time.isoformat() if r.end_time else None,
        "event_count": r.event_count, "tags": list(r.tags),
        "error": r.error.to_dict() if r.error else None,
    }


# ------------------------------------------------------------------------- show


def _print_tree(store: Store, run_id: str) -> None:
    info = store.run_info(run_id)
    runs_ = [r for r in store.trace_runs(info.trace_id)]
    _, subtree = store.subtree_ids(info.run_id)
    runs_ = [r for r in runs_ if r.run_id in subtree]
    outputs: dict[str, Any] = {}
    streamed: dict[str, str] = {}
    for e in store.events(info.run_id, descendants=True):
        if e.kind == "end":
            outputs[e.run_id] = e.data
        elif e.kind == "stream" and e.channel in ("token", "output"):
            piece = e.data.get("token") if e.channel == "token" else e.data
            if isinstance(piece, str):
                streamed[e.run_id] = streamed.get(e.run_id, "") + piece
    console().print(run_tree(runs_, info.run_id, outputs, streamed))


@cli.command()
@click.argument("run_id", required=False)
@db_option
@json_option
@click.option("--thread", default=None, metavar="THREAD_ID",
              help="Show every run of one LangGraph thread (configurable.thread_id) "
                   "in order, with their graph steps, instead of RUN_ID.")
def show(run_id: str | None, db: str, as_json: bool, thread: str | None) -> None:
    """Show one run and its descendants as a tree with timings, statuses and outputs.

    RUN_ID may be a unique prefix or suffix (8+ characters) of the id. A LangGraph
    graph's run also shows its steps (nodes, state diff, interrupts).
    """
    if (run_id is None) == (thread is None):
        raise click.UsageError("give a RUN_ID or --thread THREAD_ID")
    if thread is not None:
        from runlog.cli.graph import show_thread
        with open_store(db) as store:
            show_thread(store, thread, as_json)
        return
    assert run_id is not None
    with open_store(db) as store:
        if as_json:
            info = store.run_info(run_id)
            _, subtree = store.subtree_ids(info.run_id)
            for r in store.trace_runs(info.trace_id):
                if r.run_id in subtree:
                    _write(orjson.dumps(_run_dict(r)) + b"\n")
            return
        _print_tree(store, run_id)
        from runlog.cli.graph import print_graph_steps
        print_graph_steps(store, run_id)


# ------------------------------------------------------------------------- replay


@cli.command()
@click.argument("run_id")
@db_option
@filter_options
@click.option("--raw", is_flag=True, help="Print the stored bytes of each event, one per line.")
@click.option("--view", type=click.Choice(["raw", "log", "events"]), default="raw",
              show_default=True,
              help="raw: stored events; log: astream_log patches; events: astream_events v2.")
@click.option("--no-diff", is_flag=True, help="log view: cumulative RunLog states.")
@click.option("--no-streamed-list", is_flag=True,
              help="log view: with_streamed_output_list=False.")
def replay(run_id: str, db: str, filter: Filter | None, raw: bool, view: str, no_diff: bool,
           no_streamed_list: bool) -> None:
    """Replay a recorded run (and its descendants) as JSON lines.

    Each line is the stored event with its seq first; --raw prints the stored bytes
    exactly. The log and events views print what LangChain's astream_log and
    astream_events would have streamed.
    """
    with open_store(db) as store:
        rid = store.resolve_run_id(run_id)
        if view == "raw":
            for e in store.replay(rid, filter=filter):
                _write(e.raw + b"\n" if raw else event_json_line(e))
            return
        options: dict[str, Any] = {}
        if view == "log":
            options = {"diff": not no_diff, "with_streamed_output_list": not no_streamed_list}
        from runlog.reducers import view_json_line

        for item in store.replay(rid, view=view, filter=filter, **options):  # type: ignore[arg-type]
            _write(view_json_line(item))


# ------------------------------------------------------------------------- verify


@cli.command()
@db_option
@click.option("--trace", "trace_id", help="Only this trace.")
@click.option("--file", "file", type=click.Path(dir_okay=False, allow_dash=True),
              help="Check this JSONL export file on its own instead of the store.")
def verify(db: str, trace_id: str | None, file: str | None) -> None:
    """Recompute every run's hash chain and report the first broken link.

    With --file, check an export made by `runlog export --format jsonl`: every line's
    hash chain, run boundaries, and the trailer (a truncated file is reported).
    """
    from runlog.exporters import FileReport, verify_jsonl

    report: runlog.VerifyReport | FileReport
    if file is not None:
        report = verify_jsonl(file)
    else:
        with open_store(db) as store:
            report = store.verify(trace_id=trace_id)
    if report.ok:
        console().print(f"[green]ok[/]: {report.events} events in {report.runs} runs verify")
        return
    console(stderr=True).print(f"[red]broken[/]: {report.first_error}")
    raise SystemExit(1)

