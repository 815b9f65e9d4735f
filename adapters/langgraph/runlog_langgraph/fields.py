"""Where a stream part carries the graph's state (stored as patches, see recorder)."""

from __future__ import annotations

from typing import Any

__all__ = ["get_field", "set_field", "state_field"]


def state_field(mode: str, chunk: Any) -> tuple[str, ...] | None:
    """The path of the state inside a part of ``mode``, or ``None`` when it has none.

    ``()`` is the whole chunk (``values``); ``("values",)`` a checkpoint's state;
    ``("input",)`` a task's input; ``("payload", ...)`` the same inside ``debug``.
    """
    if mode == "values":
        return ()
    if type(chunk) is not dict:
        return None
    if mode == "checkpoints":
        return ("values",) if "values" in chunk else None
    if mode == "tasks":
        return ("input",) if "input" in chunk else None
    if mode == "debug":
        payload = chunk.get("payload")
        if type(payload) is dict:
            for key in ("values", "input"):
                if key in payload:
                    return ("payload", key)
    return None


def get_field(chunk: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        chunk = chunk[key]
    return chunk


def set_field(chunk: Any, path: tuple[str, ...], value: Any) -> Any:
    """A copy of ``chunk`` with ``value`` at ``path`` (dicts along it are copied, not
    changed: the chunk is the application's)."""
    if not path:
        return value
    out = dict(chunk)
    out[path[0]] = set_field(chunk[path[0]], path[1:], value)
    return out
