"""Nova Sonic's transport: one AWS CRT event loop and TLS context for all of a model's connections, the
trust store read lazily from a hashed CA directory, and TLS verification as strict as before.

Against the wire fake (tests/fakes/nova_wire.py: HTTP/2 over TLS with a self-signed certificate), through
the real Strands model and smithy-http's CRT client. The memory this saves is the bench's
`daemon.idle_peak_rss_mib (nova_sonic, offline)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edgevoice import config
from edgevoice.models import make_model, nova_sonic
from tests.fakes.base import Turn
from tests.fakes.nova_wire import WireNovaSonic

TURNS = [Turn(user="hello", assistant="hi there")]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for var in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(var, raising=False)
    f = WireNovaSonic(TURNS, tmp_path)
    for var, value in f.env().items():
        if var.startswith("AWS"):  # dummy credentials; the trust is each test's own
            monkeypatch.setenv(var, value)
    f.start()
    yield f
    f.stop()


def model_for(fake: Any) -> nova_sonic.EndpointNovaSonicModel:
    m = make_model(config.parse(f'[model]\nprovider = "nova_sonic"\nendpoint = "{fake.url}"\n'))
    assert isinstance(m, nova_sonic.EndpointNovaSonicModel)
    return m


async def connect_twice(model: nova_sonic.EndpointNovaSonicModel) -> list[Any]:
    transports = []
    for _ in range(2):
        await asyncio.wait_for(model.start(), 15)
        transports.append(model._client._config.transport)
        await asyncio.wait_for(model.stop(), 15)
    return transports


def test_every_connection_shares_one_event_loop_and_one_tls_context(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import strands.bidi.models.bedrock as bedrock
    from awscrt import io as crt_io
    from smithy_http.aio import crt

    made: list[str] = []

    class CountedCtx(crt_io.ClientTlsContext):  # type: ignore[misc]
        def __init__(self, *a: Any) -> None:
            made.append("tls")
            super().__init__(*a)

    class CountedLoop(crt._AWSCRTEventLoop):
        def __init__(self) -> None:
            made.append("loop")
            super().__init__()

    monkeypatch.setattr(crt_io, "ClientTlsContext", CountedCtx)
    monkeypatch.setattr(crt, "_AWSCRTEventLoop", CountedLoop)
    fake.trust(monkeypatch)
    own = bedrock._BedrockAWSCRTHTTPClient
    first, second = asyncio.run(connect_twice(model_for(fake)))
    assert made == ["loop", "tls"], "smithy-http's own __init__ built handles: Strands did not use our transport"
    assert first._tls_ctx is second._tls_ctx and first._eventloop is second._eventloop
    assert isinstance(first, own) and bedrock._BedrockAWSCRTHTTPClient is own  # the name is Strands' again


async def attempt(model: nova_sonic.EndpointNovaSonicModel, wait_s: float = 5.0) -> BaseException | None:
    """Start, read events for up to `wait_s` (the connection is made behind start); the error it ended with."""
    await asyncio.wait_for(model.start(), 15)

    async def read() -> None:
        async for _ in model.receive():
            pass

    try:
        await asyncio.wait_for(read(), wait_s)
    except TimeoutError:
        return None
    except Exception as e:
        return e
    finally:
        # The daemon stops a model under its connection's deadline; here any end of the stop will do.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(model.stop(), 15)
    return None


def test_verification_stays_on_and_a_hashed_directory_is_read(
    fake: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Untrusted (the system directory has no such CA): the handshake fails and the fake hears nothing in the
    time the trusted client, through SSL_CERT_DIR (a directory of `<subject hash>.0` links, looked up lazily),
    has said its opening messages in. (The failure itself surfaces only as silence: the daemon's connect
    timeout, `model.response_timeout_s`, is what reports it.)"""
    asyncio.run(attempt(model_for(fake), wait_s=3.0))
    assert fake.seen.messages == [] and fake.seen.connections == 0
    hashed = tmp_path / "cas"
    hashed.mkdir()
    digest = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(fake.cert)], capture_output=True, text=True, check=True
    ).stdout.strip()
    os.symlink(fake.cert, hashed / f"{digest}.0")
    monkeypatch.setenv("SSL_CERT_DIR", str(hashed))
    asyncio.run(attempt(model_for(fake), wait_s=3.0))
    assert fake.seen.messages, "trusted through the hashed directory, the client spoke to the fake"


def test_the_system_directory_is_used_when_nothing_is_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The options name a directory, not a bundle file, unless SSL_CERT_FILE says otherwise."""
    seen: list[tuple[str | None, str | None]] = []

    class Options:
        def override_default_trust_store_from_path(self, ca_dirpath: str | None, ca_filepath: str | None) -> None:
            seen.append((ca_dirpath, ca_filepath))

    from awscrt import io as crt_io

    monkeypatch.setattr(crt_io, "TlsContextOptions", Options)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    nova_sonic.tls_options()
    from edgevoice.models import castore

    monkeypatch.setattr(castore, "SYSTEM_CA_DIR", str(tmp_path))  # no hashed links: the CRT's default
    nova_sonic.tls_options()
    monkeypatch.setenv("SSL_CERT_FILE", "/x/ca.pem")
    nova_sonic.tls_options()
    assert seen == [("/etc/ssl/certs", None), (None, "/x/ca.pem")]
