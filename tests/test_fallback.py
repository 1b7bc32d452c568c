"""The connection's offline fallback, idle disconnect and drop reports (daemon/connection.py), step by step:
a fake clock, a sleep that waits for the test, agents that run like `BidiAgent.run` and fail when told."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from edgevoice.daemon.connection import Connection, Phase
from edgevoice.daemon.state import Event, State, StateMachine
from tests.test_connection import FakeClock, LiveAgent, StepSleep, drive, settle, until


class Refused:
    """A cloud agent whose connect fails at once (the network is down)."""

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, inputs: list[Any], outputs: list[Any]) -> None:
        self.runs += 1
        raise OSError(101, "Network is unreachable")


class NeverConnects:
    """A cloud agent whose connect never completes (a peer that accepts the socket and then says nothing)."""

    def __init__(self) -> None:
        self.cancelled = False

    async def run(self, inputs: list[Any], outputs: list[Any]) -> None:
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Rig:
    """A connection over scripted cloud agents, a `LiveAgent` fallback, and a probe answered by the test."""

    def __init__(
        self, cloud: list[Any], *, fallback: bool = True, idle_s: float = 0.0, connect_s: float = float("inf")
    ) -> None:
        self.clock = FakeClock()
        self.sleep = StepSleep(self.clock)
        self.state = StateMachine()
        self.events: list[str] = []
        self.cloud = list(cloud)
        self.built: list[Any] = []
        self.fallbacks: list[LiveAgent] = []
        self.reachable = False
        self.probes = 0
        self.drops: list[bool] = []
        self.conn = Connection(
            self.build,
            inputs=[],
            outputs=[],
            fire=self.fire,
            on_drop=self.drops.append,
            clock=self.clock,
            sleep=self.sleep,
            rand=lambda: 0.0,
            idle_disconnect_s=idle_s,
            connect_timeout_s=connect_s,
            build_fallback=self.build_fallback if fallback else None,
            probe=self.probe,
        )

    def fire(self, event: Event) -> State:
        self.events.append(event.value)
        return self.state.fire(event)

    async def build(self) -> Any:
        agent = self.cloud.pop(0) if self.cloud else LiveAgent()
        self.built.append(agent)
        return agent

    async def build_fallback(self) -> LiveAgent:
        agent = LiveAgent()
        self.fallbacks.append(agent)
        return agent

    async def probe(self) -> bool:
        self.probes += 1
        return self.reachable


def phase_is(rig: Rig, phase: Phase) -> bool:
    return rig.conn.phase is phase


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_an_unreachable_cloud_hands_over_to_the_fallback_and_takes_back_at_a_turn_boundary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice.daemon.connection")
    rig = Rig([Refused()])

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        # The start failed: no silent wait, the offline model answers at once.
        await until(lambda: phase_is(rig, Phase.FALLBACK) and bool(rig.fallbacks) and rig.fallbacks[0].started, "fb")
        assert rig.events == ["model_lost", "fallback"] and rig.state.state is State.IDLE
        # Behind it, the cloud is probed after each backoff wait; the waits grow while it stays away.
        for n, wait in enumerate([1.0, 2.0, 4.0], 1):
            await until(lambda: rig.sleep.waiting, "waiting to probe")
            assert rig.sleep.calls[-1] == wait
            rig.sleep.step()
            await until(lambda n=n: rig.probes == n, "probed")  # type: ignore[misc]
        # The cloud answers while the user is talking: the fallback keeps the turn until it is answered.
        rig.conn.user_turn()
        rig.reachable = True
        await until(lambda: rig.sleep.waiting, "waiting to probe")
        rig.sleep.step()
        await until(lambda: rig.probes == 4, "probed")
        await settle()
        assert rig.conn.phase is Phase.FALLBACK and not rig.fallbacks[0].stop_began
        rig.conn.response_due()  # the turn went to the offline model
        await settle()
        assert not rig.fallbacks[0].stop_began
        rig.conn.response_done()  # answered: a turn boundary
        await until(lambda: phase_is(rig, Phase.CONNECTED), "back on the cloud")
        assert rig.fallbacks[0].stop_began
        # The cloud agent is built afresh (the store holds the fallback's turns), and the model is back.
        assert len(rig.built) == 2 and rig.built[1].started
        assert rig.events == ["model_lost", "fallback", "model_back"]
        await stop(task)

    drive(main)
    assert rig.conn.fallbacks == 1
    text = [r.getMessage() for r in caplog.records]
    assert "model: the cloud is away; the offline model answers meanwhile" in text
    assert "model: the cloud answers again; leaving the offline fallback between turns" in text


def test_one_drop_of_a_live_connection_retries_before_falling_back() -> None:
    first = LiveAgent()
    rig = Rig([first])

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await until(lambda: phase_is(rig, Phase.CONNECTED), "up")
        first.drop.set()
        # A connection that was up and dropped: one plain retry first (a blip should not switch voices).
        await until(lambda: phase_is(rig, Phase.BACKING_OFF) and rig.sleep.waiting, "backing off")
        assert not rig.fallbacks
        rig.sleep.step()
        # It connects again and drops at once (as Nova Sonic does with no network: its start does no I/O):
        # a connection that flaps is no recovery, so now the fallback answers.
        await until(lambda: phase_is(rig, Phase.FALLBACK) and bool(rig.fallbacks), "fallback")
        await stop(task)

    drive(main)
    assert rig.drops == [False, False]  # nothing was owed either time


def test_no_fallback_when_turned_off() -> None:
    rig = Rig([Refused(), Refused()], fallback=False)

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await until(lambda: phase_is(rig, Phase.BACKING_OFF) and rig.sleep.waiting, "backing off")
        rig.sleep.step()
        await until(lambda: len(rig.built) == 1 and rig.built[0].runs == 2 and rig.sleep.waiting, "again")
        assert rig.conn.phase is Phase.BACKING_OFF and rig.state.state is State.OFFLINE
        await stop(task)

    drive(main)
    assert rig.probes == 0 and rig.conn.fallbacks == 0


def test_a_drop_with_an_answer_owed_is_reported_as_owed() -> None:
    first = LiveAgent()
    rig = Rig([first], fallback=False)

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await until(lambda: phase_is(rig, Phase.CONNECTED), "up")
        rig.conn.response_due()
        first.drop.set()
        await until(lambda: phase_is(rig, Phase.BACKING_OFF), "backing off")
        assert not rig.conn.watch.is_due  # what was owed went with the connection
        await stop(task)

    drive(main)
    assert rig.drops == [True]


def test_an_idle_connection_closes_and_the_next_turn_opens_it_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice.daemon.connection")
    agent = LiveAgent()
    rig = Rig([agent], idle_s=300.0)

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await until(lambda: phase_is(rig, Phase.CONNECTED), "up")
        t0 = rig.clock.now
        await until(lambda: rig.sleep.waiting, "idle timer")
        assert rig.sleep.calls == [300.0]
        rig.clock.now = t0 + 200
        rig.conn.model_event()  # activity: the idle time starts again
        rig.sleep.step()
        await until(lambda: len(rig.sleep.calls) == 2 and rig.sleep.waiting, "idle timer again")
        assert rig.sleep.calls[1] == pytest.approx(200.0)
        rig.sleep.step()
        await until(lambda: phase_is(rig, Phase.IDLE), "closed")
        assert agent.stop_began and rig.events == []  # closing on purpose is no outage
        await settle()
        assert rig.conn.phase is Phase.IDLE and agent.runs == 1  # stays closed while nobody talks
        rig.conn.user_turn()
        await until(lambda: phase_is(rig, Phase.CONNECTED) and agent.runs == 2, "reopened")
        assert len(rig.built) == 1  # the same agent, with its history
        await stop(task)

    drive(main)
    assert rig.events == [] and rig.drops == []
    assert "model: nothing said for 300 s; closing the connection until the next turn" in [
        r.getMessage() for r in caplog.records
    ]


def test_a_turn_in_progress_keeps_an_idle_connection_open() -> None:
    agent = LiveAgent()
    rig = Rig([agent], idle_s=300.0)

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await until(lambda: phase_is(rig, Phase.CONNECTED) and rig.sleep.waiting, "idle timer")
        rig.conn.user_turn()  # a long turn begins: the user has the floor, nothing may close
        await until(lambda: not rig.sleep.waiting, "idle timer cut short")
        rig.clock.now += 1000
        await settle()
        assert rig.conn.phase is Phase.CONNECTED and not agent.stop_began
        await stop(task)

    drive(main)


def test_a_connect_that_never_completes_times_out_and_the_fallback_answers(caplog: pytest.LogCaptureFixture) -> None:
    silent = NeverConnects()
    rig = Rig([silent], connect_s=15.0)

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await until(lambda: rig.sleep.waiting, "connect deadline")
        assert rig.sleep.calls == [15.0] and rig.conn.phase is Phase.CONNECTING
        rig.sleep.step()
        await until(lambda: phase_is(rig, Phase.FALLBACK) and bool(rig.fallbacks), "fallback")
        assert silent.cancelled
        await stop(task)

    drive(main)
    assert "model stopped: connect timeout: the model did not connect within 15 s; retrying in 1.0 s" in [
        r.getMessage() for r in caplog.records
    ]


def test_an_interrupted_answer_ending_after_the_next_turn_was_sent_leaves_that_turn_owed() -> None:
    from edgevoice.daemon.supervise import ResponseWatch

    clock = FakeClock()
    w = ResponseWatch(15.0, clock)
    w.due()  # turn 2 sent
    w.answering()  # its answer begins to play
    w.user_turn()  # the user barges in with turn 3
    w.due()  # turn 3 sent
    w.answered()  # the interrupted answer to turn 2 ends only now
    assert w.is_due and not w.at_boundary  # turn 3 is still owed: no switch, no idle close
    w.answering()
    w.answered()  # turn 3's answer
    assert not w.is_due and w.at_boundary
    w.answered()  # an answer end with no start seen (a provider that sends none) settles as before
    w.due()
    w.answered()
    assert not w.is_due


def test_the_fallbacks_answers_are_not_timed_as_a_hang() -> None:
    rig = Rig([Refused()])

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await until(lambda: phase_is(rig, Phase.FALLBACK) and bool(rig.fallbacks) and rig.fallbacks[0].started, "fb")
        rig.conn.response_due()  # a turn went to the offline model, whose recogniser may be slow on a busy Pi
        await settle()
        rig.clock.now += 600
        await settle()
        assert rig.conn.phase is Phase.FALLBACK and not rig.fallbacks[0].stop_began
        assert 15.0 not in rig.sleep.calls  # only the probe's backoff waits
        await stop(task)

    drive(main)


def test_an_answer_that_begins_before_its_end_marker_is_read_still_settles_the_turn() -> None:
    from edgevoice.daemon.supervise import ResponseWatch

    w = ResponseWatch(15.0, FakeClock())
    w.user_turn()
    w.ended()
    w.answering()  # the local model heard the silence inside the turn and began to answer
    w.due()  # only now did the agent read the turn's end marker
    w.answered()
    assert not w.is_due and w.at_boundary  # a boundary: the fallback may hand back to the cloud here
