"""Run the real `edgevoice run` against a cloud provider's client pointed at 127.0.0.1, and keep its log.

- OpenAI Realtime: its URL is a module constant, and Nova Sonic's endpoint is hard-coded from the region
  (it ignores AWS_ENDPOINT_URL_BEDROCK_RUNTIME), so the daemon is started through `LAUNCHER`, which sets
  those two to the test's listener and then calls `edgevoice.cli.main` with the usual arguments.
- Gemini Live needs nothing of the kind: GOOGLE_GEMINI_BASE_URL points it at the listener and
  SSL_CERT_FILE makes it trust the listener's self-signed certificate (it forces TLS).

The listener records what each connection sent, then hangs up: the client fails, the voice loop logs
"model stopped" and backs off. That is enough to show what the daemon logs about a connection. Fakes that
speak each provider's protocol (and can close, drop or hang on command) are in tests/fakes/; they are
reached through `model.endpoint` and use `self_signed` below for their certificates.
"""

from __future__ import annotations

import datetime
import ipaddress
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

LAUNCHER = """
import os, sys, types
target = os.environ["EDGEVOICE_TEST_ENDPOINT"]
import strands.bidi.models.openai.realtime as rt
rt.OPENAI_REALTIME_URL = f"ws://{target}/v1/realtime"
import strands.bidi.models.bedrock as bedrock
real_resolve = bedrock.AsyncBedrockRuntimeConfig.resolve
async def resolve(**kwargs):
    kwargs["endpoint_uri"] = f"http://{target}"
    return await real_resolve(**kwargs)
bedrock.AsyncBedrockRuntimeConfig = types.SimpleNamespace(resolve=resolve)
from edgevoice.cli import main
sys.exit(main(sys.argv[1:]))
"""


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class Listener:
    """A TCP (optionally TLS) server on 127.0.0.1 in a thread: records each connection's first bytes."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.seen: list[bytes] = []
        self.got = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._ctx: ssl.SSLContext | None = None
        if tls:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(*tls)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            if self._ctx is not None:
                conn = self._ctx.wrap_socket(conn, server_side=True)
            self.seen.append(conn.recv(65536))
        except OSError as e:
            self.seen.append(f"<{e}>".encode())
        finally:
            self.got.set()
            conn.close()

    def close(self) -> None:
        self._sock.close()


def run_daemon(
    args: list[str], env: dict[str, str], log: Path, *, listener: Listener, launcher: bool, settle_s: float = 2.0
) -> str:
    """`edgevoice ARGS` until the listener has seen a connection and the daemon has logged the failure
    (or `settle_s` more passed), then SIGTERM; returns the whole log (stderr)."""
    if launcher:
        cmd = [sys.executable, "-c", LAUNCHER, *args]
        env = {**env, "EDGEVOICE_TEST_ENDPOINT": f"127.0.0.1:{listener.port}"}
    else:
        cmd = [str(Path(sys.executable).parent / "edgevoice"), *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            connected = listener.got.wait(90)
            deadline = time.monotonic() + settle_s
            while time.monotonic() < deadline and b"model stopped" not in log.read_bytes():
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text(errors="replace")
    assert connected, f"the daemon never connected:\n{text[-3000:]}"
    return text
