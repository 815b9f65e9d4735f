"""``Event`` keeps its behaviour now that it is made with three slot stores (the parse
cache left unset until first read) and its ``seq``/``raw``/``digest`` are C-level
getters: every field as parsed from the bytes, equality and hash by ``(seq, raw)``,
immutability, and copies and pickles that parse like the original."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runlog import codec
from runlog.errors import EncodingError
from runlog.events import Event, encode_run_fields, envelope_header, make_envelope

_FIELDS = ("seq", "raw", "digest", "envelope", "kind", "run_id", "parent_id", "trace_id",
           "name", "run_type", "tags", "metadata", "time_us", "time", "channel", "data",
           "error", "inputs", "has_inputs")
_TEXT = st.text(min_size=1, max_size=8).filter(lambda t: t.encode("utf-8", "surrogatepass")
                                               == t.encode("utf-8", "replace"))
_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5)
                       | st.binary(max_size=4),
                       lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                       max_leaves=8)


@st.composite
def _events(draw: st.DrawFn) -> tuple[int, bytes, bytes | None]:
    fields = encode_run_fields(draw(_TEXT), draw(_TEXT), draw(st.lists(_TEXT, max_size=2)),
                               draw(st.dictionaries(_TEXT, _VALUES, max_size=2)))
    header = envelope_header(run_id=draw(_TEXT), parent_id=draw(st.none() | _TEXT),
                             trace_id=draw(_TEXT), fields=fields)
    kind = draw(st.sampled_from(["start", "stream", "end"]))
    raw = make_envelope(
        kind, header, draw(st.integers(0, 2**53)), codec.encode(draw(_VALUES)),
        channel=draw(st.sampled_from([None, "output", "token", "custom"]))
        if kind == "stream" else None,
        inputs=codec.encode(draw(_VALUES)) if kind == "end" and draw(st.booleans()) else None)
    return draw(st.integers(1, 2**62)), raw, draw(st.none() | st.binary(min_size=16,
                                                                        max_size=16))


def _expected(seq: int, raw: bytes, digest: bytes | None) -> dict[str, Any]:
    """Every public field of the event of these bytes, computed from the bytes."""
    env = codec.loads_plain(raw)
    return {"seq": seq, "raw": raw, "digest": digest, "envelope": env, "kind": env["kind"],
            "run_id": env["run_id"], "parent_id": env["parent_id"],
            "trace_id": env["trace_id"], "name": env["name"], "run_type": env["run_type"],
            "tags": tuple(env["tags"]), "metadata": codec.untag(env["metadata"]),
            "time_us": env["time"], "time": Event(seq, raw).time,
            "channel": env.get("channel", "output") if env["kind"] == "stream" else None,
            "data": codec.untag(env["data"]), "error": None,
            "inputs": codec.untag(env.get("inputs")), "has_inputs": "inputs" in env}


def _fields(e: Event) -> dict[str, Any]:
    return {name: getattr(e, name) for name in _FIELDS}


@given(_events())
def test_every_field_is_the_one_the_bytes_hold(event: tuple[int, bytes, bytes | None]) -> None:
    """Made as a store makes it (positional, from C through ``starmap``) or by keyword,
    an event's fields are those parsed from its bytes, the same on every read."""
    seq, raw, digest = event
    want = _expected(seq, raw, digest)
    for e in (Event(seq, raw, digest), Event(seq=seq, raw=raw, digest=digest)):
        assert e.raw is raw
        assert e.seq == seq
        assert e.digest is digest
        assert _fields(e) == want
        assert _fields(e) == want  # the cached parse
        assert e.envelope is e.envelope


@given(_events(), st.binary(min_size=16, max_size=16))
def test_equality_and_hash_are_by_seq_and_bytes(event: tuple[int, bytes, bytes | None],
                                                other_digest: bytes) -> None:
    """Two events are equal when seq and bytes are, whatever their digests and whether
    either was parsed; an event equals no other kind of object."""
    seq, raw, digest = event
    a, b = Event(seq, raw, digest), Event(seq, raw, other_digest)
    _ = b.data
    assert a == b
    assert hash(a) == hash(b)
    assert not a.__ne__(b)
    assert a != Event(seq + 1, raw)
    assert a != Event(seq, raw + b" ")
    assert a != (seq, raw, digest)
    assert a != raw
    with pytest.raises(TypeError):
        _ = a < b  # type: ignore[operator]


@given(_events())
def test_copies_and_pickles_parse_like_the_original(event: tuple[int, bytes, bytes | None]
                                                    ) -> None:
    """Before and after its first parse, an event's copy, deep copy and pickle are equal
    to it with the same fields (an unparsed one's pickle used to carry the cache's
    sentinel, so its ``data`` was a bare ``object()``)."""
    e = Event(*event)
    want = _expected(*event)
    for _ in range(2):
        for c in (copy.copy(e), copy.deepcopy(e), pickle.loads(pickle.dumps(e))):
            assert type(c) is Event
            assert c == e
            assert _fields(c) == want
        _ = e.data  # then again, parsed


def test_every_field_is_read_only() -> None:
    """Assigning or deleting any field, or a new attribute, raises AttributeError."""
    e = Event(3, make_envelope("stream", b'"run_id":"r"', 1, b"1"), b"d" * 16)
    for name in (*_FIELDS, "other"):
        with pytest.raises(AttributeError):
            setattr(e, name, 1)
        if name != "other":
            with pytest.raises(AttributeError):
                delattr(e, name)
    assert e.seq == 3
    assert e.digest == b"d" * 16


def test_bytes_that_are_no_envelope_fail_at_each_parse() -> None:
    """The parse cache is only set by a parse that succeeds: every read of a field of
    bytes that are no envelope raises, and ``repr`` falls back to the bytes."""
    e = Event(7, b'["not", "an", "envelope"]')
    for _ in range(2):
        with pytest.raises(EncodingError, match="event 7 is not a runlog envelope"):
            _ = e.kind
        with pytest.raises(EncodingError):
            _ = e.data
    assert repr(e) == "Event(seq=7, raw=b'[\"not\", \"an\", \"envelope\"]')"
    for name in ("seq", "raw", "digest"):
        assert getattr(Event, name).__doc__
