"""Core commands: demo, runs, show, replay, verify."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.markup import escape

import runlog
from runlog import content
from runlog.api import Store
from runlog.cli import cli
from runlog.cli.options import (
    TIME_FORMATS,
    TimeParam,
    db_option,
    filter_options,
    json_option,
    option_error,
    plural,
    resolve_trace_id,
    say,
)
from runlog.cli.render import (
    console,
    event_json_line,
    run_tree,
    runs_table,
)
from runlog.errors import StoreNotFoundError
from runlog.filters import Filter


def open_store(db: str, *, create: bool = False, flag: str = "--db") -> Store:
    """Open the store for a command; read-only commands never create a file.

    ``flag`` is the option that named the store (``--db-b``, ``--from``): a store
    that is not there is reported against it, not against ``--db``.
    """
    try:
        return runlog.open(db, create=create)
    except StoreNotFoundError as e:
        if flag == "--db":
            raise
        raise option_error(flag, str(e).replace("pass --db", f"pass {flag}")) from None


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
@click.option("--delay", type=click.FloatRange(min=0), default=0.03, show_default=True,
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
            before = lc_store.last_seq()
            try:
                run_demo(lc_store, delay=delay, out=out)
            except KeyboardInterrupt:
                _demo_interrupted(lc_store, db, before)
        return
    store = runlog.open(db)
    try:
        out.print(f"[bold]Recording a RAG pipeline into[/] {store.location}\n")
        out.print("[dim]streaming tokens from FakeChatModel:[/]")

        def echo(tok: str) -> None:
            sys.stdout.write(tok)
            sys.stdout.flush()

        before = store.last_seq()
        try:
            root_id = record_demo(store, delay=delay, echo=echo)
        except KeyboardInterrupt:
            _demo_interrupted(store, db, before)
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


def _demo_interrupted(store: Store, db: str, before: int) -> None:
    """Ctrl-C during the demo: the run so far is recorded (its open steps as errors).

    ``before`` is the store's last seq when the demo began: only a root started after
    it is the demo's.
    """
    sys.stdout.write("\n")
    sys.stdout.flush()
    try:
        store.flush(timeout=5)
        roots = [r for r in store.runs(roots_only=True, limit=1) if r.start_seq > before]
    except Exception:  # nothing more to say than that it stopped
        roots = []
    if roots:
        r = roots[0]
        events = sum(t.event_count for t in store.trace_runs(r.trace_id))
        say(escape(f"runlog demo: interrupted; what ran so far is recorded as run "
                   f"{r.run_id} ({plural(events, 'event')}, status {r.status}): runlog show "
                   f"{r.run_id} --db {db}"), err=True)
    else:
        say("runlog demo: interrupted before anything was recorded", err=True)
    raise SystemExit(130)


# ------------------------------------------------------------------------- runs


@cli.command()
@db_option
@json_option
@click.option("--format", "fmt", type=click.Choice(["table", "tsv", "json"]), default=None,
              help="table: aligned columns (the default on a terminal; a pipe gets the "
                   "full ids unwrapped); tsv: tab-separated with a header line; json: "
                   "JSON lines (same as --json).")
@filter_options
@click.option("--all", "all_runs", is_flag=True, help="Include child runs, not only roots.")
@click.option("--status", type=click.Choice(["running", "ok", "error", "abandoned"]),
              help="Only runs with this status.")
@click.option("--since", type=TimeParam(), default=None,
              help=f"Only runs started at or after this time: {TIME_FORMATS}.")
@click.option("--until", type=TimeParam(), default=None,
              help="Only runs started before this time (same formats as --since).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many (the newest); says so when more exist.")
def runs(db: str, as_json: bool, fmt: str | None, filter: Filter | None, all_runs: bool,
         status: str | None, since: dt.datetime | None, until: dt.datetime | None,
         limit: int) -> None:
    """List recorded runs, newest first (root runs unless --all or a filter is given).

    For a root run the events column counts its whole trace (the root and every
    descendant); with --all or a filter, where children are listed too, it counts
    each run's own events (the column is then named "own events").

    \b
    Examples:
        runlog runs --since 2h                     (started in the last two hours)
        runlog runs --since 2026-12-01 --until 2026-12-02 --status error
        runlog runs --format tsv | cut -f1         (the ids, for scripts)
    """
    if as_json:
        if fmt not in (None, "json"):
            raise click.UsageError("--json is --format json; give one of them")
        fmt = "json"
    if fmt is None:
        fmt = "table"
    roots_only = not all_runs and filter is None
    with open_store(db) as store:
        if since is None and until is None:
            found = store.runs(roots_only=roots_only, status=status, filter=filter,
                               limit=limit + 1)
        else:  # the runs projection has no time index: the times are compared here
            found = []
            for r in store.runs(roots_only=roots_only, status=status, filter=filter):
                if (since is None or r.start_time >= since) and (
                        until is None or r.start_time < until):
                    found.append(r)
                    if len(found) > limit:
                        break
        more = len(found) > limit
        found = found[:limit]
        totals = _trace_totals(store, found) if roots_only else None
        if fmt == "json":
            for r in found:
                row = _run_dict(r)
                if totals is not None:
                    row["trace_event_count"] = totals[r.run_id]
                _write(orjson.dumps(row) + b"\n")
        elif fmt == "tsv":
            _write(_runs_tsv(found, totals))
        elif found:
            _print_runs_table(found, totals)
    selected = (filter is not None or status is not None or since is not None
                or until is not None)
    if not found:
        if selected:
            say("no runs match", err=fmt != "table")
        else:
            say(escape(f"no runs in {db} yet; record some (try `runlog demo --db {db}`)"),
                err=fmt != "table")
    elif more:
        say(f"[dim]showing the newest {plural(limit, 'run')}; more exist: raise --limit "
            "or narrow with --since/--until[/]", err=True)


def _trace_totals(store: Store, roots: list[runlog.RunInfo]) -> dict[str, int]:
    """Each root's whole-trace event count (one read of the trace's runs per root)."""
    return {r.run_id: sum(t.event_count for t in store.trace_runs(r.trace_id))
            for r in roots}


_RUN_COLUMNS = ("run id", "name", "type", "status", "started", "duration")


def _runs_tsv(found: list[runlog.RunInfo], totals: dict[str, int] | None) -> bytes:
    """Tab-separated rows with a header; tabs and newlines in names become spaces."""
    def cell(v: str) -> str:
        return v.replace("\t", " ").replace("\n", " ").replace("\r", " ")

    header = [c.replace(" ", "_") for c in _RUN_COLUMNS]
    header += ["trace_events" if totals is not None else "own_events", "tags", "trace_id"]
    lines = ["\t".join(header)]
    for r in found:
        count = totals[r.run_id] if totals is not None else r.event_count
        lines.append("\t".join(cell(v) for v in (
            r.run_id, r.name, r.run_type, r.status, r.start_time.isoformat(),
            f"{r.duration.total_seconds():.6f}" if r.duration is not None else "",
            str(count), ",".join(r.tags), r.trace_id)))
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


def _print_runs_table(found: list[runlog.RunInfo], totals: dict[str, int] | None) -> None:
    """The table on stdout: on a pipe as wide as its rows (each run one line ``grep``
    finds, ids whole); on a terminal, fitted to its width (see ``runs_table``)."""
    out = console()
    if not out.is_terminal:
        out.width = 100_000
    out.print(runs_table(found, totals, width=out.width if out.is_terminal else None))


def _run_dict(r: runlog.RunInfo) -> dict[str, Any]:
    return {
        "run_id": r.run_id, "trace_id": r.trace_id, "parent_id": r.parent_id, "name": r.name,
        "run_type": r.run_type, "status": r.status, "start_time": r.start_time.isoformat(),
        "end_time": r.end_time.isoformat() if r.end_time else None,
        "event_count": r.event_count, "tags": list(r.tags),
        "error": r.error.to_dict() if r.error else None,
    }


# ------------------------------------------------------------------------- show


def _show_values(value: Any, *, raw: bool, full: bool, usage: dict[str, int] | None = None
                 ) -> str:
    """A stored value as ``show`` prints it: readable (:mod:`runlog.content`) or, with
    ``--raw``, the stored JSON; one line unless ``--full``."""
    if raw:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 if full else 0).decode()
    node = content.readable(value)
    text = content.to_text(node) if full else content.preview(node, None)
    if usage and not full:  # to_text already shows each message's usage
        text += f" [usage: {content.usage_text(usage)}]"
    return text


def _trace_content(store: Store, run_id: str) -> tuple[runlog.RunInfo, list[runlog.RunInfo],
                                                      dict[str, dict[str, Any]]]:
    """The run, its subtree's runs (start order) and each run's stored values.

    Values are read from the stored JSON (``Event.envelope``, tags not decoded), so a
    forged ``$rl:`` tag is shown, never revived: ``inputs``, ``outputs`` (absent while
    running), ``streamed`` text (string tokens and output chunks) and ``chunks`` (other
    output chunks).
    """
    info = store.run_info(run_id)
    _, subtree = store.subtree_ids(info.run_id)
    runs_ = [r for r in store.trace_runs(info.trace_id) if r.run_id in subtree]
    values: dict[str, dict[str, Any]] = {r.run_id: {} for r in runs_}
    for e in store.events(info.run_id, descendants=True):
        env, v = e.envelope, values.setdefault(e.run_id, {})
        if e.kind == "start":
            v["inputs"] = env.get("data")
        elif e.kind == "end":
            v["outputs"] = env.get("data")
            if "inputs" in env:
                v["inputs"] = env["inputs"]
        elif e.channel in ("token", "output"):
            data = env.get("data")
            piece = data.get("token") if e.channel == "token" and type(data) is dict else data
            if isinstance(piece, str):
                v["streamed"] = v.get("streamed", "") + piece
            elif e.channel == "output":
                v.setdefault("chunks", []).append(data)
    return info, runs_, values


def _print_tree(store: Store, run_id: str, *, full: bool = False, raw: bool = False) -> None:
    info, runs_, values = _trace_content(store, run_id)
    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    streamed: dict[str, str] = {}
    for r in runs_:
        v = values[r.run_id]
        use = content.usage(v["outputs"]) if r.run_type in _MODEL_TYPES and "outputs" in v \
            else None
        if v.get("inputs") not in (None, "", {}) and (full or r.run_type in _MODEL_TYPES):
            inputs[r.run_id] = _show_values(v["inputs"], raw=raw, full=full)
        if v.get("outputs") is not None:
            outputs[r.run_id] = _show_values(v["outputs"], raw=raw, full=full, usage=use)
        if v.get("streamed"):
            streamed[r.run_id] = v["streamed"]
    out = console()
    if not out.is_terminal:  # a pipe or a file: each value on its own lines, unwrapped
        out = Console(highlight=False, soft_wrap=False, width=1_000_000)
    out.print(run_tree(runs_, info.run_id, outputs, streamed, inputs=inputs,
                       limit=None if full else 120))


_MODEL_TYPES = ("llm", "chat_model")


def _show_dict(r: runlog.RunInfo, v: dict[str, Any], children: list[str]) -> dict[str, Any]:
    """One run for ``show --json``: its ``runs --json`` fields and all it holds, the
    values as stored (the codec's tagged JSON, lossless; never decoded)."""
    from runlog.store.base import StoredMetadata

    meta = r.metadata
    return {
        **_run_dict(r),
        "duration_ms": r.duration.total_seconds() * 1000 if r.duration is not None else None,
        "metadata": orjson.Fragment(meta.raw) if isinstance(meta, StoredMetadata)
        else runlog.codec.loads_plain(runlog.codec.encode(dict(meta), lossy=True)),
        "inputs": v.get("inputs"),
        "outputs": v.get("outputs"),
        "streamed": v.get("streamed", ""),
        "output_chunks": v.get("chunks", []),
        "usage": content.usage(v["outputs"]) if "outputs" in v else {},
        "children": children,
    }


@cli.command()
@click.argument("run_id", required=False)
@db_option
@json_option
@click.option("--full", is_flag=True,
              help="Show inputs and outputs whole, on several lines (default: one line "
                   "of 120 characters each).")
@click.option("--raw", is_flag=True,
              help="Show values as stored (the codec's JSON), not as readable messages, "
                   "documents and prompts.")
@click.option("--thread", default=None, metavar="THREAD_ID",
              help="Show every run of one LangGraph thread (configurable.thread_id) "
                   "in order, with their graph steps, instead of RUN_ID.")
def show(run_id: str | None, db: str, as_json: bool, full: bool, raw: bool,
         thread: str | None) -> None:
    """Show one run and its descendants as a tree with timings, statuses and outputs.

    LangChain values are shown as what they are: chat messages (role, content, tool
    calls, token usage), prompts, retrieved documents. --raw shows the stored JSON;
    --json prints one JSON object per run (the run and its descendants, in start
    order) with inputs, outputs, error, metadata, streamed text, duration, token usage
    and children, values as stored.

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
            _info, runs_, values = _trace_content(store, run_id)
            children: dict[str | None, list[str]] = {}
            for r in runs_:
                children.setdefault(r.parent_id, []).append(r.run_id)
            for r in runs_:
                _write(orjson.dumps(_show_dict(r, values[r.run_id],
                                               children.get(r.run_id, []))) + b"\n")
            return
        _print_tree(store, run_id, full=full, raw=raw)
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
@click.option("--trace", "trace_id", metavar="TRACE_ID",
              help="Only this trace (its id, or a unique prefix/suffix of 8+ characters).")
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
        if file != "-" and not Path(file).exists():  # not "broken": there is nothing to check
            raise option_error("--file", f"no file {file}")
        report = verify_jsonl(file)
    else:
        with open_store(db) as store:
            if trace_id is not None:
                trace_id = resolve_trace_id(store, trace_id)
            report = store.verify(trace_id=trace_id)
    if report.ok:
        pruned = getattr(report, "pruned_events", 0)  # (a file report has none)
        say(f"[green]ok[/]: {plural(report.events, 'event')} in {plural(report.runs, 'run')} "
            "verified" + (f" ({plural(pruned, 'event')} removed by recorded prunes)"
                          if pruned else ""), err=False)
        return
    say(f"[red]broken[/]: {escape(report.first_error or '')}", err=True)
    raise SystemExit(1)

