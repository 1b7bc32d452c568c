"""The voice loop: capture -> gate -> the model connection -> playback, with the session store behind the agent.

The loop owns the frame path (capture, the gated mic, the speaker output, the state machine) and the end of
a bounded input (`stop_when_input_ends`). The agent's life (building, starting, restarting) is the
connection's (`connection.py`); what runs beside the loop (the store retry now; the watchdog, buttons and
LED later) is handed to it as `services`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from ..config import Settings
from ..pcm import RATE, StreamResampler
from .agents import AgentBuilder
from .connection import Connection, Phase
from .earcons import Earcons
from .mic import GatedMic
from .newsession import SessionSwitch
from .notices import LOST_TURN, OFFLINE, Notices
from .speaker import SpeakerOutput
from .state import Event, State, StateMachine
from .tools import DeviceTools

if TYPE_CHECKING:
    from strands.bidi import BidiAgent
    from strands.bidi.models import BidiModel
    from strands.session.session_manager import SessionManager
    from strands.types.agent import LocalAgent

    from ..audio import Capture, Playback

log = logging.getLogger(__name__)


def make_capture(settings: Settings, *, pace: float | None = None, max_frames: int | None = None) -> Capture:
    """The capture the settings describe; `pace`/`max_frames` are for ALSA file PCMs, which have no clock."""
    from ..audio import Capture

    a = settings.audio
    return Capture(
        a.capture_device,
        rate=a.rate,
        period_ms=a.period_ms,
        queue_frames=a.queue_frames,
        reopen_max_s=a.reopen_max_s,
        pace=pace,
        max_frames=max_frames,
    )


class Service(Protocol):
    """Something that runs beside the frame path for the loop's whole life. It is cancelled when the loop
    stops; an exception it raises stops the loop (and the daemon), so it must catch what it can outlive."""

    async def run(self) -> None: ...


class StoreRetry:
    """A full or read-only flash holds writes in memory (`session/held.py`); try them again every
    `period_s`, on the loop, while the room is quiet. `store()` is the session manager once built, or None."""

    def __init__(self, store: Callable[[], object], period_s: float = 5.0) -> None:
        self._store = store
        self._period_s = period_s

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._period_s)
            sm = self._store()
            if sm is None:
                continue
            from ..session import DurableFileSessionManager  # Strands is loaded once a store exists

            if isinstance(sm, DurableFileSessionManager) and sm.pending_writes:
                try:
                    sm.retry_pending()
                except Exception as e:  # the poller must outlive anything the store raises
                    log.error("session store: retry failed: %s: %s", type(e).__name__, e)


class VoiceLoop:
    """Owns the parts of one conversation loop and runs them until cancelled (or the input ends).

    Parts can be passed in (tests, the demo); anything not passed is built from `settings`. `services`
    default to the store retry; a command that passes its own list passes `StoreRetry` too if it wants it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        capture: Capture | None = None,
        playback: Playback | None = None,
        model: BidiModel | None = None,
        session_manager: SessionManager[LocalAgent] | None = None,
        services: Sequence[Service] | None = None,
        stop_when_input_ends: bool = False,
        on_transcript: Callable[[str, str], None] | None = None,
        on_ready: Callable[[], None] | None = None,
        on_state: Callable[[State, State], None] | None = None,
        on_phase: Callable[[Phase, Phase], None] | None = None,
    ) -> None:
        from ..audio import Playback
        from ..frontend.aec import attach
        from ..gate import make_gate

        self.settings = settings
        a = settings.audio
        self.state = StateMachine()
        if on_state:
            self.state.when_changed(on_state)
        self.capture = capture or make_capture(settings)
        self.playback = playback or Playback(
            a.playback_device, rate=a.playback_rate, period_ms=a.period_ms, reopen_max_s=a.reopen_max_s
        )
        self.gate = make_gate(settings)
        self.echo = attach(self.capture, self.playback, a.period_ms) if a.echo_cancellation else None
        """The echo canceller between capture and the gate (None: the half-duplex guard, if on)."""
        self._stop_when_input_ends = stop_when_input_ends
        self._on_transcript = on_transcript
        self._on_ready = on_ready
        self._done = asyncio.Event()
        self.started_at = time.monotonic()
        self.speaker = SpeakerOutput(
            self.playback, self.state, on_transcript=self._transcript, on_response_done=self._check_done
        )
        self.mic = GatedMic(
            self.capture,
            self.gate,
            self.speaker,
            self.state,
            echo_tail_s=a.echo_tail_ms / 1000 if a.half_duplex and self.echo is None else 0.0,
            on_ready=self._ready,
            on_end=self._check_done,
        )
        self.playback.on_start = self._playback_started
        self.playback.on_idle = self._playback_idle
        self.tools = DeviceTools()
        self.agents = AgentBuilder(settings, model=model, session_manager=session_manager, tools=self.tools)
        self.notices = Notices(self.speaker.play_notice, settings.local)
        self.notices.on_spoken = self._check_done
        self.connection = self._connection(settings, on_phase)
        self.sessions = SessionSwitch(settings, self.agents, self.speaker, self.notices)
        """The reset button's new conversation (`new_session()`)."""
        self.earcons: Earcons | None = None
        if a.earcons:
            self.earcons = earcons = Earcons(self.speaker.play_notice, self.speaker.play_cue)
            self.state.when_fired(earcons.on_event)
            self.sessions.cue = lambda: earcons.cue("reset")
            self.mic.on_summoned = self._listening_cue
        # What the watch for hung connections hears (`supervise.py`): plain calls, no Strands types.
        self.mic.on_turn_sent = self.connection.response_due
        self.mic.on_turn_started = self.connection.user_turn
        self.mic.on_turn_ended = self._turn_ended
        self.mic.on_turn_dropped = self.connection.turn_dropped
        self.speaker.on_event = self.connection.model_event
        self.speaker.on_answered = self.connection.response_done
        self.speaker.on_answering = self.connection.response_started
        self.tools.continuity.on_sent = self.connection.response_due
        self.services: list[Service] = (
            list(services) if services is not None else [StoreRetry(lambda: self.session_manager)]
        )
        self.transcripts: list[tuple[str, str]] = []
        self.turns_lost = 0
        """Turns whose answer a dropped connection took with it (each was told so by a notice)."""

    def _connection(self, settings: Settings, on_phase: Callable[[Phase, Phase], None] | None) -> Connection[BidiAgent]:
        from ..models.urls import address, reachable

        m = settings.model
        cloud = m.provider != "local"
        where = address(m.provider, m.endpoint, m.region)

        async def probe() -> bool:
            return where is None or await reachable(*where)

        return Connection(
            self._build_agent,
            inputs=[self.mic, *self.tools.inputs],
            outputs=[self.speaker, *self.tools.outputs],
            fire=self._fire,
            on_phase=on_phase,
            on_drop=self._dropped,
            response_timeout_s=m.response_timeout_s,
            connect_timeout_s=m.response_timeout_s,
            idle_disconnect_s=m.idle_disconnect_s if cloud else 0.0,  # the local model costs nothing idle
            backoff_initial_s=m.backoff_initial_s,
            backoff_max_s=m.backoff_max_s,
            build_fallback=self._build_fallback if cloud and m.fallback == "local" else None,
            probe=probe,
            turn_waiting=self.mic.turn_waiting,
        )

    def new_session(self) -> None:
        """Start a new conversation now (on the loop): the connection stops, `SessionSwitch` makes a new
        session current, and the connection starts again over it."""
        self.sessions.request()

    async def _converse(self) -> None:
        """The connection's run, started again over a new session whenever one is asked for."""
        while True:
            run = asyncio.ensure_future(self.connection.run())
            asked = asyncio.ensure_future(self.sessions.requested.wait())
            try:
                await asyncio.wait({run, asked}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                asked.cancel()
                if not run.done():
                    run.cancel()  # the agent stops under the connection's own deadline
                    with contextlib.suppress(asyncio.CancelledError):
                        await run
            if not self.sessions.requested.is_set():
                return run.result()
            self.connection.agent = None
            await self.sessions.switch()

    def _turn_ended(self) -> None:
        """A turn ended. While the cloud is away with no fallback (backing off between attempts), nobody
        will read it for up to `model.backoff_max_s`: an answer that late would be a surprise, so the turn
        is dropped and the user hears that the device is offline."""
        if self.connection.phase is Phase.BACKING_OFF and self._offline_without_fallback():
            return
        self.connection.turn_ended()

    def _offline_without_fallback(self) -> bool:
        """With a cloud model and no fallback, drop the turns waiting for an agent and say so; True if
        that is the case (whether or not a turn was waiting)."""
        if self.settings.model.provider == "local" or self.connection.has_fallback:
            return False
        dropped = self.mic.drop_waiting()
        if dropped:
            self.turns_lost += dropped
            log.warning("model: offline with no fallback; %d turn(s) not answered, telling the user", dropped)
            self.notices.say(OFFLINE)
        return True

    def _fire(self, event: Event) -> None:
        if event is Event.MODEL_BACK:
            self.agents.cloud_back()
        self.state.fire(event)

    def _dropped(self, owed: bool) -> None:
        """The connection failed: a turn it had read in part goes again to the next one; turns it had taken
        whole that no answer ended are lost, and the user hears so (`notices.LOST_TURN`) rather than silence.
        (A tool call's turn ends two responses, so a drop right after one can go untold: the count errs
        towards silence rather than towards telling the user of an answer that then comes.)"""
        self.mic.connection_lost()
        # Counted from turns, not from the watch's `owed`: a turn the mic resends whole is not lost (the watch
        # owed its answer from the gate's turn end), nor is a tool result the tools resend (`daemon/tools.py`).
        unanswered = self.mic.turns_sent - self.speaker.responses_done - self.turns_lost
        if self.tools.continuity.calls:
            unanswered -= 1  # a tool call in flight: its result goes to the next connection, which answers the turn
        if unanswered > 0:
            self.turns_lost += unanswered
            log.warning("model: %d answer(s) lost with the connection; telling the user", unanswered)
            self.notices.say(LOST_TURN)
        self._offline_without_fallback()  # whole turns waiting: nobody takes them before the next attempt

    @property
    def session_manager(self) -> SessionManager[LocalAgent] | None:
        """The session store, once the agent is built."""
        return self.agents.session_manager

    def _ready(self) -> None:
        log.info("ready: first frame accepted %.3f s after start", time.monotonic() - self.started_at)
        if self._on_ready:
            self._on_ready()

    def _transcript(self, role: str, text: str) -> None:
        self.transcripts.append((role, text))
        if self._on_transcript:
            self._on_transcript(role, text)

    def _playback_started(self) -> None:
        if not self.speaker.cue_only:  # the listening cue plays inside the turn: no answer is starting
            self.state.fire(Event.PLAYBACK_STARTED)

    def _listening_cue(self) -> None:
        assert self.earcons is not None
        self.mic.cue(mute=self.echo is None)  # muted where nothing cancels its echo (half-duplex)
        self.earcons.cue("listen")

    def _playback_idle(self) -> None:
        self.speaker.playback_idle()
        self.mic.speaker_went_quiet()
        self.state.fire(Event.PLAYBACK_IDLE)
        self._check_done()

    def _check_done(self) -> None:
        if (
            self._stop_when_input_ends
            and self.mic.ended
            and not self.gate.in_turn
            and self.speaker.responses_done + self.turns_lost >= self.mic.turns_ended
            and not self.notices.busy
            and not self.playback.is_playing
        ):
            self._done.set()

    async def _build_agent(self) -> BidiAgent:
        agent = await self.agents()
        self._model_rate_converter(agent)
        return agent

    async def _build_fallback(self) -> BidiAgent:
        agent = await self.agents.fallback()
        self._model_rate_converter(agent)
        return agent

    def _model_rate_converter(self, agent: BidiAgent) -> None:
        from strands.bidi.models import AudioCapable

        model = agent.model
        rate = model.get_audio_config()["input"]["sample_rate"] if isinstance(model, AudioCapable) else RATE
        # Set for every agent built, 16 kHz included: a converter left from an earlier model at another
        # rate must never feed this one (equal rates pass through unchanged).
        self.mic.convert = StreamResampler(RATE, rate).process

    async def run(self) -> None:
        """Run until cancelled, or until the input has ended and every turn was answered and played.

        Holds the lock on `session.dir` throughout (a second daemon on it exits 2: `session/lock.py`);
        at exit, writes the store still holds in memory get a last try and are named in the log.
        Raises `connection.AgentBug` when the model raised a programming error (the daemon exits 1)."""
        from ..session.lock import lock_store

        store_lock = lock_store(self.settings.session.dir)  # before capture starts: busy means exit now
        try:
            await self._run()
        finally:
            self._close_store()
            if store_lock is not None:
                store_lock.release()

    def _close_store(self) -> None:
        sm = self.session_manager
        if sm is None:
            return  # never built: nothing was held
        from ..session import DurableFileSessionManager  # Strands is loaded by now

        if isinstance(sm, DurableFileSessionManager):
            sm.close()

    async def _run(self) -> None:
        self.playback.start()
        await self.capture.start()
        pump = asyncio.create_task(self.mic.pump())  # runs whether or not the model is connected
        agent = asyncio.create_task(self._converse())
        done = asyncio.create_task(self._done.wait())
        tasks = {pump, agent, done, *(asyncio.create_task(s.run()) for s in self.services)}
        try:
            waiting = set(tasks)
            while agent in waiting and done in waiting:  # the end of capture alone stops nothing
                finished, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for t in finished:
                    t.result()  # re-raise what stopped it
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await self.tools.continuity.aclose()
            await self.capture.stop()
            self.playback.stop()
            log.info("stopped: %s", self.mic.stats())
