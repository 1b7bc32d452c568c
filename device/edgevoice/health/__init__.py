"""`edgevoice doctor`'s checks: is this speaker able to work, and if not, what is wrong?

One concern per module (`audio`, `storage`, `clock`, `credentials`, `network`, `sync`), each check a plain
function that returns a `Check` and never raises for what it finds: a broken device, a full disk or a dead
network is its answer, not an exception. What a check touches (the ALSA opener, statvfs, the clock, the
connect function, the S3 client) is a parameter, so tests drive each one directly. `plan.py` picks the
checks a config needs and `runner.py` runs them, each with its own timeout.

A detail names what was found and what to do about it; it never holds a secret or a transcript.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Status = Literal["ok", "FAIL", "skip"]
OK: Final = "ok"
FAIL: Final = "FAIL"
SKIP: Final = "skip"
"""Only for a check that does not apply (S3 with sync off) or cannot run because the check it needs already
failed (the mic's level when the capture device does not open): a skip never hides a failure."""


@dataclass(frozen=True)
class Check:
    """One row of `edgevoice doctor`: which check, how it went, and a short detail (one line)."""

    name: str
    status: Status
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def ok(name: str, detail: str) -> Check:
    return Check(name, OK, detail)


def fail(name: str, detail: str) -> Check:
    return Check(name, FAIL, detail)


def skip(name: str, detail: str) -> Check:
    return Check(name, SKIP, detail)
