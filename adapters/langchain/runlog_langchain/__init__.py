"""runlog-langchain: record LangChain runs into a runlog store, replay them as LangChain.

``Recorder(store)`` is a LangChain callback handler that records every run LangChain
reports; ``astream_log`` / ``astream_events`` (and the sync twins ``stream_log`` /
``stream_events``) replay a recorded run as the real LangChain objects LangChain's own
methods yielded live. The event mapping is documented in ``docs/langchain-mapping.md``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__: list[str] = []
