"""The system clock: TLS needs a correct one, and a Raspberry Pi has no battery-backed clock.

Until NTP has set it, a Pi boots at the time it last saved (systemd-timesyncd's clock file) or at its
image's build time, and every certificate check of the cloud model and S3 can fail (not yet valid, or
expired). Two questions:

- Is the clock plausible at all? It must not read earlier than NOT_BEFORE, the date of this release: no
  correct clock can show an earlier time on a device running it.
- Is it synchronized? Asked the way `timedatectl` does: the kernel's NTP state through adjtimex(2) (read
  only, any user may ask), where an NTP client (systemd-timesyncd, chrony) clears STA_UNSYNC and keeps the
  estimated maximum error under 16 s; or systemd-timesyncd's flag file, which it creates at its first sync
  after boot. The detail says which of them answered.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import Check, fail, ok

CLOCK = "clock"

NOT_BEFORE = datetime(2026, 1, 1, tzinfo=UTC)
"""No earlier than this package's release: a clock before it is wrong for certain. Raise it with releases."""
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
"""systemd-timesyncd creates it when it first synchronizes after boot (/run is emptied at boot)."""
STA_UNSYNC = 0x0040
"""adjtimex status bit: the kernel clock is not synchronized (set at boot, cleared by an NTP client)."""
MAX_ERROR_US = 16_000_000
"""A kernel maximum error from this (µs) up counts as unsynchronized, as in systemd's `ntp_synced()`: the
kernel sets it there when no NTP client has updated it for hours."""


@dataclass(frozen=True)
class KernelClock:
    """What adjtimex(2) says of the kernel clock."""

    status: int
    """The `STA_*` bits."""
    maxerror_us: int
    """The estimated maximum error, in microseconds."""

    @property
    def synced(self) -> bool:
        return not self.status & STA_UNSYNC and self.maxerror_us < MAX_ERROR_US


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    # <sys/timex.h>'s struct timex. Only `modes` (0: read only), `maxerror` and `status` are used; the rest
    # is here so the kernel's write lands inside the buffer. `long` is ctypes' c_long on every ABI glibc's
    # `adjtimex` symbol serves (also 32-bit ARM, whose 64-bit-time variant has another name).
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


def adjtimex() -> KernelClock | None:
    """The kernel clock's NTP state; None where adjtimex cannot be called."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None
    tx = _Timex()  # modes = 0: only read
    if fn(ctypes.byref(tx)) < 0:
        return None
    return KernelClock(status=tx.status, maxerror_us=tx.maxerror)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


def check_clock(
    *,
    now: Callable[[], float] = time.time,
    kernel: Callable[[], KernelClock | None] | None = None,
    flag: Path = TIMESYNC_FLAG,
    not_before: datetime = NOT_BEFORE,
) -> Check:
    """FAIL when the clock reads before `not_before`, or neither the kernel (`kernel`, adjtimex by default)
    nor systemd-timesyncd (`flag`) says it is synchronized."""
    t = now()
    if t < not_before.timestamp():
        return fail(
            CLOCK,
            f"reads {_when(t)}, before this release ({not_before:%Y-%m-%d}): TLS certificates will not verify; "
            "the clock has not been set (no network time yet?)",
        )
    state = (kernel or adjtimex)()
    flagged = flag.exists()
    sources = []
    if state is not None and state.synced:
        sources.append(f"kernel: synchronized, max error {state.maxerror_us / 1e6:g} s")
    if flagged:
        sources.append(f"systemd-timesyncd: {flag}")
    if sources:
        return ok(CLOCK, f"{_when(t)}, synchronized ({'; '.join(sources)})")
    if state is None:
        return ok(CLOCK, f"{_when(t)}: after {not_before:%Y-%m-%d}; synchronization unknown (no adjtimex, no {flag})")
    why = "STA_UNSYNC" if state.status & STA_UNSYNC else f"max error {state.maxerror_us / 1e6:g} s"
    return fail(
        CLOCK,
        f"{_when(t)}, not synchronized (kernel: {why}; no {flag}): start systemd-timesyncd or chrony, "
        "and let it reach an NTP server",
    )
