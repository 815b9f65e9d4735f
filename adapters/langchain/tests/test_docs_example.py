"""Record a RAG chain once, then test it offline against the recording.

This file is quoted verbatim in docs/langchain.md (a test checks that they agree).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import runlog_langchain
from langchain_core.documents import Document
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnablePassthrough

import runlog

QUESTION = "What do cats do?"
SYSTEM = "Answer from the context.\n{context}"


class KeywordRetriever(BaseRetriever):
    """Stands in for your vector store's retriever."""

    docs: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        word = query.split()[-2].lower()
        return [d for d in self.docs if word in d.page_content.lower()]


def build_rag(retriever: Runnable[str, list[Document]], model: Runnable[Any, Any],
              system: str = SYSTEM) -> Runnable[str, str]:
    """Your application's chain: retriever -> prompt -> chat model -> parser."""
    prompt = ChatPromptTemplate.from_messages([("system", system), ("human", "{question}")])

    def format_docs(docs: list[Document]) -> str:
        return "\n".join(d.page_content for d in docs)

    return ({"context": retriever | format_docs, "question": RunnablePassthrough()}
            | prompt | model | StrOutputParser())


def record_once(path: Path) -> str:
    """Run the chain once for real with recording on; return the recorded run's id.

    In a project this calls the real model and retriever, once, and the store file is
    committed next to the tests. Here LangChain's fake model plays the real one.
    """
    retriever = KeywordRetriever(docs=[Document(page_content="Cats purr."),
                                       Document(page_content="Dogs bark.")])
    model = GenericFakeChatModel(messages=iter([AIMessage("Cats purr when content.")]))
    with runlog.open(path) as store, runlog_langchain.record(store) as rec:
        build_rag(retriever, model).invoke(QUESTION)
    return rec.root_ids[0]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[runlog.Store, str]]:
    path = tmp_path_factory.mktemp("recordings") / "rag.db"
    run_id = record_once(path)
    with runlog.open(path, create=False) as store:
        yield store, run_id


def test_rag_answers_offline(recording: tuple[runlog.Store, str]) -> None:
    store, run_id = recording
    fx = runlog_langchain.replay_fixtures(store, run_id)
    chain = build_rag(fx.retriever(), fx.chat_model())  # real LangChain components
    assert chain.invoke(QUESTION) == "Cats purr when content."
    # streamed with the recorded chunking: one chunk per recorded token
    assert list(chain.stream(QUESTION)) == ["Cats", " ", "purr", " ", "when", " ",
                                            "content."]


def test_a_changed_prompt_is_caught(recording: tuple[runlog.Store, str]) -> None:
    store, run_id = recording
    fx = runlog_langchain.replay_fixtures(store, run_id)
    chain = build_rag(fx.retriever(), fx.chat_model(), system="Be terse.\n{context}")
    with pytest.raises(runlog_langchain.NotRecordedError, match="Be terse"):
        chain.invoke(QUESTION)
