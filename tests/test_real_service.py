"""Opt-in: one spoken turn against the real provider, through the same path the daemon takes (`make_model`,
a real BidiAgent, the device's tools, `DurableFileSessionManager`), and the answer found in the store.

Skipped unless `EDGEVOICE_REAL_SERVICE=1` and the provider's credentials are in the environment:
`OPENAI_API_KEY` (openai_realtime), `GOOGLE_API_KEY` (gemini_live), AWS credentials from boto's usual chain
(nova_sonic; region `AWS_REGION`, default us-east-1). It costs money and needs the internet, so nothing runs
it by default:

    EDGEVOICE_REAL_SERVICE=1 OPENAI_API_KEY=... .venv/bin/pytest tests/test_real_service.py
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.fakes.agent import stored_messages, texts

QUESTION = "What is the capital of France? Answer in one short sentence."
EXPECTED = "paris"


def has_aws_credentials() -> bool:
    try:
        import boto3  # type: ignore[import-untyped]

        return boto3.Session().get_credentials() is not None
    except Exception:
        return False


def credentials(provider: str) -> bool:
    if provider == "openai_realtime":
        return bool(os.environ.get("OPENAI_API_KEY"))
    if provider == "gemini_live":
        return bool(os.environ.get("GOOGLE_API_KEY"))
    return has_aws_credentials()


@pytest.mark.parametrize("provider", ["openai_realtime", "gemini_live", "nova_sonic"])
def test_one_spoken_turn_is_answered_and_stored(provider: str, tmp_path: Path) -> None:
    if os.environ.get("EDGEVOICE_REAL_SERVICE") != "1":
        pytest.skip("opt-in: set EDGEVOICE_REAL_SERVICE=1 (and the provider's credentials) to talk to the service")
    if not credentials(provider):
        pytest.skip(f"no credentials for {provider} in the environment")

    import soxr
    from strands.bidi import BidiAgent
    from strands.bidi.models import AudioCapable
    from strands.bidi.types.media import AudioDelta

    from edgevoice import config
    from edgevoice.daemon.tools import DeviceTools
    from edgevoice.models import make_model
    from edgevoice.session import DurableFileSessionManager
    from tests.audiogen import RATE, speak, to_s16
    from tests.fakes.agent import Reader

    settings = config.replace(
        config.Settings(), model={"provider": provider, "region": os.environ.get("AWS_REGION", "us-east-1")}
    )
    storage = tmp_path / "sessions"

    async def main() -> None:
        tools = DeviceTools()
        model = make_model(settings)
        rate = model.get_audio_config()["input"]["sample_rate"] if isinstance(model, AudioCapable) else RATE
        speech = speak(QUESTION)
        pcm = to_s16(soxr.resample(speech, RATE, rate) if rate != RATE else speech) + bytes(rate * 2 * 2)
        chunk = rate * 2 // 50  # 20 ms, sent in real time: server-side voice detection expects a live stream
        pcm += bytes(-len(pcm) % chunk)  # whole chunks
        agent = BidiAgent(
            model=model,
            tools=tools.tools,
            hooks=tools.hooks,
            system_prompt=settings.model.system_prompt,
            session_manager=DurableFileSessionManager("s1", storage_dir=str(storage)),
            agent_id="ev",
        )
        await asyncio.wait_for(agent.start(), 30)
        reader = Reader(agent)
        try:
            started = time.monotonic()
            for n, i in enumerate(range(0, len(pcm), chunk)):
                await agent.send(AudioDelta(format="pcm", source={"bytes": pcm[i : i + chunk]}))
                await asyncio.sleep(max(0.0, started + (n + 1) * 0.02 - time.monotonic()))
            assert await reader.wait(
                lambda x: x.count("bidi_response_stop") >= 1 and bool(x.transcripts("assistant")), 45
            )
        finally:
            await asyncio.wait_for(agent.stop(), 15)
            await reader.cancel()
        assert reader.error is None, reader.error

    asyncio.run(asyncio.wait_for(main(), 120))
    answers = texts(stored_messages(storage, "s1", "ev"), "assistant")
    assert any(EXPECTED in a.lower() for a in answers), answers
