"""The model connection (daemon/connection.py) driven step by step: a fake clock, a fake sleep that waits for
the test, and agents that fail as told. No real sleeps; one test runs a real BidiAgent to pin down when
Strands calls the inputs' start (the moment the connection counts as up)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from edgevoice.config import ConfigError
from edgevoice.daemon.connection import MAX_S, STABLE_S, AgentBug, Connection, Phase, is_bug, reason
from edgevoice.daemon.state import Event, State, StateMachine
from edgevoice.daemon.supervise import STOP_DEADLINE_S


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StepSleep:
    """`await sleep(s)` waits until the test calls `step()`, then moves the fake clock on by `s`."""

    def __init__(self, clock: FakeClock, *, auto: bool = False) -> None:
        self.clock = clock
        self.auto = auto  # True: return at once (the clock still moves)
        self.calls: list[float] = []
        self._gate: asyncio.Future[None] | None = None

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        end = self.clock.now + seconds  # a test may move the clock meanwhile (a model event at a given time)
        if not self.auto:
            self._gate = asyncio.get_running_loop().create_future()
            await self._gate
        else:
            for _ in range(50):  # let the loop run a while, as a real wait would (a real stop takes a few turns)
                await asyncio.sleep(0)
        self.clock.now = max(self.clock.now, end)

    @property
    def waiting(self) -> bool:
        return self._gate is not None and not self._gate.done()

    def step(self) -> None:
        assert self._gate is not None and not self._gate.done()
        self._gate.set_result(None)


class ScriptedAgent:
    """Each `run` takes the next step of the script: `(up_s, error)`. `up_s` None: fail with `error` before
    starting (a refused connect). Otherwise start (call every input's and output's `start`, as
    `BidiAgent.run` does once its model connected), stay up `up_s` on the fake clock, then raise `error`,
    or, with no error, run until `end` is set and return."""

    def __init__(self, script: list[tuple[float | None, BaseException | None]], clock: FakeClock, trace: list[str]):
        self.script = list(script)
        self.clock = clock
        self.trace = trace
        self.runs = 0
        self.end = asyncio.Event()

    async def run(self, inputs: list[Any], outputs: list[Any]) -> None:
        self.runs += 1
        up_s, error = self.script.pop(0) if self.script else (0.0, None)
        if up_s is None:
            assert error is not None
            self.trace.append("connect refused")
            raise error
        self.trace.append("agent started")
        for stream in [*inputs, *outputs]:
            await stream.start(self)
        self.clock.now += up_s
        if error is not None:
            raise error
        await self.end.wait()


class Rig:
    def __init__(
        self,
        script: list[tuple[float | None, BaseException | None]],
        *,
        build_errors: list[BaseException] | None = None,
        auto: bool = False,
        rand: Callable[[], float] = lambda: 0.5,
    ) -> None:
        self.clock = FakeClock()
        self.sleep = StepSleep(self.clock, auto=auto)
        self.trace: list[str] = []
        self.state = StateMachine()
        self.phases: list[Phase] = []
        self.agent = ScriptedAgent(script, self.clock, self.trace)
        self.build_errors = list(build_errors or [])
        self.builds = 0
        self.conn = Connection(
            self.build,
            inputs=[],
            outputs=[],
            fire=self.fire,
            on_phase=lambda _old, new: self.phases.append(new),
            clock=self.clock,
            sleep=self.sleep,
            rand=rand,
        )

    async def build(self) -> ScriptedAgent:
        self.builds += 1
        if self.build_errors:
            raise self.build_errors.pop(0)
        return self.agent

    def fire(self, event: Event) -> State:
        self.trace.append(event.value)
        return self.state.fire(event)


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(5000):  # event-loop turns, not time
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never: {what}")


def drive(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 10))


C, B = Phase.CONNECTING, Phase.BACKING_OFF


def test_fails_then_connects_step_by_step(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice.daemon.connection")

    class ProviderError(Exception):  # what a provider raises: not ours, not a bug
        pass

    errors: list[BaseException] = [
        ConnectionError("refused"),
        OSError(101, "Network is unreachable"),
        TimeoutError("handshake"),
        ProviderError("1011 internal error"),
    ]
    rig = Rig([(None, e) for e in errors])

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        for n, base in enumerate([1.0, 2.0, 4.0, 8.0], 1):
            await until(lambda: rig.sleep.waiting, "backing off")
            assert rig.conn.phase is Phase.BACKING_OFF and rig.state.state is State.OFFLINE
            assert rig.sleep.calls[-1] == base * 0.75  # rand 0.5, jitter 0.5: a quarter off
            assert rig.agent.runs == n
            rig.sleep.step()
        await until(lambda: rig.conn.phase is Phase.CONNECTED, "connected")
        assert rig.state.state is State.IDLE
        rig.agent.end.set()  # the agent ends the conversation itself: nothing to restart
        await task

    drive(main)
    assert rig.phases == [C, B, C, B, C, B, C, B, C, Phase.CONNECTED, Phase.STOPPED]
    # Lost once for the whole outage; back only after the agent started again.
    assert rig.trace == ["connect refused", "model_lost", *["connect refused"] * 3, "agent started", "model_back"]
    assert rig.builds == 1 and rig.conn.reconnects == 1
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert lines == [
        "model stopped: ConnectionError: refused; retrying in 0.8 s",
        "model stopped: OSError: [Errno 101] Network is unreachable; retrying in 1.5 s",
        "model stopped: TimeoutError: handshake; retrying in 3.0 s",
        "model stopped: ProviderError: 1011 internal error; retrying in 6.0 s",
    ]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    # 0.75 + 1.5 + 3 + 6 s on the fake clock
    assert infos == ["model back after 11.2 s (4 failed attempt(s))", "model connection ended"]


def test_delays_double_to_the_cap_within_jitter_bounds() -> None:
    rng = random.Random(11)
    n = 12
    rig = Rig([(None, ConnectionError("down"))] * n, auto=True, rand=rng.random)

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await until(lambda: rig.conn.phase is Phase.CONNECTED, "connected")
        rig.agent.end.set()
        await task

    drive(main)
    assert len(rig.sleep.calls) == n
    base = 1.0
    for d in rig.sleep.calls:
        assert base / 2 <= d <= base, rig.sleep.calls
        base = min(base * 2, MAX_S)
    assert max(rig.sleep.calls) <= MAX_S
    assert len(set(rig.sleep.calls)) == n  # jittered: no two waits alike


def test_a_factory_that_fails_n_times_then_works() -> None:
    rig = Rig([], build_errors=[OSError("no route"), ConnectionResetError("reset")], auto=True)

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await until(lambda: rig.conn.phase is Phase.CONNECTED, "connected")
        rig.agent.end.set()
        await task

    drive(main)
    assert rig.builds == 3 and rig.agent.runs == 1
    assert rig.trace == ["model_lost", "agent started", "model_back"]
    assert rig.sleep.calls == [0.75, 1.5]


def test_a_type_error_stops_it_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig([(None, ConnectionError("down")), (5.0, TypeError("send() takes 2 positional arguments"))], auto=True)

    async def main() -> None:
        with pytest.raises(AgentBug, match="TypeError: send"):
            await rig.conn.run()

    drive(main)
    assert rig.sleep.calls == [0.75]  # the drop was retried; the bug was not
    assert rig.agent.runs == 2
    assert rig.phases[-1] is Phase.STOPPED
    assert rig.trace == ["connect refused", "model_lost", "agent started", "model_back", "model_lost"]
    assert rig.state.state is State.OFFLINE
    bug = [r for r in caplog.records if r.levelno == logging.ERROR and "bug" in r.getMessage()]
    assert len(bug) == 1 and bug[0].exc_info is not None and bug[0].exc_info[0] is TypeError


def test_a_user_error_is_not_retried() -> None:
    """A missing API key is a config mistake: `edgevoice run` exits 2 with its one line, as before."""
    rig = Rig([], build_errors=[ConfigError("config: model.provider 'openai_realtime' needs OPENAI_API_KEY")])

    async def main() -> None:
        with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
            await rig.conn.run()

    drive(main)
    assert rig.sleep.calls == [] and rig.trace == [] and rig.conn.phase is Phase.STOPPED


def test_a_connection_that_stayed_up_starts_the_delays_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice.daemon.connection")
    rig = Rig(
        [
            (None, ConnectionError("a")),
            (None, ConnectionError("b")),
            (5.0, ConnectionError("short-lived")),  # up 5 s: the same outage, the waits keep growing
            (STABLE_S + 1, ConnectionError("after a good while")),  # a new outage: from the first wait again
        ],
        auto=True,
        rand=lambda: 0.0,
    )

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await until(lambda: rig.agent.runs == 5 and rig.conn.phase is Phase.CONNECTED, "connected")
        rig.agent.end.set()
        await task

    drive(main)
    assert rig.sleep.calls == [1.0, 2.0, 4.0, 1.0]
    backs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("model back")]
    # Each outage counts its own failures (the short-lived connection's drop is its own outage).
    assert [b.split(" (", 1)[1] for b in backs] == [f"{n} failed attempt(s))" for n in (2, 1, 1)]
    assert rig.trace.count("model_lost") == 3 and rig.trace.count("model_back") == 3
    assert rig.trace[-2:] == ["agent started", "model_back"]


def test_cancelled_while_backing_off() -> None:
    rig = Rig([(None, ConnectionError("down"))])

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await until(lambda: rig.sleep.waiting, "backing off")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    drive(main)
    assert rig.phases == [C, B, Phase.STOPPED]


def test_a_reason_is_one_bounded_line(caplog: pytest.LogCaptureFixture) -> None:
    body = "{\n  'error': 'upstream',\n" + "x" * 2000 + "\n}"
    rig = Rig([(None, RuntimeError(body))], auto=True)

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await until(lambda: rig.conn.phase is Phase.CONNECTED, "connected")
        rig.agent.end.set()
        await task

    drive(main)
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "\n" not in line and len(line) < 360 and line.startswith("model stopped: RuntimeError: { 'error'")


def test_bugs_are_found_behind_a_failed_stop_and_in_groups() -> None:
    def failed_stop_after(e: BaseException) -> RuntimeError:
        try:
            try:
                raise e
            finally:
                raise RuntimeError("exceptions=[...] | failed stop sequence")
        except RuntimeError as r:
            return r

    assert is_bug(failed_stop_after(AttributeError("'NoneType' object has no attribute 'send'")))
    assert not is_bug(failed_stop_after(ConnectionResetError("reset")))
    assert is_bug(ExceptionGroup("tasks", [OSError("x"), AssertionError()]))
    assert not is_bug(ExceptionGroup("tasks", [OSError("x"), TimeoutError()]))
    assert not is_bug(RuntimeError("plain"))
    for e in (TypeError(), NameError(), UnboundLocalError(), NotImplementedError(), ModuleNotFoundError()):
        assert is_bug(e), e
    assert reason(ValueError("a\n  b")) == "ValueError: a b"


def test_model_back_fires_only_after_a_real_bidi_agent_started() -> None:
    """Against Strands itself: `BidiAgent.run` calls the inputs' start after `model.start()` returned, so
    MODEL_BACK cannot come before the model is connected again."""
    from strands.bidi import BidiAgent

    from edgevoice.models.local import LocalModel

    trace: list[str] = []

    class FlakyModel(LocalModel):
        fails = 2

        async def start(self, *args: Any, **kwargs: Any) -> None:
            if self.fails:
                self.fails -= 1
                trace.append("model start failed")
                raise ConnectionError("refused")
            await super().start(*args, **kwargs)
            trace.append("model started")

    clock = FakeClock()
    sleep = StepSleep(clock, auto=True)
    state = StateMachine()
    agent = BidiAgent(model=FlakyModel(pace_lead_s=None))

    async def build() -> BidiAgent:
        return agent

    def fire(e: Event) -> State:
        trace.append(e.value)
        return state.fire(e)

    conn = Connection(build, inputs=[], outputs=[], fire=fire, clock=clock, sleep=sleep)

    async def main() -> None:
        task = asyncio.create_task(conn.run())
        await until(lambda: conn.phase is Phase.CONNECTED, "connected")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(main(), 30))
    assert trace == ["model start failed", "model_lost", "model start failed", "model started", "model_back"]
    # The backoff waited twice; each failed start's stop (BidiAgent.run's finally) ran under the stop deadline.
    assert state.state is State.IDLE and len([c for c in sleep.calls if c != STOP_DEADLINE_S]) == 2
    assert not conn.abandoned


def test_run_exits_1_on_an_agent_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """`edgevoice run`: a bug in the model stops the daemon with exit 1, so systemd restarts it."""
    from edgevoice import config
    from edgevoice.commands import run
    from edgevoice.daemon import voice

    class BuggyLoop:
        def __init__(self, *_a: object, **_kw: object) -> None:
            self.session_manager = None
            self.services: list[object] = []
            self.sessions = type("Sessions", (), {"when_switched": None})()

        async def run(self) -> None:
            raise AgentBug("TypeError: boom")

    monkeypatch.setattr(voice, "VoiceLoop", BuggyLoop)
    monkeypatch.setattr(voice, "make_capture", lambda *_a, **_kw: None)
    monkeypatch.setattr(run, "services", lambda *_a: [])  # the watchdog and the panel need a real loop
    from edgevoice.appliance.notify import Notifier

    assert asyncio.run(run._main(config.Settings(), None, None, Notifier(None))) == 1


# --- supervision: hung connections and stops that do not return ------------------------------------------


class LiveAgent:
    """Runs like `BidiAgent.run`: starts the inputs and outputs, stays up until cancelled or `drop` is set
    (then raises ConnectionError), and in its `finally` stops the inputs (where the connection learns that
    it is stopping) and then itself; `stop_hangs` makes that stop never return (Nova Sonic after a reset)."""

    def __init__(self, *, stop_hangs: bool = False) -> None:
        self.stop_hangs = stop_hangs
        self.drop = asyncio.Event()
        self.started = False
        self.stop_began = False
        self.stop_cancelled = False
        self.runs = 0

    async def run(self, inputs: list[Any], outputs: list[Any]) -> None:
        self.runs += 1
        try:
            for stream in [*inputs, *outputs]:
                await stream.start(self)
            self.started = True
            await self.drop.wait()
            raise ConnectionError("peer reset")
        finally:
            for stream in inputs:
                await stream.stop()
            self.stop_began = True
            if self.stop_hangs:
                try:
                    await asyncio.get_running_loop().create_future()
                except asyncio.CancelledError:
                    self.stop_cancelled = True
                    raise


class Supervised:
    """A connection over `LiveAgent`s (a fresh one per build), a fake clock and a stepping sleep."""

    def __init__(self, agents: list[LiveAgent], timeout_s: float = 15.0) -> None:
        self.clock = FakeClock()
        self.sleep = StepSleep(self.clock)
        self.state = StateMachine()
        self.agents = list(agents)
        self.built: list[LiveAgent] = []
        self.conn = Connection(
            self.build,
            inputs=[],
            outputs=[],
            fire=self.state.fire,
            clock=self.clock,
            sleep=self.sleep,
            rand=lambda: 0.0,
            response_timeout_s=timeout_s,
        )

    async def build(self) -> LiveAgent:
        agent = self.agents.pop(0) if self.agents else LiveAgent()
        self.built.append(agent)
        return agent

    async def connected(self, runs: int) -> None:
        """Until the connection is up for the `runs`-th time (over all the agents built)."""
        await until(lambda: sum(a.runs for a in self.built) == runs and self.conn.phase is Phase.CONNECTED, "up")


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def settle() -> None:
    for _ in range(100):
        await asyncio.sleep(0)


def test_a_due_response_with_no_model_event_reconnects_after_exactly_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Supervised([LiveAgent()], timeout_s=15.0)
    torn_down_at: list[float] = []

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await rig.connected(1)
        await settle()
        assert rig.sleep.calls == []  # idle: the watch does not even wait
        t0 = rig.clock.now
        rig.conn.response_due()  # the mic handed the agent a turn's end
        await until(lambda: rig.sleep.waiting, "watching")
        assert rig.sleep.calls == [15.0]
        rig.sleep.step()
        await until(lambda: rig.built[0].stop_began, "torn down")
        torn_down_at.append(rig.clock.now - t0)
        await until(lambda: rig.conn.phase is Phase.BACKING_OFF and rig.sleep.waiting, "backing off")
        assert rig.state.state is State.OFFLINE
        rig.sleep.step()
        await rig.connected(2)
        assert rig.state.state is State.IDLE
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    drive(main)
    assert torn_down_at == [15.0] and len(rig.built) == 1  # its stop returned: the same agent starts again
    # The watch; the stop deadline armed at the teardown (met: the stop returned at once); the backoff; the
    # stop deadline at the exit (met).
    assert rig.sleep.calls == [15.0, STOP_DEADLINE_S, 1.0, STOP_DEADLINE_S]
    assert errors(caplog) == [
        "model stopped: hung: no model event for 15 s while a response was due; retrying in 1.0 s"
    ]
    assert rig.conn.reconnects == 1 and not rig.conn.abandoned


def test_model_events_keep_a_due_response_alive_and_idle_never_times_out() -> None:
    rig = Supervised([LiveAgent()], timeout_s=15.0)

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await rig.connected(1)
        t0 = rig.clock.now
        rig.conn.response_due()
        await until(lambda: rig.sleep.waiting, "watching")
        rig.clock.now = t0 + 10
        rig.conn.model_event()  # audio, a transcript...: alive; the wait starts again from here
        rig.sleep.step()  # wakes at t0 + 15: 10 s left
        await until(lambda: len(rig.sleep.calls) == 2 and rig.sleep.waiting, "watching again")
        assert rig.sleep.calls == [15.0, 10.0] and rig.clock.now == t0 + 15
        rig.clock.now = t0 + 24
        rig.conn.response_done()  # the answer ended: nothing due
        rig.sleep.step()
        await settle()
        assert rig.conn.phase is Phase.CONNECTED and not rig.built[0].stop_began
        # Idle for a day: the watch waits without sleeping, and nothing is torn down.
        rig.clock.now += 86400
        await settle()
        assert rig.sleep.calls == [15.0, 10.0] and rig.conn.phase is Phase.CONNECTED
        # A user turn that begins takes the floor: a due answer is no longer counted while the user talks.
        rig.conn.response_due()
        await until(lambda: len(rig.sleep.calls) == 3 and rig.sleep.waiting, "watching")
        rig.conn.user_turn()
        rig.sleep.step()
        await settle()
        assert rig.conn.phase is Phase.CONNECTED and len(rig.sleep.calls) == 3
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    drive(main)
    assert len(rig.built) == 1 and rig.conn.reconnects == 0


def test_a_hang_in_the_middle_of_the_next_of_several_resent_answers_is_found(caplog: pytest.LogCaptureFixture) -> None:
    """After a drop, several turns can go to the next connection at once. The first answer's end settles
    what was counted as due; the next answer that begins is due until it ends, so a model that goes silent
    in the middle of it is hung, not idle (it kept a daemon waiting for good)."""
    rig = Supervised([LiveAgent()], timeout_s=15.0)

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await rig.connected(1)
        for _ in range(3):
            rig.conn.response_due()  # three turns' end markers read at once
        await until(lambda: rig.sleep.waiting, "watching")
        rig.conn.response_started()
        rig.conn.model_event()
        rig.conn.response_done()  # the first answer ends: what was counted as due is settled
        rig.sleep.step()
        await settle()
        assert not rig.conn.watch.is_due and not rig.built[0].stop_began
        rig.conn.response_started()  # the second answer begins, and the model goes silent in it
        rig.conn.model_event()
        t0 = rig.clock.now
        await until(lambda: rig.sleep.waiting, "watching the answer")
        rig.sleep.step()
        await until(lambda: rig.built[0].stop_began, "torn down")
        assert rig.clock.now - t0 == 15.0
        await until(lambda: rig.conn.phase is Phase.BACKING_OFF, "backing off")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    drive(main)
    assert "model stopped: hung: no model event for 15 s while a response was due; retrying in 1.0 s" in errors(caplog)


def test_a_stop_that_never_returns_is_abandoned_and_a_fresh_agent_built(caplog: pytest.LogCaptureFixture) -> None:
    rig = Supervised([LiveAgent(stop_hangs=True)], timeout_s=5.0)

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await rig.connected(1)
        rig.conn.response_due()
        await until(lambda: rig.sleep.waiting, "watching")
        rig.sleep.step()  # hung: cancelled, and its stop hangs
        await until(lambda: rig.built[0].stop_began and rig.sleep.waiting, "stop deadline")
        assert rig.sleep.calls == [5.0, STOP_DEADLINE_S]
        rig.sleep.step()  # the deadline passes: abandoned
        await until(lambda: rig.conn.phase is Phase.BACKING_OFF and rig.sleep.waiting, "backing off")
        rig.sleep.step()
        await rig.connected(2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    drive(main)
    assert errors(caplog) == [
        f"model: the agent's stop did not return within {STOP_DEADLINE_S:g} s; abandoned",
        "model stopped: hung: no model event for 5 s while a response was due; retrying in 1.0 s",
    ]
    assert len(rig.built) == 2 and rig.built[0].stop_cancelled  # a fresh agent; the old stop was cut short
    assert rig.conn.reconnects == 1


def test_an_agents_own_stop_that_hangs_after_a_drop_is_abandoned(caplog: pytest.LogCaptureFixture) -> None:
    """A drop while idle (nothing due): the agent raises, and its own stop hangs in `BidiAgent.run`'s finally."""
    rig = Supervised([LiveAgent(stop_hangs=True)])

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await rig.connected(1)
        rig.built[0].drop.set()
        await until(lambda: rig.built[0].stop_began and rig.sleep.waiting, "stop deadline")
        assert rig.sleep.calls == [STOP_DEADLINE_S]
        rig.sleep.step()
        await until(lambda: rig.conn.phase is Phase.BACKING_OFF and rig.sleep.waiting, "backing off")
        rig.sleep.step()
        await rig.connected(2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    drive(main)
    assert errors(caplog) == [
        f"model: the agent's stop did not return within {STOP_DEADLINE_S:g} s; abandoned",
        f"model stopped: stop timeout: the agent's stop did not return within {STOP_DEADLINE_S:g} s; retrying in 1.0 s",
    ]
    assert len(rig.built) == 2


def test_a_drop_whose_stop_returns_is_retried_on_the_same_agent(caplog: pytest.LogCaptureFixture) -> None:
    rig = Supervised([LiveAgent()])

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await rig.connected(1)
        agent = rig.built[0]
        agent.drop.set()
        await until(lambda: rig.conn.phase is Phase.BACKING_OFF and rig.sleep.waiting, "backing off")
        agent.drop.clear()
        rig.sleep.step()
        await rig.connected(2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    drive(main)
    assert len(rig.built) == 1 and [c for c in rig.sleep.calls if c != STOP_DEADLINE_S] == [1.0]
    assert errors(caplog) == ["model stopped: ConnectionError: peer reset; retrying in 1.0 s"]


def test_the_daemon_stopping_does_not_wait_for_a_stop_that_hangs(caplog: pytest.LogCaptureFixture) -> None:
    rig = Supervised([LiveAgent(stop_hangs=True)])

    async def main() -> None:
        task = asyncio.create_task(rig.conn.run())
        await rig.connected(1)
        task.cancel()  # SIGTERM
        await until(lambda: rig.sleep.waiting, "stop deadline")
        assert rig.sleep.calls == [STOP_DEADLINE_S]
        rig.sleep.step()
        with pytest.raises(asyncio.CancelledError):
            await task

    drive(main)
    assert errors(caplog) == [f"model: the agent's stop did not return within {STOP_DEADLINE_S:g} s; abandoned"]
    assert rig.conn.phase is Phase.STOPPED
