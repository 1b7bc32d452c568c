"""Builds the device's BidiAgents for the connection (`connection.py`): the configured model over the session
store, and the offline fallback (the `local` model over the same store)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strands.bidi import BidiAgent
    from strands.bidi.models import BidiModel
    from strands.session.session_manager import SessionManager
    from strands.types.agent import LocalAgent

    from ..config import Settings
    from ..models.local import LocalModel
    from .tools import DeviceTools


class AgentBuilder:
    """Builds the device's BidiAgent: the configured model (or `model`) over the session store (or
    `session_manager`). The agent is built once and restarted by the connection: it keeps its history, and
    Strands replays it to the model at every start. Only after a stop was abandoned is it built again: a
    fresh model (a passed-in `model` is reused) and a fresh agent, which restores the whole history from the
    store (the old agent is detached from it first: whatever it still does is not stored). The same holds
    after the offline fallback ran (`fallback()`): its turns are in the store, so the cloud agent that
    follows is built afresh and sends them to the provider as history."""

    def __init__(
        self,
        settings: Settings,
        *,
        model: BidiModel | None = None,
        session_manager: SessionManager[LocalAgent] | None = None,
        tools: DeviceTools | None = None,
    ) -> None:
        self._settings = settings
        self._model = model
        self.tools = tools
        """The device's tools (`daemon/tools.py`): the same object for every agent built, cloud or fallback,
        so a tool call that outlives its connection is delivered on the next one."""
        self.session_manager = session_manager
        """The store, once built (the voice loop retries its held writes and closes it at exit)."""
        self.current: BidiAgent | None = None
        """The agent built last."""
        self.builds = 0
        self.session_id: str | None = None
        """The session the store is made for (None: the device's current one, `session/current.py`)."""
        self._fallback_model: LocalModel | None = None

    async def __call__(self) -> BidiAgent:
        # Strands takes most of start-up to import: build in a thread while frames are already gated
        # (a turn spoken meanwhile waits in the mic's queue).
        return await asyncio.to_thread(self.build)

    async def fallback(self) -> BidiAgent:
        """The offline fallback's agent: the `local` model, saying it is offline, over the same store.
        Built in a thread: the first one loads the speech recogniser."""
        return await asyncio.to_thread(self.build_fallback)

    def build(self) -> BidiAgent:
        from ..models import make_model

        return self._agent(self._model or make_model(self._settings))

    def build_fallback(self) -> BidiAgent:
        from ..models.local import LocalModel

        s = self._settings
        if self._fallback_model is None:  # one for the daemon's life: it says "offline" once per outage
            self._fallback_model = LocalModel(s.local, system_prompt=s.model.system_prompt, offline_fallback=True)
        return self._agent(self._fallback_model)

    def new_session(self, session_id: str) -> None:
        """Forget the agent and the store: the next build makes both afresh for `session_id` (no history).
        The old agent is detached from the old store first: nothing it still does is stored."""
        from ..session.durable import detach

        if self.session_manager is not None and self.current is not None:
            detach(self.session_manager, self.current)
        self.session_manager = None
        self.current = None
        self.session_id = session_id

    def cloud_back(self) -> None:
        """The cloud answered again: the next outage's first offline answer says why again."""
        if self._fallback_model is not None:
            self._fallback_model.told_offline = False

    def _agent(self, model: BidiModel) -> BidiAgent:
        from strands.bidi import BidiAgent

        from ..session import make_session_manager
        from ..session.durable import detach

        s = self._settings
        if self.session_manager is None:
            self.session_manager = make_session_manager(s.session, self.session_id)
        elif self.current is not None:
            detach(self.session_manager, self.current)
        t = self.tools
        agent = BidiAgent(
            model=model,
            tools=list(t.tools) if t else None,
            hooks=list(t.hooks) if t else None,
            session_manager=self.session_manager,
            system_prompt=s.model.system_prompt,
            agent_id=s.session.agent_id,
        )
        self.current = agent
        self.builds += 1
        return agent
