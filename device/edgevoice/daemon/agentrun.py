"""One run of one agent under the watch (`supervise.py`): how a running connection is torn down.

`Runner.run(agent, inputs)` runs `agent.run` and returns or raises as the agent does, except that it tears
the agent down itself when the watch says so: a due answer overdue (`Hung`), a connection idle for
`idle_s` (returns True), or, for the offline fallback, the cloud back (`back` done) at a turn boundary
(returns True). A start is bounded too: an agent whose model has not connected (`up()`, from its
`StartMarker`) within `connect_timeout_s` is `Hung` (a peer that accepts the socket and never answers
would otherwise keep the speaker deaf with nothing due to time out). Every stop is bounded: one that has
not returned `STOP_DEADLINE_S` after it began (ours, or the agent's own after an error) is abandoned
(`abandoned_last`), logged once, and kept referenced. Clock and sleep are parameters: the tests drive
every step without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, Protocol

from ..backoff import Clock
from .supervise import STOP_DEADLINE_S, Hung, ResponseWatch, StopTimeout, reason

log = logging.getLogger("edgevoice.daemon.connection")  # one logger for the connection's story


class Agent(Protocol):
    """The part of `BidiAgent` the connection uses. `run` starts the agent, calls each input's and output's
    `start(agent)` once it has started, and returns (the conversation ended) or raises (it failed)."""

    async def run(self, inputs: list[Any], outputs: list[Any]) -> None: ...


class StartMarker:
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


class Runner:
    """Runs agents one at a time with `outputs`, under `watch`. `poke()` wakes the watch when something
    became due or a turn began; `stopping()` (a `StartMarker`'s stop) says the agent began to stop."""

    def __init__(
        self,
        watch: ResponseWatch,
        outputs: list[Any],
        *,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]],
        connect_timeout_s: float = math.inf,
    ) -> None:
        self.watch = watch
        self._outputs = outputs
        self._clock = clock
        self._sleep = sleep
        self._stopping_at: float | None = None  # when the running agent began to stop
        self._poke = asyncio.Event()
        self.abandoned: set[asyncio.Task[None]] = set()  # stops that did not return in time (kept referenced)
        self.abandoned_last = False
        """The last run's stop was abandoned: its agent (and model) must not be started again."""
        self._up = True  # the running agent's model connected
        self._connect_by = 0.0  # when it must have connected
        self.connect_timeout_s = connect_timeout_s
        """How long a model may take to connect (the connection passes `model.response_timeout_s`)."""

    def up(self) -> None:
        """The running agent's model connected (its `StartMarker` started)."""
        self._up = True
        self._poke.set()
    def poke(self) -> None:
        self._poke.set()

    def stopping(self) -> None:
        if self._stopping_at is None:
            self._stopping_at = self._clock()
            self._poke.set()

    async def wait_for_turn(self) -> None:
        """Returns once a user turn has begun (an idle connection opens again then)."""
        while not (self.watch.floor or self.watch.is_due):
            self._poke.clear()
            await self._poke.wait()

    async def run(
        self, agent: Agent, inputs: list[Any], *, idle_s: float = 0.0, back: Awaitable[None] | None = None
    ) -> bool:
        """`agent.run` under the watch: returns (False) or raises as the agent does, raises `Hung` when a
        due answer never came and `StopTimeout` when the agent's own stop did not return in time. Returns
        True when it closed the agent on purpose: idle for `idle_s` (0: never), or `back` finished and a
        turn boundary came."""
        self.watch.settle()
        self._stopping_at = None
        self.abandoned_last = False
        self._up = False
        self._connect_by = self._clock() + self.connect_timeout_s
        run: asyncio.Task[None] = asyncio.ensure_future(agent.run(inputs=inputs, outputs=self._outputs))
        cloud = asyncio.ensure_future(back) if back is not None else None
        hung: Hung | None = None
        closing = False  # we are closing it on purpose (idle, or the cloud is back)
        try:
            while True:
                boundary = cloud is not None and cloud.done()
                watch = asyncio.ensure_future(self._watch(boundary, idle_s, timed=cloud is None))
                waiting: set[asyncio.Future[Any]] = {run, watch}
                if cloud is not None and not boundary:
                    waiting.add(cloud)
                try:
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    watch.cancel()
                if run.done():
                    if hung is not None:
                        raise hung  # it stopped in time after we cancelled it
                    if closing:
                        if not run.cancelled() and (e := run.exception()) is not None:
                            log.debug("closed agent ended: %s", reason(e))
                        return True
                    run.result()  # the agent's own end, or its error
                    return False
                if self._stopping_at is None:  # nothing stopping yet: a reason to stop it came up
                    cloud_back = cloud is not None and cloud.done()
                    if cloud_back and not self.watch.at_boundary and not watch.done():
                        continue  # the cloud answered mid-turn: from now on the watch waits for the boundary
                    if cloud_back and self.watch.at_boundary:
                        log.info("model: the cloud answers again; leaving the offline fallback between turns")
                        closing = True
                    elif (left := self.watch.idle_left(idle_s)) is not None and left <= 0:
                        log.info("model: nothing said for %g s; closing the connection until the next turn", idle_s)
                        closing = True
                    elif not self._up:
                        hung = Hung(f"connect timeout: the model did not connect within {self.connect_timeout_s:g} s")
                    else:
                        hung = Hung(f"hung: no model event for {self.watch.timeout_s:g} s while a response was due")
                    self._stopping_at = self._clock()
                    run.cancel()
                    continue
                self._abandon(run)
                if closing:
                    return True
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
        finally:
            if cloud is not None:
                cloud.cancel()

    async def _watch(self, at_boundary_ends: bool, idle_s: float, *, timed: bool = True) -> None:
        """Returns when the running agent must be torn down: a due answer is overdue, a stop that began has
        outlived `STOP_DEADLINE_S`, an idle connection may be closed, or (`at_boundary_ends`: the fallback)
        a turn boundary came. Sleeps (the injected sleep) only while something is due, stopping or
        idle-timed; an idle wait is cut short when a turn begins (`poke`)."""
        while True:
            self._poke.clear()
            if self._stopping_at is not None:
                left: float | None = self._stopping_at + STOP_DEADLINE_S - self._clock()
            elif not self._up and math.isfinite(self.connect_timeout_s):
                left = self._connect_by - self._clock()
                if left > 0:
                    await self._sleep_or_poke(left)  # `up()` pokes
                    continue
            elif self.watch.is_due:
                # The offline fallback's answers are not timed (`timed`): the local model cannot hang on a
                # network, and on a busy Pi its recogniser may take longer than a cloud answer is allowed.
                left = self.watch.left() if timed else None
                if at_boundary_ends and left is not None and left > 0:
                    await self._sleep_or_poke(left)  # the answer's end is the boundary waited for
                    continue
            elif at_boundary_ends:
                if self.watch.at_boundary:
                    return
                left = None  # a user turn is open: wait until it is sent
            else:
                left = self.watch.idle_left(idle_s)
                if left is not None and left > 0:
                    await self._sleep_or_poke(left)
                    continue
            if left is None:
                await self._poke.wait()
            elif left <= 0:
                return
            else:
                await self._sleep(left)

    async def _sleep_or_poke(self, seconds: float) -> None:
        timer = asyncio.ensure_future(self._sleep(seconds))
        poked = asyncio.ensure_future(self._poke.wait())
        try:
            await asyncio.wait({timer, poked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            poked.cancel()

    def _abandon(self, task: asyncio.Task[None]) -> None:
        """Stop waiting for a stop that does not return: cancel it once more (a hanging await in it ends
        there, if it can), keep it referenced; the agent must be built afresh (`abandoned_last`)."""
        log.warning("model: the agent's stop did not return within %g s; abandoned", STOP_DEADLINE_S)
        task.cancel()
        self.abandoned.add(task)
        self.abandoned_last = True

        def gone(t: asyncio.Task[None]) -> None:
            self.abandoned.discard(t)
            e = None if t.cancelled() else t.exception()
            if e is not None:
                log.debug("abandoned agent ended: %s", reason(e))

        task.add_done_callback(gone)
