"""The event model: what one committed event is, and the exact bytes it is stored as.

A run emits one ``start`` event, any number of ``stream`` events and at most one
``end`` event. Each event is stored as one JSON object, its *envelope*, whose bytes are
kept forever and handed back unchanged by every read (``Event.raw``). The envelope is
self-contained: a reader learns an event's run name, type, tags and metadata without
looking at any other event, so a tail that starts in the middle of a run needs no join.

Envelope keys, always in this order (``docs/event-model.md``)::

    kind, run_id, parent_id, trace_id, name, run_type, tags, metadata, time,
    [channel], data, [error], [inputs]

``time`` is integer microseconds since the Unix epoch (UTC). ``channel`` appears on
stream events whose channel is not ``"output"``. ``error`` and ``inputs`` appear on end
events that carry them. ``seq`` is *not* in the bytes: the store assigns it at commit,
after the bytes (and their hash) were made.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter as _attrgetter
from time import time_ns as _time_ns
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from runlog import codec
from runlog.errors import EncodingError

__all__ = [
    "CHANNELS",
    "KINDS",
    "RUN_TYPES",
    "ErrorInfo",
    "Event",
    "EventKind",
    "RunInfo",
    "RunStatus",
    "chain_digest",
    "datetime_to_micros",
    "encode_run_fields",
    "envelope_header",
    "make_envelope",
    "micros_to_datetime",
    "now_micros",
]

EventKind: TypeAlias = Literal["start", "stream", "end"]
RunStatus: TypeAlias = Literal["running", "ok", "error", "abandoned"]
KINDS: tuple[str, ...] = ("start", "stream", "end")
RUN_TYPES: tuple[str, ...] = (
    "chain",
    "llm",
    "chat_model",
    "tool",
    "retriever",
    "prompt",
    "parser",
    "embedding",
    "custom",
)
"""Run types runlog knows by name; any other non-empty string is accepted too."""

CHANNELS: tuple[str, ...] = ("output", "token", "custom")
"""What a stream event carries.

``output``: a chunk of the run's own output (what ``astream`` yields);
``token``: a model token, ``data = {"token": str, "chunk": Any}``;
``custom``: a custom event dispatched by the run, ``data = {"name": str, "data": Any}``.
"""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_GENESIS = b"runlog-chain-v1"


def now_micros() -> int:
    """The current UTC time in integer microseconds, the resolution events keep."""
    return _time_ns() // 1000


TIME_MIN = -62_135_596_800_000_000
"""The earliest event time: 0001-01-01T00:00:00Z in epoch microseconds."""
TIME_MAX = 253_402_300_799_999_999
"""The latest: 9999-12-31T23:59:59.999999Z. Every time between the two is a
:class:`datetime.datetime` (``Event.time``) and fits both backends' 64-bit column, so the
recorder and ``runlog import`` admit exactly these: a time a reader could not show is
refused at the call, never stored."""


def micros_to_datetime(us: int) -> dt.datetime:
    """Exact conversion (no float rounding) of epoch microseconds to an aware datetime."""
    return _EPOCH + dt.timedelta(microseconds=us)


def datetime_to_micros(value: dt.datetime) -> int:
    """Exact conversion of a datetime (naive means UTC) to epoch microseconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_blake2b = hashlib.blake2b


def chain_digest(previous: bytes | None, raw: bytes) -> bytes:
    """Digest of one event chained to the previous event of the same run.

    BLAKE2b-128 over the previous digest (a fixed genesis value for a run's first event)
    and the stored bytes; ``runlog verify`` recomputes it from the bytes alone.
    """
    # one call over the joined bytes: the same digest as two updates, and a third
    # cheaper (this runs once per recorded event)
    return _blake2b((previous if previous is not None else _GENESIS) + raw,
                    digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a run failed: the exception's type, message and formatted traceback, and what
    replays need to rebuild it: its ``args`` and the plain attributes in its ``__dict__``
    (None for errors recorded without them, by older versions or by hand). Equality and
    hashing use type, message and traceback only, as before those were kept."""

    type: str
    message: str
    traceback: str = ""
    args: tuple[Any, ...] | None = field(default=None, compare=False)
    attrs: dict[str, Any] | None = field(default=None, compare=False)

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        import traceback as tb

        t = type(exc)
        name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
        text = "".join(tb.format_exception(t, exc, exc.__traceback__))
        attrs = {k: v for k, v in _exception_dict(exc).items() if type(k) is str}
        for base, names in _SLOT_ATTRIBUTES:  # kept by C slots, not derived from args
            if isinstance(exc, base):
                attrs.update((n, v) for n in names if (v := getattr(exc, n, None)) is not None)
        return cls(type=name, message=str(exc), traceback=text, args=tuple(exc.args),
                   attrs=attrs)

    def to_dict(self) -> dict[str, Any]:
        """The stored form: ``args``/``attrs`` only when known (encode it lossy: they
        may hold anything the exception was given)."""
        d: dict[str, Any] = {"type": self.type, "message": self.message,
                             "traceback": self.traceback}
        if self.args is not None:
            d["args"] = self.args
        if self.attrs is not None:
            d["attrs"] = self.attrs
        return d

    @classmethod
    def from_dict(cls, d: Any) -> ErrorInfo:
        """Read a stored error; a field that is not text (a forged store) becomes its
        JSON text, so reading it calls no ``__str__`` of a stored value. ``args`` and
        ``attrs`` of the wrong shape are dropped."""
        if type(d) is not dict:
            return cls(type="", message=_as_text(d))
        args = d.get("args")
        attrs = d.get("attrs")
        return cls(
            type=_as_text(d.get("type", "")),
            message=_as_text(d.get("message", "")),
            traceback=_as_text(d.get("traceback", "")),
            args=tuple(args) if isinstance(args, (list, tuple)) else None,
            attrs=({k: v for k, v in attrs.items() if type(k) is str}
                   if type(attrs) is dict else None),
        )


_exception_dict: Any = vars(BaseException)["__dict__"].__get__
_SLOT_ATTRIBUTES: tuple[tuple[type[BaseException], tuple[str, ...]], ...] = (
    (OSError, ("filename", "filename2")), (ImportError, ("name", "path")),
    (AttributeError, ("name",)), (NameError, ("name",)))


def _as_text(v: Any) -> str:
    return v if type(v) is str else codec.encode(v, lossy=True).decode()


def encode_run_fields(
    name: str, run_type: str, tags: Sequence[str], metadata: Mapping[str, Any]
) -> tuple[bytes, bytes, bytes, bytes]:
    """Validate and encode what identifies a run: name, type, tags and metadata.

    Names, types and tags must be plain strings (no lone surrogates), so that SQL
    filters can compare them as stored; metadata values go through the full codec.
    """
    if not isinstance(name, str) or not name:
        raise EncodingError(f"a run name must be a non-empty string, not {name!r}")
    if not isinstance(run_type, str) or not run_type:
        raise EncodingError(f"a run type must be a non-empty string, not {run_type!r}")
    tags = list(tags)
    if not all(isinstance(t, str) for t in tags):
        raise EncodingError(f"tags must be strings, got {tags!r}")
    if not all(isinstance(k, str) for k in metadata):
        raise EncodingError("metadata keys must be strings")
    try:
        plain = codec.dumps_plain(name), codec.dumps_plain(run_type), codec.dumps_plain(tags)
    except TypeError as e:
        raise EncodingError(f"run names, types and tags must be valid Unicode: {e}") from e
    return plain[0], plain[1], plain[2], codec.encode(dict(metadata))


def envelope_header(
    *,
    run_id: str,
    parent_id: str | None,
    trace_id: str,
    fields: tuple[bytes, bytes, bytes, bytes],
) -> bytes:
    """The bytes every event of one run shares, encoded once per run.

    ``fields`` comes from :func:`encode_run_fields`. Stream events are then built by
    concatenation, which keeps the per-token cost of recording independent of how
    large the run's metadata is.
    """
    name, run_type, tags, metadata = fields
    return b"".join(
        (
            b'"run_id":',
            codec.dumps_plain(run_id),
            b',"parent_id":',
            codec.dumps_plain(parent_id),
            b',"trace_id":',
            codec.dumps_plain(trace_id),
            b',"name":',
            name,
            b',"run_type":',
            run_type,
            b',"tags":',
            tags,
            b',"metadata":',
            metadata,
        )
    )


_KIND_PREFIX = {
    "start": b'{"kind":"start",',
    "stream": b'{"kind":"stream",',
    "end": b'{"kind":"end",',
}


def make_envelope(
    kind: EventKind,
    header: bytes,
    time_us: int,
    data: bytes,
    *,
    channel: str | None = None,
    error: bytes | None = None,
    inputs: bytes | None = None,
) -> bytes:
    """Assemble an envelope from already encoded parts (see the module docstring)."""
    parts = [_KIND_PREFIX[kind], header, b',"time":', str(time_us).encode()]
    if channel is not None and channel != "output":
        parts += [b',"channel":', codec.dumps_plain(channel)]
    parts += [b',"data":', data]
    if error is not None:
        parts += [b',"error":', error]
    if inputs is not None:
        parts += [b',"inputs":', inputs]
    parts.append(b"}")
    return b"".join(parts)


class Event:
    """One committed event, immutable, read back exactly as it was stored.

    Only ``seq``, ``raw`` and ``digest`` are held; the other fields are parsed from
    ``raw`` on first access, so replaying or exporting bytes never pays for decoding
    them. Every public field is a read-only property (assigning one raises
    ``AttributeError``).
    """

    # _env and _data stay unset until first parsed: two stores fewer per event made
    # (a replay makes one per row), and nothing of the parse cache is pickled or copied
    __slots__ = ("_data", "_digest", "_env", "_raw", "_seq")
    _seq: int
    _raw: bytes
    _digest: bytes | None
    _env: dict[str, Any]
    _data: Any

    def __init__(self, seq: int, raw: bytes, digest: bytes | None = None) -> None:
        self._seq = seq
        self._raw = raw
        self._digest = digest

    # -- envelope access ---------------------------------------------------------
    @property
    def envelope(self) -> dict[str, Any]:
        """The parsed JSON object (tags *not* decoded); cached."""
        try:
            return self._env
        except AttributeError:
            pass
        env = codec.loads_plain(self._raw)
        if type(env) is not dict or env.get("kind") not in _KIND_PREFIX:
            raise EncodingError(f"event {self._seq} is not a runlog envelope")
        self._env = env
        return env

    if TYPE_CHECKING:
        @property
        def seq(self) -> int:
            """Global position, gap-free and in commit order, assigned by the store."""

        @property
        def raw(self) -> bytes:
            """The exact bytes stored (and streamed to live readers)."""

        @property
        def digest(self) -> bytes | None:
            """Hash-chain digest of this event (None when read from a source without
            one)."""
    else:
        # C-level getters (an attrgetter of the slot, no Python frame): a replay reads
        # one of these per event, and a Python property function costs more than the
        # slot read itself
        seq = property(_attrgetter("_seq"), doc=(
            "Global position, gap-free and in commit order, assigned by the store."))
        raw = property(_attrgetter("_raw"), doc=(
            "The exact bytes stored (and streamed to live readers)."))
        digest = property(_attrgetter("_digest"), doc=(
            "Hash-chain digest of this event (None when read from a source without one)."))

    @property
    def kind(self) -> EventKind:
        return self.envelope["kind"]  # type: ignore[no-any-return]

    @property
    def run_id(self) -> str:
        return self.envelope["run_id"]  # type: ignore[no-any-return]

    @property
    def parent_id(self) -> str | None:
        return self.envelope["parent_id"]  # type: ignore[no-any-return]

    @property
    def trace_id(self) -> str:
        """Id of the root run of this event's tree."""
        return self.envelope["trace_id"]  # type: ignore[no-any-return]

    @property
    def name(self) -> str:
        return self.envelope["name"]  # type: ignore[no-any-return]

    @property
    def run_type(self) -> str:
        return self.envelope["run_type"]  # type: ignore[no-any-return]

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.envelope["tags"])

    @property
    def metadata(self) -> dict[str, Any]:
        return _maybe_untag(self.envelope["metadata"])  # type: ignore[no-any-return]

    @property
    def time_us(self) -> int:
        """Event time in integer microseconds since the epoch (UTC)."""
        return self.envelope["time"]  # type: ignore[no-any-return]

    @property
    def time(self) -> dt.datetime:
        """Event time as an aware UTC datetime with microsecond resolution."""
        return micros_to_datetime(self.time_us)

    @property
    def channel(self) -> str | None:
        """For stream events: ``output``, ``token`` or ``custom``; None otherwise."""
        if self.kind != "stream":
            return None
        return self.envelope.get("channel", "output")  # type: ignore[no-any-return]

    @property
    def data(self) -> Any:
        """start: the inputs; stream: the chunk; end: the outputs (maybe partial on error)."""
        try:
            return self._data
        except AttributeError:
            pass
        data = self._data = _maybe_untag(self.envelope["data"])
        return data

    @property
    def error(self) -> ErrorInfo | None:
        """For an end event of a failed run, why it failed."""
        e = self.envelope.get("error")
        return ErrorInfo.from_dict(_maybe_untag(e)) if e is not None else None

    @property
    def inputs(self) -> Any:
        """For an end event, the run's final inputs when they were only known at the end."""
        return _maybe_untag(self.envelope.get("inputs"))

    @property
    def has_inputs(self) -> bool:
        """True when an end event carries ``inputs`` (distinguishes a None input)."""
        return "inputs" in self.envelope

    # -- value semantics ---------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self._seq == other._seq and self._raw == other._raw

    def __hash__(self) -> int:
        return hash((self._seq, self._raw))

    def __repr__(self) -> str:
        try:
            return (
                f"Event(seq={self._seq}, kind={self.kind!r}, name={self.name!r}, "
                f"run_id={self.run_id!r})"
            )
        except Exception:
            return f"Event(seq={self._seq}, raw={self._raw[:60]!r})"


def _maybe_untag(v: Any) -> Any:
    # Only containers and tag objects can hold tags; cheap for plain scalars.
    if type(v) is dict or type(v) is list:
        return codec.untag(v)
    return v


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One row of ``store.runs()``: a run's identity, status and timing."""

    run_id: str
    trace_id: str
    parent_id: str | None
    name: str
    run_type: str
    status: RunStatus
    start_time: dt.datetime
    end_time: dt.datetime | None
    event_count: int
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    error: ErrorInfo | None = None
    start_seq: int = 0
    end_seq: int | None = None

    @property
    def duration(self) -> dt.timedelta | None:
        return self.end_time - self.start_time if self.end_time else None

    @property
    def is_root(self) -> bool:
        return self.parent_id is None
