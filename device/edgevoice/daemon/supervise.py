"""Supervision of a running connection, as plain code: is a response overdue (a hung connection), and the
reasons a connection is torn down that are not errors raised by the agent.

No Strands types: the mic says when a user turn was sent (`due`) or began (`user_turn`), the speaker says
when any model event arrived (`heard`) and when an answer ended (`answered`); the connection asks
`left()` how long it may still wait. The clock is a parameter, so tests drive it step by step.
"""

from __future__ import annotations

import math

from ..backoff import Clock

STOP_DEADLINE_S = 3.0
"""How long stopping an agent (`agent.stop()`, or cancelling `agent.run`, whose `finally` stops it) may
take before it is abandoned. A healthy stop takes milliseconds; a stop against a dead peer does not
return at all (Nova Sonic after a TCP reset) or waits out a client's close timeout (websockets: 10 s
against a hung peer). 3 s is well above the first and keeps a speaker from being deaf for the second."""


class ConnectionLost(Exception):
    """A connection torn down by the supervision itself (not an error the agent raised)."""


class Hung(ConnectionLost):
    """A response was due and the model said nothing for `model.response_timeout_s`."""


class StopTimeout(ConnectionLost):
    """The agent began stopping on its own and its stop did not return within `STOP_DEADLINE_S`."""


class ResponseWatch:
    """Whether a response is due, and since when the model has been silent.

    A response is due from the moment a user turn's end marker was handed to the agent (or a tool result
    went back to the model) until the answer ends; while it is due, every model event starts the wait
    again. A user turn that begins takes the floor: nothing is due until that turn is sent. Idle (nothing
    due), the wait is never up: a connection that dies quietly while idle is found at the next turn.
    """

    def __init__(self, timeout_s: float, clock: Clock) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._since: float | None = None  # the last sign of life while a response is due; None: nothing due

    @property
    def is_due(self) -> bool:
        return self._since is not None

    def due(self) -> None:
        """A user turn (or a tool result) was sent: an answer is owed from now."""
        self._since = self._clock()

    def heard(self) -> None:
        """Any model event: the connection is alive."""
        if self._since is not None:
            self._since = self._clock()

    def answered(self) -> None:
        """The answer ended (or the connection is new): nothing is owed."""
        self._since = None

    user_turn = answered
    """A user turn began: the user has the floor, nothing is owed until it is sent."""

    def left(self) -> float | None:
        """Seconds the connection may still stay silent (<= 0: hung), or None when nothing is due."""
        if self._since is None or not math.isfinite(self.timeout_s):
            return None
        return self._since + self.timeout_s - self._clock()
