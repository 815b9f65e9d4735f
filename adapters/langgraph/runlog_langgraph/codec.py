"""Teach runlog's codec the LangGraph objects a graph's stream carries.

``Interrupt`` (in ``updates``/``values`` chunks), ``Send`` and ``Command`` (task inputs
and node outputs) are stored as tagged payloads of plain values and rebuilt by their own
constructors, so a replayed chunk is ``==`` to the live one. Registering is trust for
these three classes only (see docs/codec.md): their constructors store the given values
and run nothing else. :func:`register` runs when :mod:`runlog_langgraph` is imported.
"""

from __future__ import annotations

from typing import Any

from langgraph.types import Command, Interrupt, Send

from runlog import codec

__all__ = ["register"]

_done = False


def _enc_interrupt(i: Interrupt) -> Any:
    return {"value": i.value, "id": i.id, "response_schema": i.response_schema}


def _dec_interrupt(p: Any) -> Interrupt:
    return Interrupt(p["value"], p["id"], response_schema=p.get("response_schema"))


def _enc_send(s: Send) -> Any:
    return {"node": s.node, "arg": s.arg}


def _dec_send(p: Any) -> Send:
    return Send(p["node"], p["arg"])


def _enc_command(c: Command[Any]) -> Any:
    return {"graph": c.graph, "update": c.update, "resume": c.resume, "goto": c.goto}


def _dec_command(p: Any) -> Command[Any]:
    return Command(graph=p["graph"], update=p["update"], resume=p["resume"], goto=p["goto"])


def register() -> None:
    """Register the LangGraph types with the codec (idempotent)."""
    global _done
    if _done:
        return
    codec.register(Interrupt, "lg_interrupt", _enc_interrupt, _dec_interrupt)
    codec.register(Send, "lg_send", _enc_send, _dec_send)
    codec.register(Command, "lg_command", _enc_command, _dec_command)
    _done = True
