"""Rows of the compact layout (schemas 2 and 3): an envelope split into what it adds.

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
| 6 | stream | the template row's, with *T* for its token (below) | its seq, then *T* |
| 7 | stream | ``,"channel":"token","data":{"token":"`` *S* ``","chunk":null}}`` | *S* |

Code 7 is code 5 without the token's quotes: *S* is a token that is a JSON string, its
JSON text between the quotes (``tok`` for ``"tok"``, escapes as the envelope has them),
2 bytes a row less. Runlog before it would join a code-7 row as a whole envelope (it
knows no kind for code 7), i.e. read the bare token as the event, so only stores at
schema 3 (:data:`BARE_SCHEMA_VERSION`) get such rows: the writer of a store at schema 2
keeps writing code 5 (``split(..., bare=False)``), and runlog that knows only schema 2
refuses a store at 3. Reading needs no schema: code 7 joins the same in either.

Code 6 is for models that stream a chunk object with every token (a LangChain
``AIMessageChunk``: about 400 bytes, of which only the text changes). A token event with
a chunk is stored as code 2 the first time, and that row becomes its run's *template*:
its text after the time, with each occurrence of its token (*T*, a JSON string, quotes
included) replaced by a NUL byte (which JSON text never holds). A later token event of
the run whose text after the time, with its own token replaced the same way, equals the
template is stored as code 6: the template row's seq in decimal digits, then its token.
One that differs (another chunk shape) is stored as code 2 and becomes the template.
Decoding a code-6 row needs its run's header and the template row, an earlier event of
the same run, so a reader that starts in the middle of a run reads it too.

The split is textual: :func:`split` only cuts off a prefix and a suffix that
:func:`join` puts back, so ``join(split(x)) == x`` for every envelope, whatever its
content (property-tested); an envelope that does not begin with its run's header (one
written by hand, or by another program) is kept whole (code 0). The hash chain still
covers the joined bytes, i.e. every byte stored: the header in ``runs`` and the row.
"""

from __future__ import annotations

from runlog import codec
from runlog.events import envelope_header

__all__ = ["BARE_SCHEMA_VERSION", "BARE_TOKEN", "HOLE", "KIND_OF_CODE", "OUTPUT",
           "STREAM_FIXED", "TEMPLATED", "TOKEN", "WHOLE", "bare_token", "fill_template",
           "fit_template", "fits_known", "head", "join", "joiner", "run_header", "split",
           "split_known", "template_of", "template_seq"]

WHOLE, START, STREAM, END, OUTPUT, TOKEN, TEMPLATED, BARE_TOKEN = range(8)
KIND_OF_CODE: dict[int, str | None] = {WHOLE: None, START: "start", STREAM: "stream",
                                       END: "end", OUTPUT: "stream", TOKEN: "stream",
                                       TEMPLATED: "stream", BARE_TOKEN: "stream"}
"""The kind each code stands for (None: read it from the whole envelope)."""

_PREFIX = {"start": b'{"kind":"start",', "stream": b'{"kind":"stream",',
           "end": b'{"kind":"end",'}
_GENERIC = {"start": START, "stream": STREAM, "end": END}
_TIME = b',"time":'
_OUTPUT = (b',"data":', b"}")
_TOKEN = (b',"channel":"token","data":{"token":', b',"chunk":null}}')
_BARE = (_TOKEN[0] + b'"', b'"' + _TOKEN[1])
_FIXED: dict[int, tuple[bytes, bytes]] = {START: (b"", b""), STREAM: (b"", b""),
                                          END: (b"", b""), OUTPUT: _OUTPUT, TOKEN: _TOKEN,
                                          BARE_TOKEN: _BARE}
STREAM_FIXED: dict[int, tuple[bytes, bytes]] = {STREAM: (b"", b""), OUTPUT: _OUTPUT,
                                                TOKEN: _TOKEN, BARE_TOKEN: _BARE}
"""The fixed text before and after the body of each code that stands for a stream event:
the writer checks the recorder's ``(code, body)`` of a stream event against it."""
BARE_SCHEMA_VERSION = 3
"""The first schema whose stores may hold code-7 rows (and the only one whose writer
makes them): see the module docstring."""


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


def head(kind: str, header: bytes) -> bytes:
    """``{"kind":"<kind>",<header>,"time":``: what every envelope of ``kind`` of the run
    whose header is ``header`` begins with (the writer caches a run's stream head)."""
    return _head(kind, header)


def bare_token(body: bytes) -> bytes | None:
    """A code-5 body's code-7 body (its JSON string's text between the quotes), or None
    when the token is not one JSON string (a list of content blocks, or text that only
    looks like a token: ``"a","x":"b"``, which a hand-made envelope may hold)."""
    if len(body) < 2 or body[:1] != b'"' or body[-1:] != b'"':
        return None
    at = 1
    while True:  # the closing quote: one not escaped by an odd run of backslashes
        at = body.find(b'"', at)
        slashes = 0
        while body[at - 1 - slashes] == 0x5C:
            slashes += 1
        if slashes % 2 == 0:
            return body[1:-1] if at == len(body) - 1 else None
        at += 1


def split(kind: str, raw: bytes, time_us: int, header: bytes | None,
          bare: bool = False) -> tuple[int, bytes]:
    """``(code, body)`` of one envelope of a run whose header is ``header`` (module doc).

    ``header`` None (a run whose start was kept whole) keeps the envelope whole too.
    ``bare`` (a store at :data:`BARE_SCHEMA_VERSION`) stores a token that is a JSON
    string as code 7, without its quotes; else as code 5.
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
                body = raw[at + len(before):len(raw) - len(after)]
                if bare and code == TOKEN and (text := bare_token(body)) is not None:
                    return BARE_TOKEN, text
                return code, body
    return _GENERIC[kind], raw[at:]


def split_known(kind: str, raw: bytes, time_us: int, header: bytes | None,
                parts: tuple[int, bytes] | None, bare: bool = False) -> tuple[int, bytes]:
    """:func:`split` given the ``(code, body)`` the recorder says ``raw`` is made of:
    checked (the joined parts must be exactly ``raw``: a comparison, no search), else
    split as usual. ``bare`` as for :func:`split`: the recorder's code 5 (it knows no
    store's schema) becomes code 7 when the store is at 3 (the recorder's token is a
    JSON string when its body begins and ends with a quote: ``codec.encode`` of a str
    gives one JSON string, of anything else a list or object); a hint of code 7 (never
    the recorder's) becomes code 5 when the store is not at 3."""
    if parts is None or header is None:
        return split(kind, raw, time_us, header, bare)
    code, body = parts
    if code == BARE_TOKEN and not bare:
        code, body = TOKEN, b'"%b"' % body
    before, after = _FIXED[code]
    head = _head(kind, header)
    digits = b"%d" % time_us
    at = len(head) + len(digits)
    if (len(raw) == at + len(before) + len(body) + len(after) and raw.startswith(head)
            and raw.startswith(digits, len(head)) and raw.startswith(before, at)
            and raw.endswith(after) and raw.startswith(body, at + len(before))):
        if bare and code == TOKEN and len(body) >= 2 and body[:1] == body[-1:] == b'"':
            return BARE_TOKEN, body[1:-1]
        return code, body
    return split(kind, raw, time_us, header, bare)


def join(code: int, body: bytes, time_us: int, header: bytes | None,
         template: bytes | None = None) -> bytes:
    """The envelope a row stands for: the inverse of :func:`split` (and, for code 6, of
    :func:`fit_template`, given the row's template)."""
    kind = KIND_OF_CODE.get(code)
    if kind is None or header is None:
        return body
    if code == TEMPLATED:
        rest = fill_template(body, template)
        if rest is None:
            return body  # a damaged row: verify reports the chain it breaks
        return b"%b%d%b" % (_head(kind, header), time_us, rest)
    before, after = _FIXED[code]
    return b"%b%d%b%b%b" % (_head(kind, header), time_us, before, body, after)


def joiner(code: int, header: bytes | None) -> tuple[bytes, bytes, bytes] | None:
    """``(head, before, after)`` such that a row of ``code`` of a run whose header is
    ``header`` joins to ``head + b"%d" % time + before + body + after``; None for the
    codes that :func:`join` treats otherwise (whole rows, code 6, no header). Readers
    compute it once per run and code, not per row."""
    kind = KIND_OF_CODE.get(code)
    if kind is None or header is None or code == TEMPLATED:
        return None
    before, after = _FIXED[code]
    return _head(kind, header), before, after


_HOLE = b"\x00"
HOLE = _HOLE
"""What a template holds in place of its token (a NUL byte, which JSON text never holds):
the writer fills it to check a hint, readers that join code-6 rows themselves too."""
_TOKEN_AT = _TOKEN[0]


def _token(rest: bytes) -> bytes | None:
    """The token (a JSON string, quotes included) of a code-2 token row's text, or None
    (not a token event, or a token that is a list of content blocks)."""
    if not rest.startswith(_TOKEN_AT) or rest[len(_TOKEN_AT):len(_TOKEN_AT) + 1] != b'"':
        return None
    start = len(_TOKEN_AT)
    at = start + 1
    while True:  # the closing quote: one not escaped by an odd run of backslashes
        at = rest.find(b'"', at)
        if at < 0:
            return None
        slashes = 0
        while rest[at - 1 - slashes] == 0x5C:
            slashes += 1
        if slashes % 2 == 0:
            return rest[start:at + 1]
        at += 1


def template_of(code: int, body: bytes) -> bytes | None:
    """The template a code-2 token row defines (module docstring), or None."""
    if code != STREAM:
        return None
    token = _token(body)
    return body.replace(token, _HOLE) if token is not None else None


def fit_template(code: int, body: bytes, template: bytes) -> bytes | None:
    """The token of a code-2 token row that ``template`` stores (its code-6 body without
    the seq), or None when the row is not that template with another token."""
    if code != STREAM:
        return None
    token = _token(body)
    if token is None or body.replace(token, _HOLE) != template:
        return None
    return token


def fits_known(raw: bytes, time_us: int, header: bytes, template: bytes,
               token: bytes) -> bool:
    """Whether the stream envelope ``raw`` is ``template`` (of its run, whose header is
    ``header``) with ``token`` in its holes: the recorder's ``(TEMPLATED, token)`` of a
    token event with a chunk, checked by the very join a reader makes (:func:`join`),
    so a row stored as code 6 on its word always reads back as ``raw``."""
    return token[:1] == b'"' and raw == b"%b%d%b" % (
        _head("stream", header), time_us, template.replace(_HOLE, token))


def fill_template(body: bytes, template: bytes | None) -> bytes | None:
    """A code-6 row's envelope after its time: ``template`` with the row's token (its
    ``body`` after the template row's seq) in its holes; None for a damaged row (no
    template, or no token in the body)."""
    at = body.find(b'"')
    if template is None or at < 0:
        return None
    return template.replace(_HOLE, body[at:])


def template_seq(body: bytes) -> int | None:
    """The template row's seq in a code-6 body (None for a damaged row)."""
    at = body.find(b'"')
    digits = body[:at] if at > 0 else b""
    return int(digits) if digits.isdigit() else None
