"""A new conversation at runtime (the reset button's long press): a new session id, made current on disk,
a fresh agent over a fresh store, the old session left as it was (and synced like any other).

What the switch does, in order, on the event loop, with the connection already stopped by the voice loop:
the old store gets its last retry of held writes and is closed; the new id is written to
`<session.dir>/current` (so a restart stays in the new conversation); the agent builder forgets the old
agent and store, so the connection's next start builds both afresh, with no history; whatever was playing
stops, and the user hears that a new conversation begins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .notices import NEW_SESSION, Notices

if TYPE_CHECKING:
    from ..config import Settings
    from .agents import AgentBuilder
    from .speaker import SpeakerOutput

log = logging.getLogger(__name__)


class SessionSwitch:
    """`request()` (on the loop) asks for a new session; the voice loop stops the connection, awaits
    `switch()`, and starts the connection again. `when_switched(session_id)` hears of each new id."""

    def __init__(
        self,
        settings: Settings,
        agents: AgentBuilder,
        speaker: SpeakerOutput,
        notices: Notices,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._agents = agents
        self._speaker = speaker
        self._notices = notices
        self._now = now
        self.requested = asyncio.Event()
        self.switches = 0
        self.when_switched: Callable[[str], None] | None = None
        self.cue: Callable[[], None] | None = None
        """Played before the notice (the reset earcon)."""

    def request(self) -> None:
        if not self.requested.is_set():
            log.info("session: a new conversation was asked for")
        self.requested.set()

    async def switch(self) -> str:
        """Make a new session current; returns its id. The connection must be stopped meanwhile."""
        from ..session import DurableFileSessionManager
        from ..session.current import new_session_id, set_current

        self.requested.clear()
        s = self._settings.session
        old = self._agents.session_manager
        if isinstance(old, DurableFileSessionManager):
            old.close()  # a last retry of what the flash held back; the files stay as they are
        new_id = new_session_id(s, self._now())
        try:
            # Durable before anything is said in it: after a power cut the device comes back in this one.
            await asyncio.to_thread(set_current, s.dir, new_id)
        except OSError as e:
            log.error("session: cannot record the new session as current (%s); a restart goes back", e.strerror)
        self._agents.new_session(new_id)
        self._speaker.flush()
        if self.cue:
            self.cue()
        self._notices.say(NEW_SESSION)
        self.switches += 1
        log.info("session: new conversation %s", new_id, extra={"session": new_id})
        if self.when_switched:
            self.when_switched(new_id)
        return new_id
