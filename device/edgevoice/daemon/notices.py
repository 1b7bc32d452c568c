"""What the speaker says itself, when no model can: a turn whose answer a dropped connection took with it.

A user who asked something and hears nothing cannot tell a slow answer from a lost one; a voice device
says so. The notice is synthesised by espeak-ng (the offline model's voice), in a thread, once per text,
and played through the same playback as answers (so barge-in stops it the same way). It is not stored in
the session: it is the device talking, not the conversation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import LocalModelSettings

log = logging.getLogger(__name__)

LOST_TURN = "Sorry, I lost the connection before I could answer. Please say that again."
"""Said when the connection dropped (or hung) while an answer was owed."""
OFFLINE = "Sorry, I can't reach the cloud right now. Please try again in a moment."
"""Said for a turn spoken while the cloud is away and no offline fallback answers (`model.fallback = "none"`)."""
NEW_SESSION = "Starting a new conversation."
"""Said when the reset button starts a new session (`daemon/newsession.py`)."""


class Notices:
    """Speaks notices through `play(pcm, rate)` (the speaker's `play_notice`), one after another. `spoken`
    counts the notices handed to the player; `busy` is True while one is still being synthesised;
    `on_spoken` is called after each."""

    def __init__(
        self,
        play: Callable[[bytes, int], None],
        settings: LocalModelSettings,
        *,
        synthesize: Callable[[str], tuple[bytes, int]] | None = None,
    ) -> None:
        self._play_pcm = play
        self._settings = settings
        self._synthesize = synthesize or self._espeak
        self._cache: dict[str, tuple[bytes, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._one_at_a_time: asyncio.Lock | None = None  # made on the loop; notices queue up in order
        self.spoken = 0
        self.on_spoken: Callable[[], None] | None = None

    def say(self, text: str) -> None:
        """Speak `text` soon (call on the event loop); failures are logged, never raised."""
        task = asyncio.get_running_loop().create_task(self._say(text))
        self._tasks.add(task)
        task.add_done_callback(self._said)

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def _said(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self.on_spoken:
            self.on_spoken()

    async def _say(self, text: str) -> None:
        if self._one_at_a_time is None:
            self._one_at_a_time = asyncio.Lock()
        async with self._one_at_a_time:
            try:
                if text not in self._cache:
                    self._cache[text] = await asyncio.to_thread(self._synthesize, text)
                pcm, rate = self._cache[text]
            except Exception as e:  # a missing espeak-ng must not stop the daemon: the notice is a courtesy
                log.error("notice: cannot synthesise speech: %s", e)
                pcm, rate = b"", 0
            self._play(pcm, rate)

    def _play(self, pcm: bytes, rate: int) -> None:
        if pcm:
            self._play_pcm(pcm, rate)
        self.spoken += 1

    def _espeak(self, text: str) -> tuple[bytes, int]:
        from ..models import tts

        s = self._settings
        speech = tts.TextToSpeech(s.voice, s.words_per_minute, s.output_rate)
        return speech.synthesize(text), speech.rate
