"""Rows of the compact SQLite layout (schema 2): an envelope split into what it adds.

Every event of a run repeats the run's header (ids, name, type, tags, metadata:
:func:`runlog.events.envelope_header`), about 220 of a token event's 300 bytes. The
compact layout stores the header once, in the run's ``runs`` row, and each event row
keeps only its time (an integer column), a small *code* saying how the rest of its
envelope is shaped, and the *body*, the envelope bytes that are neither header nor time
nor the fixed text the code stands for. Reading joins them back::

    envelope = {"kind":"<kind>", + header + ,"time": + <time> + <fixed text> + body + <end>

| code | kind | the envelope after the time | body |
|---|---|---|---|
| 0 | any | (not split: the row holds the whole envelope) | the envelope |
| 1 | start | anything | that text |
| 2 | stream | anything | that text |
| 3 | end | anything | that text |
| 4 | stream | ``,"data":`` *D* ``}`` | *D* |
| 5 | stream | ``,"channel":"token","data":{"token":`` *T* ``,"chunk":null}}`` | *T* |

The split is textual: :func:`split` only cuts off a prefix and a suffix that
:func:`join` puts back, so ``join(split(x)) == x`` for every envelope, whatever its
content (property-tested); an envelope that does not begin with its run's header (one
written by hand, or by another program) is kept whole (code 0). The hash chain still
covers the joined bytes, i.e. every byte stored: the header in ``runs`` and the row.
"""

from __future__ import annotations

from runlog import codec
from runlog.events import envelope_header

__all__ = ["KIND_OF_CODE", "WHOLE", "join", "run_header", "split"]

WHOLE, START, STREAM, END, OUTPUT, TOKEN = range(6)
KIND_OF_CODE: dict[int, str | None] = {WHOLE: None, START: "start", STREAM: "stream",
                                       END: "end", OUTPUT: "stream", TOKEN: "stream"}
"""The kind each code stands for (None: read it from the whole envelope)."""

_PREFIX = {"start": b'{"kind":"start",', "stream": b'{"kind":"stream",',
           "end": b'{"kind":"end",'}
_GENERIC = {"start": START, "stream": STREAM, "end": END}
_TIME = b',"time":'
_OUTPUT = (b',"data":', b"}")
_TOKEN = (b',"channel":"token","data":{"token":', b',"chunk":null}}')
_FIXED: dict[int, tuple[bytes, bytes]] = {START: (b"", b""), STREAM: (b"", b""),
                                          END: (b"", b""), OUTPUT: _OUTPUT, TOKEN: _TOKEN}


def run_header(run_id: str, parent_id: str | None, trace_id: str, name: str, run_type: str,
               tags: bytes, metadata: bytes) -> bytes:
    """The header the recorder put in every envelope of this run (tags and metadata as
    encoded, the other fields as the codec writes them)."""
    return envelope_header(run_id=run_id, parent_id=parent_id, trace_id=trace_id,
                           fields=(codec.dumps_plain(name), codec.dumps_plain(run_type),
                                   tags, metadata))


_heads: dict[tuple[str, bytes], bytes] = {}


def _head(kind: str, header: bytes) -> bytes:
    """``{"kind":"<kind>",<header>,"time":``, made once per run and kind (the writer
    splits every event, and building 300 bytes per event cost a microsecond)."""
    key = (kind, header)
    head = _heads.get(key)
    if head is None:
        if len(_heads) > 30_000:
            _heads.clear()
        head = _heads[key] = _PREFIX[kind] + header + _TIME
    return head


def split(kind: str, raw: bytes, time_us: int, header: bytes | None) -> tuple[int, bytes]:
    """``(code, body)`` of one envelope of a run whose header is ``header`` (module doc).

    ``header`` None (a run whose start was kept whole) keeps the envelope whole too.
    """
    if header is None or kind not in _PREFIX:
        return WHOLE, raw
    head = _head(kind, header)
    digits = b"%d" % time_us
    at = len(head) + len(digits)
    if not (raw.startswith(head) and raw.startswith(digits, len(head))):
        return WHOLE, raw
    if kind == "stream":
        for code, (before, after) in ((TOKEN, _TOKEN), (OUTPUT, _OUTPUT)):
            if (raw.startswith(before, at) and raw.endswith(after)
                    and len(raw) >= at + len(before) + len(after)):
                return code, raw[at + len(before):len(raw) - len(after)]
    return _GENERIC[kind], raw[at:]


def join(code: int, body: bytes, time_us: int, header: bytes | None) -> bytes:
    """The envelope a row stands for: the inverse of :func:`split`."""
    kind = KIND_OF_CODE.get(code)
    if kind is None or header is None:
        return body
    before, after = _FIXED[code]
    return b"%b%d%b%b%b" % (_head(kind, header), time_us, before, body, after)
