"""The cloud model's endpoint: does a TCP connection open, and for TLS endpoints does the handshake verify?

The address is the one the provider's client dials (`models/urls.py`: `model.endpoint`, else the provider's
own host). The daemon's own probe (`urls.reachable`) asks only whether TCP opens; doctor also completes the
TLS handshake, because what fails on a fresh device is often TLS itself: a clock that has not been set, or a
proxy whose CA is not trusted (`SSL_CERT_FILE`). It proves nothing about the key (that needs a request).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from ..models.urls import address
from ..settings import ModelSettings
from . import Check, fail, ok, skip

ENDPOINT = "endpoint"

CONNECT_TIMEOUT_S = 3.0
"""For the TCP connect and the TLS handshake together (the name lookup has no timeout of its own; the
runner's bounds it)."""

Connect = Callable[[tuple[str, int], float], socket.socket]
"""`socket.create_connection`, or a test's stand-in."""


def _uses_tls(model: ModelSettings) -> bool:
    # Every provider's own endpoint is TLS; an override says so by its scheme (ws:// is a local test fake).
    return not model.endpoint or urlsplit(model.endpoint).scheme in ("https", "wss")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def check_endpoint(
    model: ModelSettings,
    *,
    connect: Connect = socket.create_connection,
    timeout_s: float = CONNECT_TIMEOUT_S,
    tls: ssl.SSLContext | None = None,
) -> Check:
    """TCP connect to the model's endpoint within `timeout_s`, and a verified TLS handshake for a TLS one.
    `tls`: the context to verify with (default: the system's CAs, or SSL_CERT_FILE / SSL_CERT_DIR)."""
    target = address(model.provider, model.endpoint, model.region)
    if target is None:
        return skip(ENDPOINT, "the local model dials nothing")
    host, port = target
    where = f"{host}:{port}"
    start = time.monotonic()
    try:
        sock = connect(target, timeout_s)
    except socket.gaierror as e:
        return fail(ENDPOINT, f"{where}: name lookup failed ({e.strerror}): no network or no DNS?")
    except ConnectionRefusedError:
        return fail(ENDPOINT, f"{where}: connection refused")
    except TimeoutError:
        return fail(ENDPOINT, f"{where}: no answer within {timeout_s:g} s")
    except OSError as e:
        return fail(ENDPOINT, f"{where}: cannot connect ({e.strerror or e})")
    tcp = time.monotonic() - start
    with sock:
        if not _uses_tls(model):
            return ok(ENDPOINT, f"{where}: TCP connect {_ms(tcp)} (no TLS: {model.endpoint})")
        context = tls or ssl.create_default_context()
        try:
            sock.settimeout(max(0.1, timeout_s - tcp))
            with context.wrap_socket(sock, server_hostname=host) as secure:
                version = secure.version()
        except ssl.SSLCertVerificationError as e:
            hint = " (is the clock right?)" if "expired" in str(e) or "not yet valid" in str(e) else ""
            return fail(ENDPOINT, f"{where}: TLS certificate not trusted ({e.verify_message}){hint}")
        except ssl.SSLError as e:
            return fail(ENDPOINT, f"{where}: TLS handshake failed ({e.reason or e})")
        except TimeoutError:
            return fail(ENDPOINT, f"{where}: TLS handshake did not finish within {timeout_s:g} s")
        except OSError as e:
            return fail(ENDPOINT, f"{where}: TLS handshake failed ({e.strerror or e})")
    handshake = time.monotonic() - start - tcp
    return ok(ENDPOINT, f"{where}: TCP connect {_ms(tcp)}, TLS handshake {_ms(handshake)} ({version})")
