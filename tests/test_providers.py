"""Each cloud provider is built from settings with credentials from the environment and reaches its
connect step: a listener on 127.0.0.1 sees the connection (OpenAI, Gemini), or the Bedrock client is
created for the right endpoint with the environment's credentials (Nova Sonic's endpoint is fixed)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import pytest

from edgevoice import config
from edgevoice.config import ConfigError
from edgevoice.models import make_model


class Listener:
    """A TCP server on 127.0.0.1 that records the first bytes of every connection, then hangs up."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.got = asyncio.Event()

    async def __aenter__(self) -> Listener:
        self.server = await asyncio.start_server(self._on, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _on(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            self.seen.append(await asyncio.wait_for(reader.read(4096), 5))
        self.got.set()
        writer.close()


def settings(provider: str, **model: Any) -> config.Settings:
    return config.replace(config.Settings(), model={"provider": provider, **model})


async def start_fails(model: Any) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the listener hangs up; any failure after connecting is fine
        await asyncio.wait_for(model.start(system_prompt="test"), 20)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(model.stop(), 5)


def test_openai_realtime_connects_with_the_environment_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import strands.bidi.models.openai.realtime as rt

    monkeypatch.setenv("OPENAI_API_KEY", "sk-edgevoice-env")

    async def main() -> None:
        async with Listener() as srv:
            monkeypatch.setattr(rt, "OPENAI_REALTIME_URL", f"ws://127.0.0.1:{srv.port}/v1/realtime")
            await start_fails(make_model(settings("openai_realtime")))
            assert srv.seen, "the model never connected"
            request = srv.seen[0]
            assert request.startswith(b"GET /v1/realtime?model=gpt-realtime ")
            assert b"Bearer sk-edgevoice-env" in request

    asyncio.run(main())


def test_openai_key_from_a_private_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import strands.bidi.models.openai.realtime as rt

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    key = tmp_path / "openai.key"
    key.write_text("sk-edgevoice-file\n")
    os.chmod(key, 0o600)

    async def main() -> None:
        async with Listener() as srv:
            monkeypatch.setattr(rt, "OPENAI_REALTIME_URL", f"ws://127.0.0.1:{srv.port}/v1/realtime")
            await start_fails(make_model(settings("openai_realtime", api_key_file=str(key), model_id="gpt-x")))
            assert srv.seen and srv.seen[0].startswith(b"GET /v1/realtime?model=gpt-x ")
            assert b"Bearer sk-edgevoice-file" in srv.seen[0]

    asyncio.run(main())


def test_gemini_live_connects_with_the_environment_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "g-edgevoice-env")

    async def main() -> None:
        async with Listener() as srv:
            monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f"https://127.0.0.1:{srv.port}")
            await start_fails(make_model(settings("gemini_live")))
            assert srv.seen, "the model never connected"
            assert srv.seen[0][:1] == b"\x16", "expected a TLS handshake (Gemini Live forces wss)"

    asyncio.run(main())


def test_nova_sonic_reaches_bedrock_with_the_environment_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    import strands.bidi.models.bedrock as bedrock

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEDGEVOICETEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    seen: dict[str, Any] = {}

    class ReachedConnect(Exception):
        pass

    class RecordingClient:
        """Stands in for the AWS SDK client (Nova Sonic's endpoint cannot be redirected)."""

        def __init__(self, config: Any) -> None:
            seen["endpoint"] = config.endpoint_uri
            seen["region"] = config.region
            seen["key"] = config.aws_access_key_id

        async def invoke_model_with_bidirectional_stream(self, operation: Any) -> None:
            seen["model_id"] = operation.model_id
            raise ReachedConnect

    monkeypatch.setattr(bedrock, "AsyncBedrockRuntimeClient", RecordingClient)

    async def main() -> None:
        model = make_model(settings("nova_sonic", region="eu-north-1"))
        with pytest.raises(ReachedConnect):
            await model.start(system_prompt="test")

    asyncio.run(main())
    assert seen == {
        "endpoint": "https://bedrock-runtime.eu-north-1.amazonaws.com",
        "region": "eu-north-1",
        "key": "AKIAEDGEVOICETEST",
        "model_id": "amazon.nova-2-5-sonic",
    }


KEYS = [("openai_realtime", "OPENAI_API_KEY"), ("gemini_live", "GOOGLE_API_KEY")]


@pytest.mark.parametrize(("provider", "var"), KEYS)
def test_missing_key_names_the_setting(provider: str, var: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match=f"model.provider '{provider}' needs {var}"):
        make_model(settings(provider))


def test_nova_sonic_credentials_from_the_chain_are_known_to_the_log_filter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Credentials from ~/.aws (not only the environment) are registered for redaction when the model is built."""
    from edgevoice import logs

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    creds = tmp_path / "credentials"
    creds.write_text(
        "[default]\naws_access_key_id = AKIAEDGEVOICEFILE01\naws_secret_access_key = evFileSecret/Zq8Lm3Pw7Rt\n"
        "aws_session_token = evFileToken/Hd0Js5Fk2Lq9\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(logs, "_secrets", ())
    make_model(settings("nova_sonic"))
    assert {"AKIAEDGEVOICEFILE01", "evFileSecret/Zq8Lm3Pw7Rt", "evFileToken/Hd0Js5Fk2Lq9"} <= set(logs.registered())
    text = logs.redact("signing with evFileSecret/Zq8Lm3Pw7Rt and evFileToken/Hd0Js5Fk2Lq9")
    assert "evFile" not in text
