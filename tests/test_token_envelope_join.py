"""``Run.token`` and ``Run.stream`` assemble their envelopes with one ``bytes.join`` and
encode a ``str`` token with orjson directly: the bytes must be those of the generic
path, ``make_envelope`` around the codec's encoding, for every token and chunk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runlog
from runlog import codec
from runlog.events import TIME_MAX, TIME_MIN, make_envelope
from runlog.store.base import Pending
from runlog.testing.strategies import json_values

# any code point, lone surrogates included (the codec tags those; orjson refuses them)
_texts = st.text(st.characters(blacklist_categories=()), max_size=12)
_tokens = st.one_of(_texts, st.lists(st.one_of(_texts, st.dictionaries(_texts, _texts,
                                                                       max_size=2)),
                                     max_size=3))


def _queued(tmp_path: Path, record: Any) -> tuple[runlog.Run, list[Pending]]:
    store = runlog.open(tmp_path / "t.db")
    queued: list[Pending] = []
    try:
        run = store.start_run("model", "llm")
        store.writer.put = queued.append  # type: ignore[method-assign]
        record(run)
    finally:
        store.writer.__dict__.pop("put", None)
        store.close()
    return run, queued


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=_tokens, chunk=st.one_of(st.none(), json_values()),
       time_us=st.integers(min_value=TIME_MIN, max_value=TIME_MAX))
def test_a_token_envelope_is_the_generic_one(tmp_path: Path, token: Any, chunk: Any,
                                            time_us: int) -> None:
    run, queued = _queued(tmp_path, lambda r: r.token(token, chunk, time=time_us))
    (p,) = queued
    data = b'{"token":%b,"chunk":%b}' % (codec.encode(token),
                                        b"null" if chunk is None else codec.encode(chunk))
    assert p.raw == make_envelope("stream", run._header, time_us, data, channel="token")
    assert p.parts is not None
    assert p.parts[1] == codec.encode(token)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunk=json_values(), time_us=st.integers(min_value=TIME_MIN, max_value=TIME_MAX))
def test_a_stream_envelope_is_the_generic_one(tmp_path: Path, chunk: Any,
                                             time_us: int) -> None:
    run, queued = _queued(tmp_path, lambda r: r.stream(chunk, time=time_us))
    (p,) = queued
    assert p.raw == make_envelope("stream", run._header, time_us, codec.encode(chunk))
