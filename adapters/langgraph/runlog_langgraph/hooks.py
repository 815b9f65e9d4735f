"""Wrap ``Pregel.stream``/``astream``/``stream_events``/``astream_events`` once, globally.

Every compiled graph (``StateGraph.compile()``, ``create_react_agent``,
``langchain.agents.create_agent``) is a ``Pregel``, and ``invoke``/``ainvoke``/
``batch``/``abatch`` and LangChain's ``astream_events`` all go through its
``stream``/``astream``. The wrappers do nothing but call LangGraph unless a
:class:`~runlog_langgraph.GraphRecorder` is active for the call (the innermost
``runlog_langgraph.record()`` block, or a ``GraphRecorder`` in the call's callbacks) and
the graph is an *outermost* one (not running as a node of another graph: those parts
reach the outer graph's stream with their namespace).

For an outermost graph the wrapper asks LangGraph for **every** stream mode (and
``tools``, see :data:`RECORDED_MODES`) with
``subgraphs=True``, stores each ``(namespace, mode, chunk)`` part on the graph's run,
and hands the application only what it asked for, shaped as LangGraph's own ``_output``
shapes it: a part is passed on when its mode is in the requested ``stream_mode`` and,
with ``subgraphs=False``, when its namespace is the root's (LangGraph drops subgraph
messages and custom writes then; the tests check this against LangGraph itself). The
graph's run id is fixed up front (``config["run_id"]``, kept when the caller set it)
so the parts can be put on the run LangChain's callbacks record.

Calls with ``version="v2"`` (typed ``StreamPart`` dicts) are recorded the same way:
LangGraph is asked for the same v1 parts, they are stored as for a v1 call, and the
application gets each one shaped as LangGraph's ``_output`` shapes a v2 part
(:func:`runlog_langgraph.replay.shape_v2`, with the graph's own state mappers);
``stream_events(version="v3")`` records the protocol events the caller's run stream
emits, with their ``seq``.
"""

from __future__ import annotations

import importlib.util
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any, get_args

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.runnables.config import ensure_config
from langgraph.pregel import Pregel
from langgraph.types import StreamMode
from runlog_langchain import current_recorder

from runlog.ids import uuid7
from runlog_langgraph.recorder import GraphRecorder, GraphStream
from runlog_langgraph.replay import shape_part, shape_v2

__all__ = ["ALL_MODES", "RECORDED_MODES", "install"]

ALL_MODES: list[str] = list(get_args(StreamMode))
"""Every stream mode of the installed LangGraph's ``StreamMode``."""

RECORDED_MODES: list[str] = ALL_MODES + [m for m in ("tools",) if m not in ALL_MODES
                                         and importlib.util.find_spec(
                                             "langgraph.pregel._tools") is not None]
"""What is recorded: every mode, and ``tools`` (tool-call lifecycle parts, which
LangGraph streams to v3 transformers such as ``create_agent``'s ``ToolCallTransformer``
though ``StreamMode`` does not list it)."""

_TASK_ID = "__pregel_task_id"  # langgraph._internal._constants.CONFIG_KEY_TASK_ID
_V3_INNER = "__pregel_stream_messages_v2"  # ..._constants.CONFIG_KEY_STREAM_MESSAGES_V2
_ORIG: dict[str, Any] = {}
Graph = Pregel[Any, Any, Any, Any]
_RECORDED_VERSIONS = ("v1", "v2")  # stream()/astream() output formats recorded


def _transformer_names(graph: Graph) -> list[str]:
    """The v3 stream transformers compiled into the graph (``compile(transformers=...)``,
    ``create_agent``'s), as ``module:qualname`` (``"?"`` for one that is no class): the
    replay derives v3 events with them only if it knows them (runlog_langgraph.v3derive)."""
    out: list[str] = []
    for f in getattr(graph, "stream_transformers", ()) or ():
        out.append(f"{f.__module__}:{f.__qualname__}" if isinstance(f, type) else "?")
    return out


def _v2_mappers(graph: Graph) -> tuple[Any, Any]:
    """The graph's own v2 coercions (a Pydantic/dataclass state schema's constructor,
    ``None`` for a TypedDict state), which LangGraph applies to v2 parts only."""
    return getattr(graph, "_output_mapper", None), getattr(graph, "_state_mapper", None)


def _recorder_for(config: Any) -> GraphRecorder | None:
    cbs = config.get("callbacks") if isinstance(config, dict) else None
    if isinstance(cbs, list):
        for h in cbs:
            if isinstance(h, GraphRecorder):
                return h
    elif isinstance(cbs, BaseCallbackManager):
        for h in cbs.handlers:
            if isinstance(h, GraphRecorder):
                return h
    rec = current_recorder()
    return rec if isinstance(rec, GraphRecorder) else None


def _outermost(config: Any) -> bool:
    """Not a node of another graph, and not the inner ``stream(version="v2")`` call of
    LangGraph's own ``stream_events(version="v3")`` (recorded as v3 events instead)."""
    try:
        conf = ensure_config(config).get("configurable") or {}
    except Exception:
        return False
    return _TASK_ID not in conf and not conf.get(_V3_INNER)


def _prepare(self: Graph, config: Any, stream_mode: Any, subgraphs: bool,
             version: str = "v1",
             ) -> tuple[GraphRecorder, dict[str, Any], GraphStream, Any] | None:
    rec = _recorder_for(config)
    if rec is None or not _outermost(config):
        return None
    cfg = dict(config or {})
    if cfg.get("run_id") is None:
        cfg["run_id"] = uuid7()
    run_id = cfg["run_id"] if isinstance(cfg["run_id"], uuid.UUID) else uuid.UUID(
        str(cfg["run_id"]))
    if stream_mode is None:
        stream_mode = self.stream_mode
    asked = list(stream_mode) if isinstance(stream_mode, list | tuple) else stream_mode
    call = {"stream_mode": asked, "stream_mode_is_list": isinstance(stream_mode, list),
            "subgraphs": bool(subgraphs), "modes": RECORDED_MODES, "graph": self.get_name(),
            "transformers": _transformer_names(self)}
    if version == "v2":
        call["version"] = "v2"
    return rec, cfg, GraphStream(rec, run_id, call), stream_mode


def _stream(self: Graph, input: Any, config: Any = None, *, stream_mode: Any = None,
            subgraphs: bool = False, version: str = "v1", **kwargs: Any) -> Iterator[Any]:
    prep = _prepare(self, config, stream_mode, subgraphs, version) \
        if version in _RECORDED_VERSIONS else None
    if prep is None:
        yield from _ORIG["stream"](self, input, config, stream_mode=stream_mode,
                                   subgraphs=subgraphs, version=version, **kwargs)
        return
    _rec, cfg, rs, mode = prep
    gen = _ORIG["stream"](self, input, cfg, stream_mode=list(RECORDED_MODES), subgraphs=True,
                          **kwargs)
    v2 = _v2_mappers(self) if version == "v2" else None
    try:
        for part in gen:
            rs.part(*part)
            if part[1] in mode and (subgraphs or not part[0]):
                yield shape_part(part, mode, subgraphs) if v2 is None else shape_v2(
                    part, *v2)
    finally:
        rs.flush()
        gen.close()


async def _astream(self: Graph, input: Any, config: Any = None, *, stream_mode: Any = None,
                   subgraphs: bool = False, version: str = "v1", **kwargs: Any
                   ) -> AsyncIterator[Any]:
    prep = _prepare(self, config, stream_mode, subgraphs, version) \
        if version in _RECORDED_VERSIONS else None
    if prep is None:
        agen = _ORIG["astream"](self, input, config, stream_mode=stream_mode,
                                subgraphs=subgraphs, version=version, **kwargs)
        try:
            async for item in agen:
                yield item
        finally:
            await agen.aclose()
        return
    _rec, cfg, rs, mode = prep
    agen = _ORIG["astream"](self, input, cfg, stream_mode=list(RECORDED_MODES), subgraphs=True,
                            **kwargs)
    v2 = _v2_mappers(self) if version == "v2" else None
    try:
        async for part in agen:
            rs.part(*part)
            if part[1] in mode and (subgraphs or not part[0]):
                yield shape_part(part, mode, subgraphs) if v2 is None else shape_v2(
                    part, *v2)
    finally:
        rs.flush()
        await agen.aclose()


def _attach_v3(run_stream: Any, rs: GraphStream) -> None:
    """Record every event entering the run stream's main log, then the held end."""
    try:
        log = run_stream._mux._events
        push, close, fail = log.push, log.close, log.fail
    except AttributeError as e:  # an unknown LangGraph: the v3 events are not recorded
        rs.rec.release(rs.run_id)
        rs.rec._failed("the v3 stream (unknown LangGraph run stream)", e)
        return

    def rec_push(event: Any) -> None:
        push(event)
        rs.v3(event)

    def rec_close() -> None:
        close()
        rs.rec.release(rs.run_id)

    def rec_fail(err: BaseException) -> None:
        fail(err)
        rs.rec.release(rs.run_id)

    log.push, log.close, log.fail = rec_push, rec_close, rec_fail
    # a run stream the application drops half-read is never closed: end the run when
    # it is collected, so it does not stay open (and turn "abandoned") in the log
    weakref.finalize(run_stream, rs.rec.release, rs.run_id)


def _v3_prepare(self: Graph, config: Any) -> tuple[dict[str, Any], GraphStream] | None:
    prep = _prepare(self, config, None, True)
    if prep is None:
        return None
    rec, cfg, rs, _mode = prep
    rs.call = {"v3": True, "graph": self.get_name()}
    rec.hold_end(rs.run_id)
    return cfg, rs


def _stream_events(self: Graph, input: Any, config: Any = None, *, version: str = "v2",
                   **kwargs: Any) -> Any:
    prep = _v3_prepare(self, config) if version == "v3" else None
    if prep is None:
        return _ORIG["stream_events"](self, input, config, version=version, **kwargs)
    cfg, rs = prep
    try:
        out = _ORIG["stream_events"](self, input, cfg, version=version, **kwargs)
    except BaseException:
        rs.rec.release(rs.run_id)
        raise
    _attach_v3(out, rs)
    return out


def _astream_events(self: Graph, input: Any, config: Any = None, *, version: str = "v2",
                    **kwargs: Any) -> Any:
    prep = _v3_prepare(self, config) if version == "v3" else None
    if prep is None:
        return _ORIG["astream_events"](self, input, config, version=version, **kwargs)
    cfg, rs = prep

    async def start() -> Any:
        try:
            out = await _ORIG["astream_events"](self, input, cfg, version=version, **kwargs)
        except BaseException:
            rs.rec.release(rs.run_id)
            raise
        _attach_v3(out, rs)
        return out

    return start()


def install() -> None:
    """Wrap the four ``Pregel`` methods (idempotent; runs on import)."""
    if _ORIG:
        return
    wrappers: dict[str, Any] = {"stream": _stream, "astream": _astream,
                                "stream_events": _stream_events,
                                "astream_events": _astream_events}
    for name, fn in wrappers.items():
        orig = getattr(Pregel, name)
        _ORIG[name] = orig
        fn.__doc__ = orig.__doc__
        fn.__wrapped__ = orig
        setattr(Pregel, name, fn)
