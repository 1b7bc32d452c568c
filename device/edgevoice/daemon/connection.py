"""The model connection: builds the device's one BidiAgent, runs it, and starts it again when it fails.

Its own small state (`Phase`): CONNECTING (building the agent, or starting it), CONNECTED (the agent started
and runs the mic and the speaker), BACKING_OFF (it failed; waiting before the next start), STOPPED (not
running). A later step adds the offline fallback (see `Connection._failed`).

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
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from ..backoff import Backoff, Clock
from ..errors import UserError
from .state import Event

if TYPE_CHECKING:
    from strands.bidi import BidiAgent
    from strands.bidi.models import BidiModel
    from strands.session.session_manager import SessionManager
    from strands.types.agent import LocalAgent

    from ..config import Settings

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
    return " ".join(f"{type(e).__name__}: {e}".split())[:REASON_CHARS]


class _StartMarker:
    """An input stream that reads nothing. `BidiAgent.run` calls every input's `start(agent)` only after
    `agent.start()` returned, that is, after the model connected: its start is the moment the connection
    is up (Strands 1.62 has no hook for it)."""

    def __init__(self, on_start: Callable[[], None]) -> None:
        self._on_start = on_start

    async def start(self, agent: object) -> None:
        self._on_start()

    async def stop(self) -> None:
        return

    async def __call__(self) -> NoReturn:
        await asyncio.get_running_loop().create_future()  # never set: the agent cancels this read at its end
        raise RuntimeError("unreachable")


class Connection[A: Agent]:
    """Builds the agent with `build` (once), runs it with `inputs`/`outputs`, and starts it again when it fails.

    `fire` gets MODEL_LOST and MODEL_BACK (the voice loop's `StateMachine.fire`); `on_phase(old, new)` sees
    every change of `phase`.
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
    ) -> None:
        self._build = build
        self._inputs = [_StartMarker(self._connected), *inputs]
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
                    await self.agent.run(inputs=self._inputs, outputs=self._outputs)
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


class AgentBuilder:
    """Builds the device's one BidiAgent: the configured model (or `model`) over the session store (or
    `session_manager`). The agent is built once and restarted by the connection: it keeps its history, and
    Strands replays it to the model at every start."""

    def __init__(
        self,
        settings: Settings,
        *,
        model: BidiModel | None = None,
        session_manager: SessionManager[LocalAgent] | None = None,
    ) -> None:
        self._settings = settings
        self._model = model
        self.session_manager = session_manager
        """The store, once built (the voice loop retries its held writes and closes it at exit)."""

    async def __call__(self) -> BidiAgent:
        # Strands takes most of start-up to import: build in a thread while frames are already gated
        # (a turn spoken meanwhile waits in the mic's queue).
        return await asyncio.to_thread(self.build)

    def build(self) -> BidiAgent:
        from strands.bidi import BidiAgent

        from ..models import make_model
        from ..session import make_session_manager

        s = self._settings
        model = self._model or make_model(s)
        if self.session_manager is None:
            self.session_manager = make_session_manager(s.session)
        return BidiAgent(
            model=model,
            session_manager=self.session_manager,
            system_prompt=s.model.system_prompt,
            agent_id=s.session.agent_id,
        )
