"""Time-ordered run ids (UUIDv7, RFC 9562).

Python 3.11 has no ``uuid.uuid7``. Ids made in one process are strictly increasing:
within one millisecond the 12-bit ``rand_a`` field is a counter (method 1 of RFC 9562
section 6.2), so sorting ids sorts runs by start time, which keeps the SQL indexes
append-mostly.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

__all__ = ["new_run_id", "uuid7"]

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> uuid.UUID:
    """Return a new UUIDv7; monotonic within this process."""
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF  # leave room to count up
        else:
            _counter += 1
            if _counter > 0xFFF:  # 4096 ids in one ms: borrow the next millisecond
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def new_run_id() -> str:
    """A fresh run id in its canonical text form."""
    return str(uuid7())
