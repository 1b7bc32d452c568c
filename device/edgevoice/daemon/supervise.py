"""Supervision of a running connection, as plain code: is a response overdue (a hung connection), and the
reasons a connection is torn down that are not errors raised by the agent.

No Strands types: the mic says when a user turn was sent (`due`) or began (`user_turn`), the speaker says
when any model event arrived (`heard`) and when an answer ended (`answered`); the connection asks
`left()` how long it may still wait. The clock is a parameter, so tests drive it step by step.
"""

from __future__ import annotations

import math

from ..backoff import Clock

REASON_CHARS = 300
"""Provider errors nest whole HTTP bodies; the journal gets one line of at most this many characters."""

BUGS: tuple[type[BaseException], ...] = (
    TypeError,
    AttributeError,
    NameError,  # and UnboundLocalError
    AssertionError,
    NotImplementedError,
    ImportError,  # a provider importing a module the install lacks: no retry brings it
    SyntaxError,
)
"""Programming errors: never retried as if they were network drops."""

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


class FallbackEnded(ConnectionLost):
    """The offline fallback's own agent (the `local` model) ended or failed; the cloud is retried."""


class ResponseWatch:
    """Whether a response is due, and since when the model has been silent.

    A response is due from the moment a user turn's end marker was handed to the agent (or a tool result
    went back to the model) until the answer ends; while it is due, every model event starts the wait
    again. A user turn that begins takes the floor: nothing is due until that turn is sent. An answer that
    begins is due until it ends, whatever was counted before it. Idle (nothing due), the wait is never up:
    a connection that dies quietly while idle is found at the next turn.
    """

    def __init__(self, timeout_s: float, clock: Clock) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._since: float | None = None  # the last sign of life while a response is due; None: nothing due
        self.floor = False
        """A user turn is open (began, not yet sent): the user has the floor."""
        self.active_at = clock()
        """The last time anything happened: a turn, a model event, an answer's end."""
        self._answering = False  # an answer began and has not ended
        self._newer_turn = False  # a user turn began while that answer played

    @property
    def is_due(self) -> bool:
        return self._since is not None

    @property
    def at_boundary(self) -> bool:
        """Between turns: no user turn open, no answer owed. Where a connection may be swapped or closed."""
        return self._since is None and not self.floor

    def due(self) -> None:
        """A user turn (or a tool result) was sent: an answer is owed from now."""
        self._since = self.active_at = self._clock()
        self.floor = False

    def ended(self) -> None:
        """A user turn ended (its end marker is queued for the agent): an answer is owed from now, even if
        the agent cannot take the audio (a hung peer whose socket buffers are full blocks the send)."""
        self.floor = False
        if self._since is None:
            self._since = self.active_at = self._clock()

    def answering(self) -> None:
        """An answer began (possibly before its turn's end marker was read: a model may end the turn on
        the silence inside it). An answer that began owes its end, even where nothing was counted as due:
        after a drop, several turns go to the next connection at once, and the first answer's end settles
        them all, so a model that hangs in the middle of the next answer would otherwise never be found."""
        self._answering, self._newer_turn = True, False
        if self._since is None and not self.floor:
            self._since = self.active_at = self._clock()

    def heard(self) -> None:
        """Any model event: the connection is alive."""
        self.active_at = self._clock()
        if self._since is not None:
            self._since = self.active_at

    def answered(self) -> None:
        """The answer ended: nothing is owed, unless a user turn began while it played (a barge-in: the
        interrupted answer's end may arrive after that newer turn was sent, whose answer is still owed)."""
        self.active_at = self._clock()
        newer, self._answering, self._newer_turn = self._newer_turn, False, False
        if not newer:
            self._since = None

    def settle(self) -> None:
        """The connection is new, or went: nothing is owed on it."""
        self._since = None
        self._answering = self._newer_turn = False
        self.active_at = self._clock()

    def turn_dropped(self) -> None:
        """The open user turn was dropped (nothing was said in it): the floor is free, nothing is owed."""
        self.floor = False

    def user_turn(self) -> None:
        """A user turn began: the user has the floor, nothing is owed until it is sent."""
        self._newer_turn = self._answering
        self._since = None
        self.floor = True
        self.active_at = self._clock()

    def left(self) -> float | None:
        """Seconds the connection may still stay silent (<= 0: hung), or None when nothing is due."""
        if self._since is None or not math.isfinite(self.timeout_s):
            return None
        return self._since + self.timeout_s - self._clock()

    def idle_left(self, idle_s: float) -> float | None:
        """Seconds until an idle connection may be closed (<= 0: now), or None when it must stay open
        (something due, a turn open) or idle disconnect is off (`idle_s` 0 or infinite)."""
        if not self.at_boundary or not idle_s or not math.isfinite(idle_s):
            return None
        return self.active_at + idle_s - self._clock()


def is_bug(e: BaseException) -> bool:
    """Whether `e` is, or hides, a programming error.

    Looks into exception groups, and behind a plain RuntimeError raised while another error was handled:
    `BidiAgent.run` stops the agent in a `finally`, and a stop that fails then replaces the error that
    made it stop ("failed stop sequence")."""
    todo: list[BaseException] = [e]
    for _ in range(16):  # chains are short; the bound keeps a cyclic one from looping
        if not todo:
            break
        x = todo.pop()
        if isinstance(x, BUGS):
            return True
        if isinstance(x, BaseExceptionGroup):
            todo.extend(x.exceptions)
        elif type(x) is RuntimeError and x.__context__ is not None:
            todo.append(x.__context__)
    return False


def root(e: BaseException) -> BaseException:
    """The error worth naming: the first leaf of an exception group, and the error that made the agent
    stop when its stop failed too (Strands' `stop_all` raises `RuntimeError("exceptions=[...] | failed
    stop sequence")`, whose text is a list of reprs, while the error being handled is its context)."""
    for _ in range(16):
        if isinstance(e, BaseExceptionGroup) and e.exceptions:
            e = e.exceptions[0]
        elif type(e) is RuntimeError and e.__context__ is not None and _STOP_FAILED in str(e):
            e = e.__context__
        else:
            break
    return e


_STOP_FAILED = "failed stop sequence"


def reason(e: BaseException) -> str:
    """One bounded line: the type and the message, whitespace collapsed (provider errors span lines)."""
    e = root(e)
    if isinstance(e, ConnectionLost):
        text = str(e)
    elif type(e) is RuntimeError and _STOP_FAILED in str(e):
        # Nothing behind it: name the stops that failed and the first error's type, not every repr.
        text = "the model's stop failed: " + str(e).removeprefix("exceptions=").split(" | ")[0]
    else:
        text = f"{type(e).__name__}: {e}"
    return " ".join(text.split())[:REASON_CHARS]
