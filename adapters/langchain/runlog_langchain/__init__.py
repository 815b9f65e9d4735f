"""runlog-langchain: record LangChain runs into a runlog store, replay them as LangChain.

``Recorder(store)`` is a LangChain callback handler that records every run LangChain
reports; ``astream_log`` / ``astream_events`` (and the sync twins ``stream_log`` /
``stream_events``) replay a recorded run as the real LangChain objects LangChain's own
methods yielded live. The event mapping is documented in ``docs/langchain-mapping.md``.
"""

from __future__ import annotations

from runlog_langchain.codec import register as _register_codec

_register_codec()

from runlog_langchain.context import arecord, current_recorder, record  # noqa: E402
from runlog_langchain.fixtures import (  # noqa: E402
    NotRecordedError,
    Recordings,
    ReplayChatModel,
    ReplayLLM,
    ReplayRetriever,
    ReplayTool,
    replay_fixtures,
    replay_model,
)
from runlog_langchain.recorder import Recorder, llm_result_outputs  # noqa: E402
from runlog_langchain.replay import (  # noqa: E402
    astream_events,
    astream_log,
    stream_events,
    stream_log,
)

__version__ = "0.1.0"

__all__ = [
    "NotRecordedError",
    "Recorder",
    "Recordings",
    "ReplayChatModel",
    "ReplayLLM",
    "ReplayRetriever",
    "ReplayTool",
    "arecord",
    "astream_events",
    "astream_log",
    "current_recorder",
    "llm_result_outputs",
    "record",
    "replay_fixtures",
    "replay_model",
    "stream_events",
    "stream_log",
]
