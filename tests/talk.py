"""Talking to a real BidiAgent with the offline model in text turns: the session tests' one helper."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from strands.bidi import BidiAgent
from strands.hooks import HookProvider

from edgevoice.models.local import LocalModel
from edgevoice.session import DurableFileSessionManager

AGENT_ID = "edgevoice"


def agent_for(
    manager: Any, *, hooks: list[HookProvider] | None = None, state: dict[str, Any] | None = None
) -> BidiAgent:
    return BidiAgent(
        model=LocalModel(pace_lead_s=None), session_manager=manager, agent_id=AGENT_ID, hooks=hooks or [], state=state
    )


async def exchange(agent: BidiAgent, text: str) -> str:
    """One text turn on a started agent; returns the assistant's spoken transcript."""
    await agent.send(text)
    events = agent.receive()
    said = []
    while (event := await asyncio.wait_for(anext(events), 20))["type"] != "bidi_response_stop":
        if event["type"] == "bidi_transcript_delta" and event["role"] == "assistant":
            said.append(event["delta"])
    return "".join(said)


def converse(
    storage: Path,
    session_id: str,
    *texts: str,
    manager: type = DurableFileSessionManager,
    hooks: list[HookProvider] | None = None,
    state: dict[str, Any] | None = None,
) -> BidiAgent:
    """Start an agent on `session_id` under `storage`, say each text, stop; returns the agent."""

    async def main() -> BidiAgent:
        agent = agent_for(manager(session_id, storage_dir=str(storage)), hooks=hooks, state=state)
        await agent.start()
        try:
            for text in texts:
                await exchange(agent, text)
        finally:
            await agent.stop()
        return agent

    return asyncio.run(asyncio.wait_for(main(), 60))
