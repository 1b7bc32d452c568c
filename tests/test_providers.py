"""Each cloud provider is built from settings with credentials from the environment and reaches its
connect step: a listener on 127.0.0.1 sees the connection (OpenAI, Gemini), or the Bedrock client is
created for the right endpoint with the environment's credentials. `model.endpoint`: every provider's URL
check, and each real client dialling it (the conversations themselves are in test_provider_fakes.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
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


# --- model.endpoint ----------------------------------------------------------------------------------

GOOD_ENDPOINTS = [
    ("openai_realtime", "ws://127.0.0.1:8080/v1/realtime"),
    ("openai_realtime", "wss://proxy.example/v1/realtime"),
    ("gemini_live", "https://127.0.0.1:8443"),
    ("gemini_live", "https://gemini-proxy.example"),
    ("nova_sonic", "https://bedrock-runtime.vpce.example:443"),
    ("local", "anything: the local model has no URL"),
]
BAD_ENDPOINTS = [
    ("openai_realtime", "https://api.openai.com/v1/realtime", "wrong scheme"),
    ("openai_realtime", "ws://127.0.0.1:1/v1/realtime?model=x", "query or fragment"),
    ("gemini_live", "wss://127.0.0.1:8443", "wrong scheme"),
    ("gemini_live", "http://127.0.0.1:8443", "wrong scheme"),
    ("gemini_live", "https://127.0.0.1:99999", "not a URL"),
    ("nova_sonic", "http://127.0.0.1:8443", "wrong scheme"),
    ("nova_sonic", "https://", "no host"),
    ("nova_sonic", "https://host\n.example", "whitespace or control"),
    ("nova_sonic", "bedrock-runtime.example", "wrong scheme"),
]


@pytest.mark.parametrize(("provider", "endpoint"), GOOD_ENDPOINTS)
def test_endpoint_accepted(provider: str, endpoint: str) -> None:
    s = config.parse(f"[model]\nprovider = '{provider}'\nendpoint = {endpoint!r}\n".replace("'", '"'))
    assert s.model.endpoint == endpoint


@pytest.mark.parametrize(("provider", "endpoint", "why"), BAD_ENDPOINTS)
def test_bad_endpoint_is_one_line_naming_the_key(provider: str, endpoint: str, why: str) -> None:
    # repr() gives a TOML basic string once its quotes are swapped ("\n" stays an escape: a real newline).
    toml = f"[model]\nprovider = '{provider}'\nendpoint = {endpoint!r}\n".replace("'", '"')
    with pytest.raises(ConfigError) as e:
        config.parse(toml)
    msg = str(e.value)
    assert msg.startswith("config: model.endpoint ") and why in msg and "\n" not in msg
    assert f"model.provider '{provider}'" in msg


def test_endpoint_is_checked_in_code_too() -> None:
    """Settings built in code (config.replace, the demo, the bench) are held to the same rule."""
    with pytest.raises(ConfigError, match=r"model\.endpoint"):
        settings("openai_realtime", endpoint="http://127.0.0.1:1")


def test_openai_endpoint_is_dialled_without_touching_the_module_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """model.endpoint wins over Strands' OPENAI_REALTIME_URL for this model only, and the constant is put back."""
    import strands.bidi.models.openai.realtime as rt

    monkeypatch.setenv("OPENAI_API_KEY", "sk-edgevoice-env")
    before = rt.OPENAI_REALTIME_URL

    async def main() -> None:
        async with Listener() as srv:
            endpoint = f"ws://127.0.0.1:{srv.port}/custom/realtime"
            await start_fails(make_model(settings("openai_realtime", endpoint=endpoint)))
            assert srv.seen and srv.seen[0].startswith(b"GET /custom/realtime?model=gpt-realtime ")
        assert before == rt.OPENAI_REALTIME_URL

    asyncio.run(main())


def test_gemini_endpoint_is_the_clients_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "g-edgevoice-env")
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)

    async def main() -> None:
        async with Listener() as srv:
            await start_fails(make_model(settings("gemini_live", endpoint=f"https://127.0.0.1:{srv.port}")))
            assert srv.seen and srv.seen[0][:1] == b"\x16", "expected a TLS handshake on the endpoint"

    asyncio.run(main())


def test_nova_endpoint_is_dialled_by_the_real_aws_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real AWS SDK client (CRT, HTTP/2 over TLS) opens its connection to model.endpoint."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEDGEVOICETEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    async def main() -> None:
        async with Listener() as srv:
            model = make_model(settings("nova_sonic", endpoint=f"https://127.0.0.1:{srv.port}"))
            # The SDK opens the HTTP/2 stream in the background: start() may return before the handshake fails.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(model.start(system_prompt="test"), 20)
            await asyncio.wait_for(srv.got.wait(), 20)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(model.stop(), 5)
            assert srv.seen and srv.seen[0][:1] == b"\x16", "expected a TLS handshake on the endpoint"

    asyncio.run(main())


def test_config_check_names_a_bad_endpoint(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nprovider = "gemini_live"\nendpoint = "wss://127.0.0.1:1"\n')
    r = subprocess.run(
        [str(Path(sys.executable).parent / "edgevoice"), "config", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "model.endpoint 'wss://127.0.0.1:1' has the wrong scheme" in lines[0] and "https://" in lines[0]


def test_nova_sonic_loads_without_aiohttp_and_aiohttp_still_imports_afterwards() -> None:
    # aiohttp is 5.5 MB of idle RSS that Nova never uses (models/nova_sonic.py hides it during the import).
    code = (
        "import sys, edgevoice.models.nova_sonic\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'aiohttp'], 'aiohttp loaded'\n"
        "import aiohttp\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_nova_builds_its_transport_as_smithy_does_but_over_shared_handles() -> None:
    """`EndpointNovaSonicModel._transport` sets the attributes smithy-http's own __init__ sets, no more, no
    fewer: a smithy-http that added one would otherwise fail at the first request."""
    from smithy_http.aio.crt import AWSCRTHTTPClient

    from edgevoice import config
    from edgevoice.models import make_model, nova_sonic

    model = make_model(config.parse('[model]\nprovider = "nova_sonic"\nendpoint = "https://127.0.0.1:9/nova"\n'))
    assert isinstance(model, nova_sonic.EndpointNovaSonicModel)
    first, second = model._transport(), model._transport()
    assert set(vars(first)) == set(vars(AWSCRTHTTPClient()))
    assert isinstance(first, nova_sonic._STRANDS_TRANSPORT)
    assert first._tls_ctx is second._tls_ctx and first._eventloop is second._eventloop
    assert first._connections is not second._connections
