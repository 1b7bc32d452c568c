"""The offline `local` BidiModel: pocketsphinx in, deterministic answers, espeak-ng out. No network.

It emits the events the cloud models emit, in their order, so playback and sessions cannot tell
the difference. Per spoken user turn:

    transcript start/delta/stop (user)
    response start
      transcript start (assistant), then per sentence: transcript delta, audio start (once), audio deltas
      [barge-in]  audio stop  transcript stop (assistant)
    response stop

A text message (`agent.send("...")`) is answered the same way without the user transcript: the
agent has already recorded it. Audio is paced at real time plus `pace_lead_s`, so new user speech
while an answer is still streaming interrupts it (barge-in), as with a cloud model.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from strands.bidi.models import AudioConfig, AudioStreamConfig, BidiModel
from strands.bidi.types import (
    AudioDelta,
    BidiAudioDeltaEvent,
    BidiAudioStartEvent,
    BidiAudioStopEvent,
    BidiBargeInEvent,
    BidiConnectionStartEvent,
    BidiContentDelta,
    BidiMessage,
    BidiOutputEvent,
    BidiResponseStartEvent,
    BidiResponseStopEvent,
    BidiTranscriptDeltaEvent,
    BidiTranscriptStartEvent,
    BidiTranscriptStopEvent,
)
from strands.types.content import Messages, TextBlock
from strands.types.tools import ToolSpec

from ..config import LocalModelSettings
from ..pcm import RATE, SAMPLE_BYTES, StreamResampler, ms_bytes
from . import responder, stt, tts
from .endpoint import Endpointer, SpeechStarted

log = logging.getLogger(__name__)

MODEL_ID = "edgevoice-local"
CHUNK_MS = 100


@dataclass(frozen=True)
class _Text:
    text: str


_Work = bytes | _Text  # an utterance's PCM at 16 kHz, or a typed message
_Out = BidiOutputEvent | Exception | None  # None closes receive()


def _local_now() -> datetime:
    return datetime.now().astimezone()


class LocalModel(BidiModel):
    """An offline realtime model: 16 kHz mono PCM or text in, transcripts and PCM speech out."""

    def __init__(
        self,
        settings: LocalModelSettings | None = None,
        *,
        input_rate: int = RATE,
        system_prompt: str = "",
        clock: Callable[[], datetime] = _local_now,
        pace_lead_s: float | None = 0.5,
        offline_fallback: bool = False,
    ) -> None:
        """`clock` gives the local time for answers (inject one in tests); `pace_lead_s` is how far
        audio may run ahead of real time (None: as fast as it is read). `offline_fallback`: it stands in
        for a cloud model that cannot be reached; its first answer says so, and what it cannot answer it
        says it cannot (`responder.OFFLINE_*`)."""
        self._settings = settings or LocalModelSettings()
        self._input_rate = input_rate
        self._system_prompt = system_prompt
        self._clock = clock
        self._pace_lead_s = pace_lead_s
        self._stt = stt.shared()
        self._tts = tts.TextToSpeech(self._settings.voice, self._settings.words_per_minute, self._settings.output_rate)
        self._connection_id: str | None = None
        self._events: asyncio.Queue[_Out] = asyncio.Queue()
        self._inbox: asyncio.Queue[_Work] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._endpointer = Endpointer()
        self._resampler: StreamResampler | None = None
        self._history: list[responder.Turn] = []
        self._speaking = False
        self._interrupt = asyncio.Event()
        self._offline_fallback = offline_fallback
        self.told_offline = False
        """The offline fallback said it is offline (its first answer does, once per outage)."""

    # -- configuration ---------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {
            "model_id": MODEL_ID,
            "params": {
                "voice": self._tts.voice,
                "words_per_minute": self._tts.words_per_minute,
            },
            "audio": self.get_audio_config(),
        }

    def get_audio_config(self) -> AudioConfig:
        """What Strands' AudioCapable protocol asks for: the input and output PCM formats."""
        return AudioConfig(
            input=AudioStreamConfig(sample_rate=self._input_rate, channels=1, format="pcm"),
            output=AudioStreamConfig(sample_rate=self._tts.rate, channels=1, format="pcm"),
        )

    def update_config(self, **model_config: Any) -> None:
        """Only `params={"voice": ..., "words_per_minute": ...}` can change."""
        params = dict(model_config.pop("params", None) or {})
        if model_config or set(params) - {"voice", "words_per_minute"}:
            unknown = sorted([*model_config, *(set(params) - {"voice", "words_per_minute"})])
            raise ValueError(f"local model: cannot update {', '.join(unknown)}")
        self._tts.voice = str(params.get("voice", self._tts.voice))
        self._tts.words_per_minute = int(params.get("words_per_minute", self._tts.words_per_minute))

    # -- connection ------------------------------------------------------------------------------

    async def start(
        self,
        system_prompt: str | None = None,
        tools: list[ToolSpec] | None = None,
        messages: Messages | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a "connection": the history it answers from is `messages` plus its own turns."""
        if self._connection_id is not None:
            raise RuntimeError("model already started | call stop before starting again")
        tts.check_installed()
        if tools:
            log.debug("local model: %d tools offered; it cannot call tools", len(tools))
        if system_prompt is not None:
            self._system_prompt = system_prompt
        self._history = responder.history_from_messages(messages or [])
        self._events = asyncio.Queue()
        self._inbox = asyncio.Queue()
        self._endpointer = Endpointer()
        # Float, not soxr's int16 stream: that one dithers, so the same turn was heard differently each time.
        self._resampler = StreamResampler(self._input_rate, RATE) if self._input_rate != RATE else None
        self._speaking = False
        self._interrupt = asyncio.Event()
        self._connection_id = str(uuid.uuid4())
        self._worker = asyncio.create_task(self._work(self._events, self._inbox))

    async def stop(self) -> None:
        """Close the connection: pending work is dropped and receive() ends."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._events.put_nowait(None)
        self._connection_id = None

    async def receive(self) -> AsyncGenerator[BidiOutputEvent, None]:
        if self._connection_id is None:
            raise RuntimeError("model not started | call start before receiving")
        events = self._events  # bound to this connection, like the cloud models' sockets
        yield BidiConnectionStartEvent(connection_id=self._connection_id, model=MODEL_ID)
        while True:
            item = await events.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    async def send(self, content: BidiMessage | BidiContentDelta) -> None:
        if self._connection_id is None:
            raise RuntimeError("model not started | call start before sending")
        if isinstance(content, AudioDelta):
            self._hear(content)
        elif isinstance(content, BidiMessage):
            texts = []
            for block in content.content:
                if not isinstance(block, TextBlock):
                    raise ValueError(f"content_type=<{type(block).__name__}> | not supported by the local model")
                texts.append(block.text.strip())
            text = " ".join(t for t in texts if t)
            if text:
                self._inbox.put_nowait(_Text(text))
        else:
            raise ValueError(f"content_type=<{type(content).__name__}> | not supported by the local model")

    async def interrupt(self, played_ms: int) -> None:
        """The device's barge-in (`daemon/played.Interruptible`): stop streaming now rather than when the
        endpointer hears the user (saves synthesising the rest of the answer)."""
        if self._speaking:
            self._interrupt.set()

    # -- input -----------------------------------------------------------------------------------

    def _hear(self, delta: AudioDelta) -> None:
        data = delta.source.get("bytes")
        if delta.format != "pcm" or data is None:
            raise ValueError("local model: audio must be raw PCM bytes (format 'pcm')")
        if self._resampler is not None:
            data = self._resampler.process(data)
        for event in self._endpointer.push(data):
            if isinstance(event, SpeechStarted):
                if self._speaking:
                    self._interrupt.set()
            else:
                self._inbox.put_nowait(event.pcm)

    # -- turns -----------------------------------------------------------------------------------

    async def _work(self, events: asyncio.Queue[_Out], inbox: asyncio.Queue[_Work]) -> None:
        try:
            await asyncio.to_thread(self._stt.load)  # while the user is still talking
            while True:
                item = await inbox.get()
                if isinstance(item, _Text):
                    heard = item.text
                else:
                    heard = stt.tidy(await asyncio.to_thread(self._stt.transcribe, item))
                    if heard:
                        self._emit_user_transcript(events, heard)
                answer = responder.respond(self._history, heard, self._clock(), offline=self._offline_fallback)
                if self._offline_fallback and not self.told_offline:
                    self.told_offline = True
                    answer = f"{responder.OFFLINE_FIRST} {answer}"
                if heard:
                    self._history.append(responder.Turn("user", heard))
                said = await self._speak(events, answer)
                if said:
                    self._history.append(responder.Turn("assistant", said))
        except Exception as e:  # surfaces through receive(), as a provider error would
            log.debug("local model failed: %s", e)
            events.put_nowait(e)

    @staticmethod
    def _emit_user_transcript(events: asyncio.Queue[_Out], text: str) -> None:
        content_id = str(uuid.uuid4())
        events.put_nowait(BidiTranscriptStartEvent("user", content_id))
        events.put_nowait(BidiTranscriptDeltaEvent(text, "user", content_id))
        events.put_nowait(BidiTranscriptStopEvent("user", content_id))

    async def _speak(self, events: asyncio.Queue[_Out], answer: str) -> str:
        """Stream one response; returns the part of `answer` that was sent before any barge-in."""
        response_id, transcript_id, audio_id = (str(uuid.uuid4()) for _ in range(3))
        rate = self._tts.rate
        chunk_bytes = ms_bytes(CHUNK_MS, rate)
        loop = asyncio.get_running_loop()
        said: list[str] = []
        audio_open = False
        started_at = 0.0
        sent_s = 0.0
        self._interrupt.clear()
        self._speaking = True
        events.put_nowait(BidiResponseStartEvent(response_id))
        try:
            for sentence in tts.sentences(answer):
                pcm = await asyncio.to_thread(self._tts.synthesize, sentence)
                if self._interrupt.is_set():
                    break
                if not said:
                    events.put_nowait(BidiTranscriptStartEvent("assistant", transcript_id))
                events.put_nowait(
                    BidiTranscriptDeltaEvent((" " if said else "") + sentence, "assistant", transcript_id)
                )
                said.append(sentence)
                if not audio_open:
                    events.put_nowait(BidiAudioStartEvent(audio_id))
                    audio_open = True
                    started_at = loop.time()
                for i in range(0, len(pcm), chunk_bytes):
                    if await self._interrupted(started_at + sent_s - loop.time()):
                        break
                    chunk = pcm[i : i + chunk_bytes]
                    events.put_nowait(
                        BidiAudioDeltaEvent(
                            audio=base64.b64encode(chunk).decode("ascii"),
                            format="pcm",
                            sample_rate=rate,
                            channels=1,
                            content_id=audio_id,
                        )
                    )
                    sent_s += len(chunk) / SAMPLE_BYTES / rate
                if self._interrupt.is_set():
                    break
        finally:
            self._speaking = False
        if self._interrupt.is_set():
            events.put_nowait(BidiBargeInEvent())
        if audio_open:
            events.put_nowait(BidiAudioStopEvent(audio_id))
        if said:
            events.put_nowait(BidiTranscriptStopEvent("assistant", transcript_id))
        events.put_nowait(BidiResponseStopEvent(response_id))
        return " ".join(said)

    async def _interrupted(self, ahead_s: float) -> bool:
        """Wait until the audio is no more than `pace_lead_s` ahead of real time; True on barge-in."""
        if self._pace_lead_s is None or ahead_s <= self._pace_lead_s:
            await asyncio.sleep(0)  # let the input side run between chunks
            return self._interrupt.is_set()
        try:
            await asyncio.wait_for(self._interrupt.wait(), ahead_s - self._pace_lead_s)
        except TimeoutError:
            return False
        return True
