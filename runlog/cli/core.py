"""Core commands: demo, runs, show, replay, verify."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
import orjson

import runlog
from runlog import content
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
def demo(db: str, delay: float, use_langchain: bool) -> None:
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
    console().print(run_tree(runs_, info.run_id, outputs, streamed, inputs=inputs,
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
@click.argument("run_id")
@db_option
@json_option
@click.option("--full", is_flag=True,
              help="Show inputs and outputs whole, on several lines (default: one line "
                   "of 120 characters each).")
@click.option("--raw", is_flag=True,
              help="Show values as stored (the codec's JSON), not as readable messages, "
                   "documents and prompts.")
def show(run_id: str, db: str, as_json: bool, full: bool, raw: bool) -> None:
    """Show one run and its descendants as a tree with timings, statuses and outputs.

    LangChain values are shown as what they are: chat messages (role, content, tool
    calls, token usage), prompts, retrieved documents. --raw shows the stored JSON;
    --json prints one JSON object per run (the run and its descendants, in start
    order) with inputs, outputs, error, metadata, streamed text, duration, token usage
    and children, values as stored.

    RUN_ID may be a unique prefix or suffix (8+ characters) of the id.
    """
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

