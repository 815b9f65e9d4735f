"""Rules both views share: run-type mapping, output standardisation, chunk factories."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from runlog import codec

__all__ = [
    "LLM_TYPES",
    "ChunkFactory",
    "diff_key",
    "fresh",
    "inheritable_tags",
    "is_placeholder",
    "log_final_output",
    "log_type",
    "token_chunk",
]

LLM_TYPES = frozenset({"llm", "chat_model"})

ChunkFactory = Callable[[str, str], Any]
"""``factory(run_type, token)``: the chunk a token event stands for when the model
reported no chunk object. LangChain builds ``AIMessageChunk(content=token)`` (chat
models) or ``GenerationChunk(text=token)`` (LLMs); the core, which does not import
LangChain, uses the token string itself, and the adapter passes LangChain's."""

_STRUCTURAL_TAG = re.compile(r"(seq:step:\d+|map:key:.*)\Z")


def token_chunk(run_type: str, token: str) -> Any:
    """The default :data:`ChunkFactory`: the token itself."""
    return token


def log_type(run_type: str) -> str:
    """The type a run has in the log view: LangChain's tracer records chat models as llm."""
    return "llm" if run_type == "chat_model" else run_type


def is_placeholder(inputs: Any) -> bool:
    """LangChain's "input not known yet" marker: a start input of exactly ``{"input": ""}``."""
    return type(inputs) is dict and inputs == {"input": ""}


def inheritable_tags(tags: tuple[str, ...]) -> list[str]:
    """A run's tags without the structural ones LangChain adds with ``inherit=False``.

    Custom events carry only the dispatching run's inheritable tags; ``seq:step:N``
    and ``map:key:K`` are the only local tags LangChain adds itself.
    """
    return [t for t in tags if not _STRUCTURAL_TAG.match(t)]


def log_final_output(run_type: str, outputs: Any, failed: bool) -> Any:
    """The ``final_output`` a sub-run gets in the log view (spec 2.2 table).

    LangChain's tracer wraps non-dict chain outputs as ``{"output": value}``, unwraps a
    prompt's ``{"output": PromptValue}``, keeps an LLM's ``LLMResult`` dict, stores a
    retriever's documents under ``"documents"`` and a tool's result under ``"output"``.
    A failed run never got outputs (``{}``) unless it is a model that reported a
    partial result with its error.
    """
    if failed and (run_type not in LLM_TYPES or outputs is None):
        return {}
    if run_type == "tool":
        return {"output": outputs}
    if run_type == "retriever":
        return outputs if isinstance(outputs, dict) else {"documents": outputs}
    std = outputs if isinstance(outputs, dict) else {"output": outputs}
    if run_type == "prompt" and "output" in std:
        return std["output"]
    if type(std) is not dict:  # LangChain's load() rebuilds plain dicts
        std = dict(std)
    return std


def fresh(value: Any) -> Any:
    """A private copy of a decoded value the view is going to accumulate or mutate."""
    t = type(value)
    if t is str or t is int or t is float or t is bool or value is None:
        return value
    return copy.deepcopy(value)


def diff_key(value: Any) -> bytes:
    """Equality key for leaf values in ``/final_output`` diffs (LangChain uses ``dumps``)."""
    return codec.encode(value, lossy=True)
