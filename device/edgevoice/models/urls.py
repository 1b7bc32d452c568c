"""`model.endpoint`: the URL shapes each provider accepts (models/endpoint.py is the local model's endpointing,
another thing). Standard library only: config imports it."""

from __future__ import annotations

from urllib.parse import urlsplit

# The schemes each provider's client can dial. OpenAI Realtime is a websocket URL to which Strands adds
# `?model=`; google-genai turns an https base URL into wss (it has no plain-text mode); the Bedrock client
# speaks HTTP/2, which AWS CRT negotiates only over TLS (ALPN).
SCHEMES: dict[str, tuple[str, ...]] = {
    "openai_realtime": ("ws", "wss"),
    "gemini_live": ("https",),
    "nova_sonic": ("https",),
}


def check_endpoint(provider: str, endpoint: str) -> None:
    """Raise ConfigError (one line naming `model.endpoint`) unless `endpoint` is empty or a URL that
    `provider` can dial. The local model has no URL, so any value is ignored there."""
    schemes = SCHEMES.get(provider)
    if not endpoint or schemes is None:
        return
    from ..config import ConfigError  # config imports this module lazily, from ModelSettings

    wanted = " or ".join(f"{s}://" for s in schemes)
    problem = ""
    if any(c.isspace() or not c.isprintable() for c in endpoint):
        problem = "has whitespace or control characters"  # urlsplit would quietly drop some of them
    else:
        try:
            url = urlsplit(endpoint)
            url.port  # noqa: B018 - raises ValueError on a port that is not a number in range
        except ValueError as e:
            problem = f"is not a URL ({e})"
        else:
            if url.scheme not in schemes:
                problem = "has the wrong scheme"
            elif not url.hostname:
                problem = "has no host"
            elif url.query or url.fragment or "?" in endpoint or "#" in endpoint:
                # OpenAI's `?model=` is appended to it; the other clients would drop or mangle it.
                problem = "must not have a query or fragment"
    if problem:
        raise ConfigError(
            f"config: model.endpoint {endpoint!r} {problem}; "
            f"model.provider {provider!r} needs a URL starting with {wanted}"
        )


# Where each provider's client connects when `model.endpoint` is empty ({region}: `model.region`).
DEFAULT_HOSTS: dict[str, str] = {
    "openai_realtime": "api.openai.com",
    "gemini_live": "generativelanguage.googleapis.com",
    "nova_sonic": "bedrock-runtime.{region}.amazonaws.com",
}


def address(provider: str, endpoint: str, region: str = "us-east-1") -> tuple[str, int] | None:
    """The host and TCP port a provider's client dials (None: the local model dials nothing)."""
    if provider not in DEFAULT_HOSTS:
        return None
    if not endpoint:
        return DEFAULT_HOSTS[provider].format(region=region), 443
    url = urlsplit(endpoint)
    return url.hostname or "", url.port or (80 if url.scheme == "ws" else 443)


async def reachable(host: str, port: int, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to `host:port` opens within `timeout_s` (name lookup included): the offline
    fallback's cheap question before it hands the conversation back to the cloud. Says nothing of keys."""
    import asyncio
    import contextlib

    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    return True
