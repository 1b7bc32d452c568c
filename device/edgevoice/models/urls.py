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
