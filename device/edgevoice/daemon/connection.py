"""The model connection: builds the device's one BidiAgent, runs it, and starts it again when it fails.

Its own small state (`Phase`): CONNECTING (building the agent, or starting it), CONNECTED (the agent started
and runs the mic and the speaker), BACKING_OFF (it failed; waiting before the next start), STOPPED (not
running). A later step adds the offline fallback (see `Connection._failed`).

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
  capped, jittered backoff, each failure logged once, in one bounded line, with its reason.

`MODEL_LOST` fires when the agent fails (once per outage), `MODEL_BACK` only once it has started again.
Clock, sleep and random are parameters: the tests drive every step without sleeping.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, Protocol

from ..backoff import Backoff, Clock
from ..errors import UserError
from .state import Event
from .supervise import STOP_DEADLINE_S, ConnectionLost, Hung, ResponseWatch, StopTimeout

log = logging.getLogger(__name__)

FIRST_S = 1.0
"""The first wait after a failure."""
MAX_S = 30.0
"""The longest wait: a speaker whose network came back should not stay deaf for minutes."""
JITTER = 0.5
"""Each wait is cut by up to half at random, so a fleet that lost the same server does not return in step."""
STABLE_S = 60.0
"""A connection that stayed up this long and then failed starts the waits again from `FIRST_S`."""
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


class Phase(enum.Enum):
    CONNECTING = "connecting"
    """Building the agent (the first time), or starting it."""
    CONNECTED = "connected"
    """The agent started (its model connected) and runs the mic and the speaker."""
    BACKING_OFF = "backing_off"
    """The agent failed; waiting before the next start."""
    # FALLBACK ("fallback"), a later step: the offline `local` model answers while the cloud is away.
    STOPPED = "stopped"
    """Not running: before `run`, or after it returned or raised."""


class Agent(Protocol):
    """The part of `BidiAgent` the connection uses. `run` starts the agent, calls each input's and output's
    `start(agent)` once it has started, and returns (the conversation ended) or raises (it failed)."""

    async def run(self, inputs: list[Any], outputs: list[Any]) -> None: ...


class AgentBug(Exception):
    """The agent or its model raised a programming error; it was logged with its traceback. Exit 1."""


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


def reason(e: BaseException) -> str:
    """One bounded line: the type and the message, whitespace collapsed (provider errors span lines)."""
    text = str(e) if isinstance(e, ConnectionLost) else f"{type(e).__name__}: {e}"
    return " ".join(text.split())[:REASON_CHARS]


class _StartMarker:
    """An input stream that reads nothing. `BidiAgent.run` calls every input's `start(agent)` only after
    `agent.start()` returned, that is, after the model connected: its start is the moment the connection
    is up (Strands 1.62 has no hook for it). Its `stop()` is the first thing `BidiAgent.run`'s `finally`
    calls: the moment the agent begins to stop, whether it failed or was cancelled."""

    def __init__(self, on_start: Callable[[], None], on_stop: Callable[[], None]) -> None:
        self._on_start = on_start
        self._on_stop = on_stop

    async def start(self, agent: object) -> None:
        self._on_start()

    async def stop(self) -> None:
        self._on_stop()

    async def __call__(self) -> NoReturn:
        await asyncio.get_running_loop().create_future()  # never set: the agent cancels this read at its end
        raise RuntimeError("unreachable")


class Connection[A: Agent]:
    """Builds the agent with `build` (once), runs it with `inputs`/`outputs`, and starts it again when it fails.

    `fire` gets MODEL_LOST and MODEL_BACK (the voice loop's `StateMachine.fire`); `on_phase(old, new)` sees
    every change of `phase`. `response_due()`, `model_event()`, `response_done()` and `user_turn()` are
    what the mic and the speaker tell it (see `supervise.ResponseWatch`); `response_timeout_s` is
    `model.response_timeout_s`.
    """

    def __init__(
        self,
        build: Callable[[], Awaitable[A]],
        *,
        inputs: Sequence[object],
        outputs: Sequence[object],
        fire: Callable[[Event], object],
        on_phase: Callable[[Phase, Phase], None] | None = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        response_timeout_s: float = 15.0,
    ) -> None:
        self._build = build
        self._inputs = [_StartMarker(self._connected, self._stopping), *inputs]
        self._outputs = list(outputs)
        self._fire = fire
        self._on_phase = on_phase
        self._clock = clock
        self._sleep = sleep
        self.backoff = Backoff(FIRST_S, MAX_S, jitter=JITTER, reset_after_s=STABLE_S, clock=clock, rand=rand)
        self.phase = Phase.STOPPED
        self.agent: A | None = None
        self.reconnects = 0
        self._lost_at: float | None = None  # set while the model is lost (MODEL_LOST fired, MODEL_BACK not yet)
        self._failures = 0  # failed attempts in the current outage (the backoff's count spans short reconnects)
        self.watch = ResponseWatch(response_timeout_s, clock)
        self._stopping_at: float | None = None  # when the running agent began to stop
        self._poke = asyncio.Event()  # wakes the watch when something becomes due
        self.abandoned: set[asyncio.Task[None]] = set()  # stops that did not return in time (kept referenced)

    # -- what the mic and the speaker say (plain calls, on the event loop) ---------------------------------
    def response_due(self) -> None:
        """A user turn's end (or a tool result) reached the agent: an answer is owed."""
        self.watch.due()
        self._poke.set()

    def model_event(self) -> None:
        """The agent put out an event: the connection is alive."""
        self.watch.heard()

    def response_done(self) -> None:
        """The answer ended: nothing is owed."""
        self.watch.answered()

    def user_turn(self) -> None:
        """A user turn began: nothing is owed until it is sent."""
        self.watch.user_turn()

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
                    await self._run_agent(self.agent)
                    log.info("model connection ended")
                    return
                except UserError:
                    raise
                except Exception as e:  # see the module's docstring: bugs stop, the rest is retried
                    delay = self._failed(e)
                self._enter(Phase.BACKING_OFF)
                await self._sleep(delay)
        finally:
            self._enter(Phase.STOPPED)

    async def _run_agent(self, agent: A) -> None:
        """`agent.run` under the watch: returns or raises as the agent does, raises `Hung` when a due answer
        never came and `StopTimeout` when the agent's own stop did not return in time."""
        # Later steps of issue 11 hook in here: idle disconnect (`model.idle_disconnect_s`: nothing due for that
        # long closes the connection, the next turn reopens it) is one more reason for `_watch` to return; a tool
        # result in flight when the connection goes (tool-result continuity) is what the teardown must keep.
        self.watch.answered()
        self._stopping_at = None
        run: asyncio.Task[None] = asyncio.ensure_future(agent.run(inputs=self._inputs, outputs=self._outputs))
        hung: Hung | None = None
        try:
            while True:
                watch = asyncio.ensure_future(self._watch())
                try:
                    await asyncio.wait({run, watch}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    watch.cancel()
                if run.done():
                    if hung is not None:
                        raise hung  # it stopped in time after we cancelled it
                    return run.result()  # the agent's own end or error
                if self._stopping_at is None:  # nothing stopping yet: the watch found a due answer overdue
                    hung = Hung(f"hung: no model event for {self.watch.timeout_s:g} s while a response was due")
                    self._stopping_at = self._clock()
                    run.cancel()
                    continue
                self._abandon(run)
                raise hung or StopTimeout(f"stop timeout: the agent's stop did not return within {STOP_DEADLINE_S:g} s")
        except asyncio.CancelledError:
            # The daemon is stopping: the same deadline, so a stop that hangs cannot keep it from exiting.
            if not run.done():
                run.cancel()
                timer = asyncio.ensure_future(self._sleep(STOP_DEADLINE_S))
                try:
                    await asyncio.wait({run, timer}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    timer.cancel()
                if not run.done():
                    self._abandon(run)
            raise

    async def _watch(self) -> None:
        """Returns when the running agent must be torn down: a due answer is overdue, or a stop that began
        has outlived `STOP_DEADLINE_S`. Sleeps (the injected sleep) only while something is due or stopping."""
        while True:
            if self._stopping_at is not None:
                left: float | None = self._stopping_at + STOP_DEADLINE_S - self._clock()
            else:
                left = self.watch.left()
            if left is None:
                self._poke.clear()
                await self._poke.wait()
            elif left <= 0:
                return
            else:
                await self._sleep(left)

    def _stopping(self) -> None:
        if self._stopping_at is None:
            self._stopping_at = self._clock()
            self._poke.set()

    def _abandon(self, task: asyncio.Task[None]) -> None:
        """Stop waiting for a stop that does not return: cancel it once more (a hanging await in it ends
        there, if it can), keep it referenced, and build a fresh agent for the next connection."""
        log.warning("model: the agent's stop did not return within %g s; abandoned", STOP_DEADLINE_S)
        task.cancel()
        self.abandoned.add(task)

        def gone(t: asyncio.Task[None]) -> None:
            self.abandoned.discard(t)
            e = None if t.cancelled() else t.exception()
            if e is not None:
                log.debug("abandoned agent ended: %s", reason(e))

        task.add_done_callback(gone)
        self.agent = None

    def _failed(self, e: Exception) -> float:
        """Log the failure; returns the wait before the next start, or raises AgentBug."""
        if is_bug(e):
            log.error("model: %s is a bug, not an outage; stopping the daemon", type(e).__name__, exc_info=e)
            self._lost()
            raise AgentBug(reason(e)) from e
        # Offline fallback (a later step) goes here: once the cloud has been away long enough, start the
        # `local` model (Phase.FALLBACK) and keep retrying the cloud behind it.
        delay = self.backoff.failed()
        self._failures += 1
        log.error("model stopped: %s; retrying in %.1f s", reason(e), delay)
        self._lost()
        return delay

    def _lost(self) -> None:
        if self._lost_at is None:  # once per outage: the retries of one outage are not new losses
            self._lost_at = self._clock()
            self._fire(Event.MODEL_LOST)

    def _connected(self) -> None:
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
