"""The model connection: builds the device's one BidiAgent, runs it, and starts it again when it fails.

Its own small state (`Phase`): CONNECTING (building the agent, or starting it), CONNECTED (the agent started
and runs the mic and the speaker), BACKING_OFF (it failed; waiting before the next start), FALLBACK (the
cloud is away: the offline `local` model answers meanwhile), IDLE (closed after `model.idle_disconnect_s`
with nothing said; the next turn opens it again), STOPPED (not running).

Supervision (`supervise.py`): while connected, a response that is due (the mic handed the agent a turn's
end) with no model event for `model.response_timeout_s` is a hung connection: `agent.run` is cancelled and
the connection starts again. Stopping is bounded: a stop that has not returned `STOP_DEADLINE_S` after it
began (ours, or the agent's own after an error) is abandoned, logged once, and the next connection gets a
fresh agent (and model) restored from the session store. A receive that ends quietly (Nova Sonic on
END_STREAM or a reset: `agent.receive()` then waits forever) is caught by the same watch when a response is
due; idle, it is harmless until the next turn, which the watch then catches.

What happens on a failure (Strands 1.62 re-raises every model error out of `BidiAgent.run`, except the
connection timeouts it restarts itself: `strands/bidi/agent/loop.py`, `receive`):
- a programming error (`BUGS`: TypeError, AttributeError, ...) is a bug, not a network drop: waiting will not
  fix it. It is logged with its traceback and `AgentBug` stops the daemon (`edgevoice run` exits 1), so the
  service manager restarts it and the bug shows in the journal instead of as a speaker retrying for ever;
- a `UserError` (a bad config key, e.g. a missing API key) goes up unchanged: exit 2, one line;
- anything else (OSError, ConnectionError, TimeoutError, whatever a provider raises) is retried after a
  capped, jittered backoff, each failure logged once, in one bounded line, with its reason. `on_drop` hears
  of it first, with whether an answer was owed (the voice loop resends a turn cut off mid-speech and says
  so when an answer was lost).

Offline fallback (`build_fallback` given): a start that fails, or a second failure in a row, starts the
fallback agent (the `local` model over the same session store) instead of waiting in silence. Behind it, the
cloud is probed after each backoff wait (`probe`: can its endpoint be reached at all, so a dead network
never stalls a turn); once it answers, the switch back happens at a turn boundary, to a cloud agent built
afresh from the store, so the turns the fallback took are in the history the provider gets.

`MODEL_LOST` fires when the agent fails (once per outage), `FALLBACK` when the fallback agent runs, and
`MODEL_BACK` only once the cloud agent has started again. Clock, sleep and random are parameters: the tests
drive every step without sleeping.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..backoff import Backoff, Clock
from ..errors import UserError
from .agentrun import Agent, Runner, StartMarker
from .state import Event
from .supervise import STOP_DEADLINE_S, FallbackEnded, ResponseWatch, is_bug, reason

__all__ = ["STOP_DEADLINE_S", "AgentBug", "Connection", "Phase", "is_bug", "reason"]

log = logging.getLogger(__name__)

FIRST_S = 1.0
"""The first wait after a failure (`model.backoff_initial_s`)."""
MAX_S = 30.0
"""The longest wait (`model.backoff_max_s`): a speaker whose network came back should not stay deaf for minutes."""
JITTER = 0.5
"""Each wait is cut by up to half at random, so a fleet that lost the same server does not return in step."""
STABLE_S = 60.0
"""A connection that stayed up this long and then failed starts the waits again from the first."""


class Phase(enum.Enum):
    CONNECTING = "connecting"
    """Building the agent (the first time), or starting it."""
    CONNECTED = "connected"
    """The agent started (its model connected) and runs the mic and the speaker."""
    BACKING_OFF = "backing_off"
    """The agent failed; waiting before the next start."""
    FALLBACK = "fallback"
    """The cloud is away: the offline `local` model answers, the cloud is probed behind it."""
    IDLE = "idle"
    """Closed after `model.idle_disconnect_s` with nothing said; the next user turn opens it again."""
    STOPPED = "stopped"
    """Not running: before `run`, or after it returned or raised."""


class AgentBug(Exception):
    """The agent or its model raised a programming error; it was logged with its traceback. Exit 1."""


class Connection[A: Agent]:
    """Builds the agent with `build` (once), runs it with `inputs`/`outputs`, and starts it again when it fails.

    `fire` gets MODEL_LOST, FALLBACK and MODEL_BACK (the voice loop's `StateMachine.fire`); `on_phase(old,
    new)` sees every change of `phase`; `on_drop(owed)` hears of every failure before the retry, `owed`
    True when an answer was due (it is lost). `response_due()`, `model_event()`, `response_done()` and
    `user_turn()` are what the mic and the speaker tell it (see `supervise.ResponseWatch`). The rest are
    `model.*` keys: `response_timeout_s` (and `connect_timeout_s`, the same key), `idle_disconnect_s` (0:
    never), the backoff's first and longest wait; `build_fallback` (None: `model.fallback = "none"`)
    builds the offline agent, `probe()` says whether the cloud's endpoint can be reached.
    """

    def __init__(
        self,
        build: Callable[[], Awaitable[A]],
        *,
        inputs: Sequence[object],
        outputs: Sequence[object],
        fire: Callable[[Event], object],
        on_phase: Callable[[Phase, Phase], None] | None = None,
        on_drop: Callable[[bool], None] | None = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        response_timeout_s: float = 15.0,
        connect_timeout_s: float = math.inf,
        idle_disconnect_s: float = 0.0,
        backoff_initial_s: float = FIRST_S,
        backoff_max_s: float = MAX_S,
        build_fallback: Callable[[], Awaitable[A]] | None = None,
        probe: Callable[[], Awaitable[bool]] | None = None,
        turn_waiting: Callable[[], bool] | None = None,
    ) -> None:
        self._build = build
        self._build_fallback = build_fallback
        self._turn_waiting = turn_waiting  # a whole turn waits for the agent (the mic): owed once connected
        self._probe = probe
        self.watch = ResponseWatch(response_timeout_s, clock)
        self.runner = Runner(self.watch, list(outputs), clock=clock, sleep=sleep, connect_timeout_s=connect_timeout_s)
        self._inputs = [StartMarker(self._connected, self.runner.stopping), *inputs]
        self._fallback_inputs = [StartMarker(self.runner.up, self.runner.stopping), *inputs]
        self._fire = fire
        self._on_phase = on_phase
        self._on_drop = on_drop
        self._clock = clock
        self._sleep = sleep
        self.idle_disconnect_s = idle_disconnect_s
        self.backoff = Backoff(
            backoff_initial_s, backoff_max_s, jitter=JITTER, reset_after_s=STABLE_S, clock=clock, rand=rand
        )
        self.phase = Phase.STOPPED
        self.agent: A | None = None
        self.reconnects = 0
        self.fallbacks = 0
        self.last_error: str | None = None
        """The last failure's reason line (as logged), kept after recovery: for `edgevoice status`."""
        self._lost_at: float | None = None  # set while the model is lost (MODEL_LOST fired, MODEL_BACK not yet)
        self._failures = 0  # failed attempts in the current outage (the backoff's count spans short reconnects)
        self._started = False  # the current attempt's agent started (its model connected)
        self._retry_in = backoff_initial_s  # the fallback's wait before its next probe of the cloud
        self._streak = 0  # failures since a connection last stayed up `STABLE_S` (one that flaps counts on)
        self._up_at = 0.0  # when the current attempt's agent started
        self.abandoned = self.runner.abandoned

    # -- what the mic and the speaker say (plain calls, on the event loop) ---------------------------------
    def response_due(self) -> None:
        """A user turn's end (or a tool result) reached the agent: an answer is owed."""
        self.watch.due()
        self.runner.poke()

    def model_event(self) -> None:
        """The agent put out an event: the connection is alive."""
        self.watch.heard()

    @property
    def has_fallback(self) -> bool:
        """Whether an offline fallback answers while the cloud is away."""
        return self._build_fallback is not None

    def response_started(self) -> None:
        """An answer began: it answers the turns sent so far, and is due until it ends."""
        self.watch.answering()
        self.runner.poke()

    def response_done(self) -> None:
        """The answer ended: nothing is owed (unless a turn was sent after it began)."""
        self.watch.answered()
        self.runner.poke()

    def turn_ended(self) -> None:
        """A user turn ended: its answer is owed from now (the agent may not even take the audio)."""
        self.watch.ended()
        self.runner.poke()

    def turn_dropped(self) -> None:
        """The open user turn was dropped (a button press with nothing said): no answer is owed for it."""
        self.watch.turn_dropped()
        self.runner.poke()

    def user_turn(self) -> None:
        """A user turn began: nothing is owed until it is sent (and an idle connection opens again)."""
        self.watch.user_turn()
        self.runner.poke()

    async def run(self) -> None:
        """Connect, and stay connected until the agent ends the conversation itself or this is cancelled.

        Raises `AgentBug` on a programming error and a `UserError` as it is; every other failure is
        retried."""
        try:
            while True:
                self._enter(Phase.CONNECTING)
                try:
                    if self.agent is None:
                        self.agent = await self._build()
                    if await self._run_agent(self.agent, self._inputs, idle_s=self.idle_disconnect_s):
                        await self._idle()
                        continue
                    log.info("model connection ended")
                    return
                except UserError:
                    raise
                except Exception as e:  # see the module's docstring: bugs stop, the rest is retried
                    delay = self._failed(e)
                if self._build_fallback is not None and (not self._started or self._streak > 1):
                    await self._fallback(delay)
                else:
                    self._enter(Phase.BACKING_OFF)
                    await self._sleep(delay)
        finally:
            self._enter(Phase.STOPPED)

    async def _run_agent(self, agent: A, inputs: list[Any], **kw: Any) -> bool:
        """`Runner.run`; an agent whose stop was abandoned is never started again."""
        self._started = False
        try:
            return await self.runner.run(agent, inputs, **kw)
        finally:
            if self.runner.abandoned_last and agent is self.agent:
                self.agent = None

    def _failed(self, e: Exception) -> float:
        """Log the failure, tell `on_drop`; returns the wait before the next start, or raises AgentBug."""
        if is_bug(e):
            log.error("model: %s is a bug, not an outage; stopping the daemon", type(e).__name__, exc_info=e)
            self._lost()
            raise AgentBug(reason(e)) from e
        delay = self.backoff.failed()
        self._failures += 1
        if self._started and self._clock() - self._up_at >= STABLE_S:
            self._streak = 0  # it had been up a good while: a new outage, not the next failure of this one
        self._streak += 1
        self.last_error = reason(e)
        log.error("model stopped: %s; retrying in %.1f s", self.last_error, delay, extra={"reason": self.last_error})
        self._dropped()
        self._lost()
        return delay

    def _dropped(self) -> None:
        owed = self.watch.is_due
        self.watch.settle()  # whatever was owed went with the connection (the voice loop says so)
        if self._on_drop:
            self._on_drop(owed)

    async def _fallback(self, delay: float) -> None:
        """Run the offline agent until the cloud answers the probe and a turn boundary comes (or it fails).

        The cloud agent is built afresh afterwards: the turns the fallback took are in the store, not in
        the old agent's memory."""
        assert self._build_fallback is not None
        self._enter(Phase.FALLBACK)
        self._retry_in = delay
        try:
            agent = await self._build_fallback()
        except UserError:
            raise
        except Exception as e:  # a broken fallback must not keep the cloud from coming back
            if is_bug(e):
                raise AgentBug(reason(e)) from e
            log.error("model: the offline fallback cannot start: %s", reason(e))
            await self._sleep(delay)
            return
        self.agent = None
        self.fallbacks += 1
        log.warning("model: the cloud is away; the offline model answers meanwhile")
        self._fire(Event.FALLBACK)
        try:
            if await self._run_agent(agent, self._fallback_inputs, back=self._cloud_back()):
                return
            raise FallbackEnded("the offline model ended")
        except UserError:
            raise
        except Exception as e:
            if is_bug(e):
                log.error("model: %s in the offline fallback is a bug", type(e).__name__, exc_info=e)
                raise AgentBug(reason(e)) from e
            log.error("model: the offline fallback stopped: %s", reason(e))
            self._dropped()
            await self._sleep(self._retry_in)

    async def _cloud_back(self) -> None:
        """Returns once the cloud's endpoint can be reached, probing after each backoff wait."""
        while True:
            await self._sleep(self._retry_in)
            try:
                ok = self._probe is None or await self._probe()
            except Exception as e:  # a probe is a question, not a failure of the device
                log.debug("model: probe failed: %s", reason(e))
                ok = False
            if ok:
                log.info("model: the cloud's endpoint answers again; switching back at the next turn boundary")
                return
            self._retry_in = self.backoff.failed()
            log.debug("model: the cloud is still away; next probe in %.1f s", self._retry_in)

    async def _idle(self) -> None:
        """Closed for being idle: wait for the next user turn, which opens the connection again."""
        self._enter(Phase.IDLE)
        await self.runner.wait_for_turn()
        log.info("model: a turn began; opening the connection again")

    def _lost(self) -> None:
        if self._lost_at is None:  # once per outage: the retries of one outage are not new losses
            self._lost_at = self._clock()
            self._fire(Event.MODEL_LOST)

    def _connected(self) -> None:
        self.runner.up()
        if self._turn_waiting is not None and self._turn_waiting():
            self.watch.ended()  # a turn that ended before this connection (e.g. resent after a drop) is owed
        self._started = True
        self._up_at = self._clock()
        self.backoff.succeeded()
        self._enter(Phase.CONNECTED)
        if self._lost_at is None:
            log.info("model connected")
            return
        log.info("model back after %.1f s (%d failed attempt(s))", self._clock() - self._lost_at, self._failures)
        self._lost_at, self._failures = None, 0
        self.reconnects += 1
        self._fire(Event.MODEL_BACK)

    def _enter(self, phase: Phase) -> None:
        old, self.phase = self.phase, phase
        if old is not phase:
            log.debug("connection %s -> %s", old.value, phase.value)
            if self._on_phase:
                self._on_phase(old, phase)
