"""Hostile stored values: decoding runs no code the reader did not trust.

Forged tags reach a reader through a store or a JSONL file someone else wrote (the
digest chain is unkeyed, so a forger recomputes it); every test here failed on e0af83e.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import sqlite3
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import runlog
from runlog import codec
from runlog.cli import cli
from runlog.errors import EncodingError

CALLS: list[tuple[str, tuple[Any, ...]]] = []


class SneakyError(Exception):
    """An exception whose constructor has a side effect, as a forger would look for."""

    def __init__(self, *args: Any) -> None:
        CALLS.append(("SneakyError", args))
        super().__init__(*args)


@dataclasses.dataclass
class SneakyData:
    x: int

    def __post_init__(self) -> None:
        CALLS.append(("SneakyData", (self.x,)))


class _SneakyBase(NamedTuple):
    a: int


class SneakyTuple(_SneakyBase):
    """A namedtuple subclass whose construction has a side effect."""

    def __new__(cls, *args: Any) -> SneakyTuple:
        CALLS.append(("SneakyTuple", args))
        return super().__new__(cls, *args)


class Mood(enum.Enum):
    HAPPY = "happy"

    @classmethod
    def _missing_(cls, value: object) -> Mood:
        CALLS.append(("Mood._missing_", (value,)))
        return cls.HAPPY


def qual(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


@pytest.fixture(autouse=True)
def _clear_calls() -> Iterator[None]:
    CALLS.clear()
    yield
    CALLS.clear()


def forged(tmp_path: Path) -> dict[str, Any]:
    """Payloads that revived the class named (truncating or creating files) on e0af83e."""
    victim, ran = tmp_path / "victim.txt", tmp_path / "ran.txt"
    victim.write_text("precious")
    return {
        "fileio": {"$rl:exception": ["io:FileIO", [str(victim), "w"], ""]},
        "popen": {"$rl:exception": ["subprocess:Popen", [["touch", str(ran)]], ""]},
        "popen_nt": {"$rl:namedtuple": ["subprocess:Popen", [["touch", str(ran)]]]},
        "popen_dc": {"$rl:dataclass": ["subprocess:Popen", {"args": ["touch", str(ran)]}]},
        "popen_enum": {"$rl:enum": ["subprocess:Popen", ["touch", str(ran)]]},
        "sneaky": {"$rl:exception": [qual(SneakyError), ["boom"], "boom"]},
        "sneaky_dc": {"$rl:dataclass": [qual(SneakyData), {"x": 1}]},
        "sneaky_nt": {"$rl:namedtuple": [qual(SneakyTuple), [1]]},
        "missing": {"$rl:enum": [qual(Mood), "sad"]},
    }


def assert_untouched(tmp_path: Path) -> None:
    assert (tmp_path / "victim.txt").read_text() == "precious"
    assert not (tmp_path / "ran.txt").exists()
    assert CALLS == []


def assert_inert(metadata: Any, payloads: dict[str, Any]) -> None:
    for key, tagged in payloads.items():
        ((tag, payload),) = tagged.items()
        assert metadata[key] == codec.Opaque(tag, payload), key
        assert codec.encode(metadata[key]) == orjson.dumps(tagged)  # bytes kept exactly


def forge_sqlite_metadata(db: Path, metadata: dict[str, Any]) -> str:
    """Record one run, then rewrite its stored metadata, as a co-writer could."""
    with runlog.open(db) as store, store.run("victim", metadata={"m": "PLACEHOLDER"}) as run:
        run_id = run.id
    forged_json = orjson.dumps(metadata).decode()
    con = sqlite3.connect(db)
    with con:
        con.execute("DROP TRIGGER IF EXISTS events_no_update")
        con.execute("UPDATE runs SET metadata = ? WHERE run_id = ?", (forged_json, run_id))
        con.execute("UPDATE events SET raw = replace(raw, ?, ?) WHERE run_id = ?",
                    ('{"m":"PLACEHOLDER"}', forged_json, run_id))
    con.close()
    return run_id


@pytest.mark.usefixtures("wide_sqlite_layout")  # edits its columns
def test_forged_metadata_in_a_store_is_inert_for_every_reader(tmp_path: Path) -> None:
    """store.runs(), Event.metadata, `runlog runs` and `runlog show` construct nothing."""
    payloads = forged(tmp_path)
    db = tmp_path / "runs.db"
    run_id = forge_sqlite_metadata(db, payloads)
    with runlog.open(db) as store:
        (info,) = store.runs()
        assert_inert(info.metadata, payloads)
        (start,) = [e for e in store.events() if e.kind == "start"]
        assert_inert(start.metadata, payloads)
    runner = CliRunner()
    for args in (["runs", "--db", str(db)], ["runs", "--db", str(db), "--json"],
                 ["show", run_id, "--db", str(db)], ["show", run_id, "--db", str(db), "--json"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)
    assert_untouched(tmp_path)


def test_forged_tags_in_data_and_error_are_inert(tmp_path: Path) -> None:
    payloads = forged(tmp_path)
    raw_env = {"kind": "end", "data": payloads, "inputs": payloads,
               "error": {"type": payloads["popen"], "message": payloads["fileio"]}}
    event = runlog.Event(1, orjson.dumps(raw_env))
    assert_inert(event.data, payloads)
    assert_inert(event.inputs, payloads)
    assert event.error is not None
    assert event.error.type == orjson.dumps(payloads["popen"]).decode()  # text, not a call
    assert_untouched(tmp_path)


def test_a_module_getattr_is_never_asked(tmp_path: Path) -> None:
    """Resolving a class name reads module dicts only: a lazy-import __getattr__ never runs."""
    asked: list[str] = []
    spy = types.ModuleType("runlog_spy_module")
    spy.__getattr__ = lambda name: asked.append(name)  # type: ignore[method-assign]
    sys.modules[spy.__name__] = spy
    try:
        for tag in ("exception", "enum", "namedtuple", "dataclass", "pydantic"):
            raw = orjson.dumps({f"$rl:{tag}": ["runlog_spy_module:Lazy.Inner", [1], "1"]})
            assert isinstance(codec.decode(raw), codec.Opaque)
    finally:
        del sys.modules[spy.__name__]
    assert asked == []


def test_untrusted_classes_are_not_called_and_trusted_ones_are(tmp_path: Path) -> None:
    values = [SneakyError("boom"), SneakyData(1), SneakyTuple(1)]
    CALLS.clear()
    raws = [codec.encode(v) for v in values]
    for raw in raws:
        back = codec.decode(raw)
        assert isinstance(back, codec.Opaque)
        assert codec.encode(back) == raw
    assert CALLS == []
    for cls in (SneakyError, SneakyData, SneakyTuple):
        codec.trust(cls)
    try:
        back = [codec.decode(raw) for raw in raws]
        assert [type(b) for b in back] == [SneakyError, SneakyData, SneakyTuple]
        assert back[1] == values[1]
        assert back[2] == values[2]
        assert back[0].args == ("boom",)
        assert [name for name, _ in CALLS] == ["SneakyError", "SneakyData", "SneakyTuple"]
    finally:
        for cls in (SneakyError, SneakyData, SneakyTuple):
            codec._trusted.pop(qual(cls))


def test_builtin_exceptions_and_enum_members_revive_without_calling_code() -> None:
    for exc in (ValueError("v", 1), KeyError("k"), FileNotFoundError(2, "gone"),
                ExceptionGroup("g", [ValueError("x")])):
        back = codec.decode(codec.encode(exc))
        assert type(back) is type(exc)
        assert back.args[0] == exc.args[0]
        assert codec.encode(back) == codec.encode(exc)
    assert codec.decode(codec.encode(Mood.HAPPY)) is Mood.HAPPY
    assert CALLS == []  # a member is looked up, _missing_ never runs
    # a forged text or a class the builtins only alias stays inert, bytes kept
    for raw in (b'{"$rl:exception":["builtins:ValueError",["a"],"not a"]}',
                b'{"$rl:exception":["builtins:EnvironmentError",[],""]}',
                b'{"$rl:exception":["builtins:OSError",[2,"x"],"x"]}'):
        back = codec.decode(raw)
        assert isinstance(back, codec.Opaque)
        assert codec.encode(back) == raw


def test_malformed_payloads_decode_to_opaque_not_an_exception() -> None:
    for raw in (b'{"$rl:bytes":"%%%"}', b'{"$rl:int":"x"}', b'{"$rl:dict":{"a":1}}',
                b'{"$rl:dict":[[[1],2]]}', b'{"$rl:datetime":[1,2]}', b'{"$rl:time":5}',
                b'{"$rl:timedelta":"x"}', b'{"$rl:exception":"x"}', b'{"$rl:enum":[]}',
                b'{"$rl:opaque":7}', b'{"$rl:datetime":["2026-01-01T00:00:00",[0,90000,0],0]}'):
        back = codec.decode(raw)
        assert isinstance(back, codec.Opaque), raw
        assert codec.encode(back) == raw


def test_code_cannot_smuggle_a_tag_through_the_recorder(store: runlog.Store) -> None:
    """An Opaque the app makes is stored under $rl:opaque: no reader revives what it names."""
    smuggled = codec.Opaque("$rl:exception", ["builtins:ValueError", ["x"], "x"])
    hostile_dict = {"$rl:exception": ["builtins:ValueError", ["x"], "x"]}
    with store.run("r", metadata={"o": smuggled, "d": hostile_dict},
                   inputs=[smuggled]) as run:
        run.end({"o": smuggled})
    (info,) = store.runs()
    start, end = [e for e in store.events() if e.kind in ("start", "end")]
    for got in (info.metadata["o"], start.metadata["o"], start.data[0], end.data["o"]):
        assert type(got) is codec.Opaque
        assert got == smuggled
    assert start.metadata["d"] == hostile_dict
    assert b'"$rl:opaque"' in start.raw
    assert b'{"$rl:exception"' not in start.raw


def test_opaque_round_trips_byte_exact() -> None:
    made = codec.Opaque("$rl:whatever", {"n": math.nan, "t": (1,)})
    raw = codec.encode(made)
    assert raw == b'{"$rl:opaque":["$rl:whatever",{"n":{"$rl:float":"nan"},"t":{"$rl:tuple":[1]}}]}'
    assert codec.encode(codec.decode(raw)) == raw
    stored = b'{"$rl:future-tag":{"a":[1,{"$rl:float":"nan"}]}}'
    assert codec.encode(codec.decode(stored)) == stored


hostile_keys = st.sampled_from(["$rl:exception", "$rl:enum", "$rl:dict", "$rl:", "$rl:opaque",
                                "$rl:lc", "a", "\udc80", ""]) | st.text(max_size=4)
hostile = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(hostile_keys, inner, max_size=3)
        | st.builds(codec.Opaque, st.sampled_from(["$rl:exception", "$rl:enum", "x"]), inner)
        | st.tuples(inner)
    ),
    max_leaves=10,
)


@given(hostile)
def test_hostile_values_round_trip_and_reencode_identically(value: Any) -> None:
    raw = codec.encode(value)
    back = codec.decode(raw)
    assert codec.encode(back) == raw
    assert not _contains_revived(back)


def _contains_revived(v: Any) -> bool:
    if isinstance(v, BaseException | enum.Enum):
        return True
    if isinstance(v, dict):
        return any(_contains_revived(k) or _contains_revived(x) for k, x in v.items())
    if isinstance(v, list | tuple):
        return any(_contains_revived(x) for x in v)
    return False


tags = st.sampled_from(["exception", "enum", "namedtuple", "dataclass", "pydantic", "dict",
                        "tuple", "set", "float", "int", "str", "bytes", "datetime", "time",
                        "opaque", "repr", "unencodable", "lc", "nope"])
json_leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5)
forged_json = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=2)
        | st.builds(lambda t, p: {"$rl:" + t: p}, tags, inner)
        | st.builds(lambda t, m, p: {"$rl:" + t: [m, p, "x"]}, tags,
                    st.sampled_from(["io:FileIO", "subprocess:Popen", "os:system",
                                     "builtins:ValueError", "builtins:eval", qual(SneakyError)]),
                    inner)
    ),
    max_leaves=12,
)


@given(forged_json)
def test_forged_json_never_runs_code_and_settles_after_one_round(doc: Any) -> None:
    """Any stored JSON decodes without raising or calling user code; re-encoding it is
    then a fixed point of decode/encode."""
    back = codec.decode(orjson.dumps(doc))
    once = codec.encode(back)
    assert codec.encode(codec.decode(once)) == once
    assert CALLS == []


# -- every codec failure is an EncodingError; lossy=True never raises -----------------


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


def _self_containing() -> list[Any]:
    a: list[Any] = []
    a.append(a)
    return a


def _deep(n: int) -> list[Any]:
    v: list[Any] = []
    for _ in range(n):
        v = [v]
    return v


@pytest.mark.parametrize("value", [BadRepr(), BadStr(), _self_containing(), _deep(300),
                                   _deep(10_000), {"k": _self_containing()}],
                         ids=["repr", "str", "cycle", "deep300", "deep10000", "nested-cycle"])
def test_codec_failures_are_encoding_errors_and_lossy_never_raises(value: Any) -> None:
    with pytest.raises(EncodingError):
        codec.encode(value)
    raw = codec.encode(value, lossy=True)
    back = codec.decode(raw)
    marker = back["k"] if isinstance(back, dict) else back
    assert isinstance(marker, codec.Opaque)
    assert marker.tag in ("$rl:unencodable", "$rl:repr")
    assert codec.encode(back) == raw


def test_a_lone_surrogate_dict_key_is_kept() -> None:
    value = {"\ud800": 1, "ok": {"\udfff": [2]}}
    assert codec.decode(codec.encode(value)) == value


def test_failing_registered_encoder_is_an_encoding_error() -> None:
    class Boom:
        pass

    def enc(_: Any) -> Any:
        raise ValueError("encoder bug")

    codec.register(Boom, "test-boom", enc, lambda p: Boom())
    with pytest.raises(EncodingError, match="encoder bug"):
        codec.encode([Boom()])
    assert isinstance(codec.decode(codec.encode([Boom()], lossy=True))[0], codec.Opaque)


def test_failing_registered_decoder_gives_opaque() -> None:
    class Frail:
        pass

    def dec(_: Any) -> Any:
        raise KeyError("forged payload")

    codec.register(Frail, "test-frail", lambda f: 1, dec)
    raw = b'{"$rl:test-frail":{"x":1}}'
    assert codec.decode(raw) == codec.Opaque("$rl:test-frail", {"x": 1})
    assert codec.encode(codec.decode(raw)) == raw


def test_deep_forged_json_is_a_clear_error() -> None:
    raw = b'{"$rl:tuple":' + b"[" * 1000 + b"]" * 1000 + b"}"
    with pytest.raises(EncodingError, match="nested too deeply"):
        codec.decode(raw)


# -- time values keep fold, sub-second offsets and zone names ----------------------------


import datetime as dt  # noqa: E402

IST = dt.timezone(dt.timedelta(hours=5, minutes=30), "IST")
TINY = dt.timezone(dt.timedelta(microseconds=1))
NEG_TINY = dt.timezone(-dt.timedelta(microseconds=999_999))


@pytest.mark.parametrize("value", [
    dt.time(1, 2, fold=1),
    dt.time(1, 2, tzinfo=IST, fold=1),
    dt.time(1, 2, tzinfo=TINY),
    dt.time(1, 2, tzinfo=IST),
    dt.datetime(2026, 1, 1, tzinfo=TINY),
    dt.datetime(2026, 1, 1, tzinfo=NEG_TINY),
    dt.datetime(2026, 1, 1, tzinfo=IST, fold=1),
    dt.datetime(2026, 1, 1, tzinfo=IST),
])
def test_time_values_keep_fold_offset_and_zone_name(value: Any) -> None:
    back = codec.decode(codec.encode(value))
    assert back == value
    assert back.fold == value.fold
    assert back.utcoffset() == value.utcoffset()
    assert back.tzname() == value.tzname()
    assert codec.encode(back) == codec.encode(value)


@pytest.mark.parametrize("raw", [  # stores written by e0af83e decode as before
    b'{"$rl:datetime":"2026-01-01T00:00:00+05:30"}',
    b'{"$rl:datetime":["2026-01-01T00:00:00",null,1]}',
    b'{"$rl:datetime":["1983-09-21T23:00:00","America/Guatemala",1]}',
    b'{"$rl:time":"01:02:00+05:30"}',
    b'{"$rl:time":"01:02:00"}',
])
def test_old_time_encodings_still_decode(raw: bytes) -> None:
    back = codec.decode(raw)
    assert isinstance(back, dt.datetime | dt.time)
    assert codec.encode(back) == raw


# -- LangChain objects only through langchain-core's allowlisted loader -----------------


def test_forged_langchain_constructor_outside_core_is_inert(tmp_path: Path) -> None:
    pytest.importorskip("langchain_core")
    import runlog_langchain  # noqa: F401  (registers the $rl:lc tag)

    ran = tmp_path / "ran.txt"
    for path in (["subprocess", "Popen"], ["os", "system"],
                 ["langchain_core", "utils", "Popen"]):
        raw = orjson.dumps({"$rl:lc": {"lc": 1, "type": "constructor", "id": path,
                                       "kwargs": {"args": ["touch", str(ran)]}}})
        back = codec.decode(raw)
        assert isinstance(back, codec.Opaque)
        assert codec.encode(back) == raw
    assert not ran.exists()


def test_forged_langchain_secret_is_not_read_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("langchain_core")
    import runlog_langchain  # noqa: F401

    monkeypatch.setenv("RUNLOG_TEST_SECRET", "hunter2-secret")
    raw = orjson.dumps({"$rl:lc": {
        "lc": 1, "type": "constructor", "id": ["langchain_core", "messages", "HumanMessage"],
        "kwargs": {"content": {"lc": 1, "type": "secret", "id": ["RUNLOG_TEST_SECRET"]}}}})
    back = codec.decode(raw)
    assert "hunter2-secret" not in repr(back)
    assert isinstance(back, codec.Opaque)  # a secret not in the map: load refuses
    assert codec.encode(back) == raw


def test_replayed_errors_run_no_code_of_the_class_they_name() -> None:
    """A failed run's stored error type is forgeable too: views revive an imported
    exception class without running any of its code, and call nothing else."""
    import subprocess

    from runlog.reducers import ReplayedError, error_object

    asked: list[str] = []
    spy = types.ModuleType("runlog_spy_errors")
    spy.__getattr__ = lambda name: asked.append(name)  # type: ignore[method-assign]
    sys.modules[spy.__name__] = spy
    try:
        sneaky = f"{SneakyError.__module__}.SneakyError"
        for name in ("runlog_spy_errors.Boom", "subprocess.Popen", "io.FileIO"):
            got = error_object(runlog.ErrorInfo(name, "boom"))
            assert type(got) is ReplayedError
            assert got.type == name
        revived = error_object(runlog.ErrorInfo(sneaky, "boom"))
        assert type(revived) is SneakyError
        assert revived.args == ("boom",)
        cpe = error_object(runlog.ErrorInfo("subprocess.CalledProcessError", "boom"))
        assert type(cpe) is subprocess.CalledProcessError
        assert type(error_object(runlog.ErrorInfo("ValueError", "v"))) is ValueError
        assert CALLS == []
        assert asked == []
        codec.trust(SneakyError)
        try:
            assert type(error_object(runlog.ErrorInfo(sneaky, "boom"))) is SneakyError
        finally:
            codec._trusted.pop(qual(SneakyError))
    finally:
        del sys.modules[spy.__name__]
