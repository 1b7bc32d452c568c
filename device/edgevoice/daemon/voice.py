"""The voice loop: capture -> gate -> BidiAgent -> playback, with the session store behind the agent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import Settings
from .mic import GatedMic
from .speaker import SpeakerOutput
from .state import Event, State, StateMachine

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


class VoiceLoop:
    """Owns the parts of one conversation loop and runs them until cancelled (or the input ends).

    Parts can be passed in (tests, the demo); anything not passed is built from `settings`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        capture: Capture | None = None,
        playback: Playback | None = None,
        model: BidiModel | None = None,
        session_manager: SessionManager[LocalAgent] | None = None,
        stop_when_input_ends: bool = False,
        on_transcript: Callable[[str, str], None] | None = None,
        on_ready: Callable[[], None] | None = None,
        on_state: Callable[[State, State], None] | None = None,
    ) -> None:
        from ..audio import Playback
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
        self._model = model
        self._session_manager = session_manager
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
            echo_tail_s=a.echo_tail_ms / 1000 if a.half_duplex else 0.0,
            on_ready=self._ready,
            on_end=self._check_done,
        )
        self.playback.on_start = lambda: self.state.fire(Event.PLAYBACK_STARTED)
        self.playback.on_idle = self._playback_idle
        self.transcripts: list[tuple[str, str]] = []
        self.session_manager: SessionManager[LocalAgent] | None = None

    def _ready(self) -> None:
        log.info("ready: first frame accepted %.3f s after start", time.monotonic() - self.started_at)
        if self._on_ready:
            self._on_ready()

    def _transcript(self, role: str, text: str) -> None:
        self.transcripts.append((role, text))
        if self._on_transcript:
            self._on_transcript(role, text)

    def _playback_idle(self) -> None:
        self.mic.speaker_went_quiet()
        self.state.fire(Event.PLAYBACK_IDLE)
        self._check_done()

    def _check_done(self) -> None:
        if (
            self._stop_when_input_ends
            and self.mic.ended
            and not self.gate.in_turn
            and self.speaker.responses_done >= self.mic.turns_ended
            and not self.playback.is_playing
        ):
            self._done.set()

    def _build_agent(self) -> BidiAgent:
        from strands.bidi import BidiAgent

        from ..models import make_model
        from ..session import make_session_manager

        model = self._model or make_model(self.settings)
        sm = self._session_manager or make_session_manager(self.settings.session)
        self.session_manager = sm
        return BidiAgent(
            model=model,
            session_manager=sm,
            system_prompt=self.settings.model.system_prompt,
            agent_id=self.settings.session.agent_id,
        )

    def _model_rate_converter(self, agent: BidiAgent) -> None:
        from strands.bidi.models import AudioCapable

        model = agent.model
        rate = model.get_audio_config()["input"]["sample_rate"] if isinstance(model, AudioCapable) else 16000
        if rate != 16000:
            from ..audio.resample import StreamResampler

            self.mic.convert = StreamResampler(16000, rate).process

    async def _converse(self) -> None:
        """Run the agent; when it fails, go offline, back off, and start it again."""
        delay = 1.0
        while True:
            t0 = time.monotonic()
            try:
                await self.agent.run(inputs=[self.mic], outputs=[self.speaker])
                return
            except Exception as e:  # any provider error: the loop must outlive it
                why = " ".join(str(e).split())[:300]  # provider errors nest; one bounded line in the journal
                log.error("model stopped: %s: %s; retrying in %.0f s", type(e).__name__, why, delay)
                self.state.fire(Event.MODEL_LOST)
            if time.monotonic() - t0 > 60:
                delay = 1.0
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            self.state.fire(Event.MODEL_BACK)

    async def _retry_store(self) -> None:
        """A full or read-only flash holds writes in memory; try them again while the room is quiet."""
        while True:
            await asyncio.sleep(5)
            from ..session import DurableFileSessionManager  # Strands is loaded by now

            sm = self.session_manager
            if isinstance(sm, DurableFileSessionManager) and sm.pending_writes:
                try:
                    sm.retry_pending()
                except Exception as e:  # the poller must outlive anything the store raises
                    log.error("session store: retry failed: %s: %s", type(e).__name__, e)

    async def _connect(self) -> None:
        # Strands takes most of start-up to import: do it in a thread while frames are already gated
        # (a turn spoken meanwhile waits in the mic's queue).
        self.agent = await asyncio.to_thread(self._build_agent)
        self._model_rate_converter(self.agent)
        await self._converse()

    async def run(self) -> None:
        """Run until cancelled, or until the input has ended and every turn was answered and played.

        Holds the lock on `session.dir` throughout (a second daemon on it exits 2: `session/lock.py`);
        at exit, writes the store still holds in memory get a last try and are named in the log."""
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
        pump = asyncio.create_task(self.mic.pump())
        agent = asyncio.create_task(self._connect())
        done = asyncio.create_task(self._done.wait())
        store = asyncio.create_task(self._retry_store())
        tasks = {pump, agent, done, store}
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
            await self.capture.stop()
            self.playback.stop()
            log.info("stopped: %s", self.mic.stats())
