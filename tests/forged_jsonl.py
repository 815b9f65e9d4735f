"""What someone forging an export file would do, for the tests of what import refuses."""

from __future__ import annotations

from collections.abc import Sequence

from runlog.events import chain_digest
from runlog.exporters.jsonl import HEADER, _envelope_ids, _order_hash, _trailer


def seal(raws: Sequence[bytes]) -> bytes:
    """An export file around ``raws`` with digests and a trailer that check out.

    Each line is chained to the run its first bytes name, so the file verifies: it
    shows what the import checks beyond the digests (the chain is unkeyed).
    """
    last: dict[str, bytes] = {}
    order = _order_hash()
    lines = [HEADER]
    for raw in raws:
        run_id = _envelope_ids(raw, "f", 1)[1]
        digest = last[run_id] = chain_digest(last.get(run_id), raw)
        order.update(digest)
        lines.append(b'{"digest":"%b","event":%b}\n' % (digest.hex().encode(), raw))
    lines.append(_trailer(len(raws), order.digest()))
    return b"".join(lines)
