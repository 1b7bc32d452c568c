"""Nova Sonic on an endpoint of our choosing (`model.endpoint`). Imported only when that provider is chosen.

Also where Nova's idle memory is kept down (the bench's `daemon.idle_peak_rss_mib (nova_sonic, offline)`):
aiohttp is kept out of the import (below), and every connection of a model shares one AWS CRT event loop and
TLS context (`EndpointNovaSonicModel._share_crt`).
"""

from __future__ import annotations

from typing import Any

from .lean import UNUSED, hidden

# The AWS SDK's config module imports smithy-http's aiohttp transport (its default `transport`), and that
# imports aiohttp whenever it is installed: 56 modules, about 5.5 MB of the idle daemon's RSS, for a transport
# Nova never uses (Strands always passes its own AWS CRT one). smithy-http treats aiohttp as optional
# (`HAS_AIOHTTP`), so the SDK is imported with it hidden (`lean.py`). The daemon imports this module in the
# thread that builds the agent; nothing it runs meanwhile on the event loop imports aiohttp.
with hidden(*UNUSED):
    from strands.bidi.models.bedrock import BedrockNovaSonicModel

_CRT_HANDLES = ("_eventloop", "_client_bootstrap", "_tls_ctx")
"""What smithy-http 0.5's AWSCRTHTTPClient builds for itself in __init__: an event loop (one thread, and a
DNS resolver with its own), the bootstrap over it, and a TLS context (which loads the system's CA store)."""


class EndpointNovaSonicModel(BedrockNovaSonicModel):
    """BedrockNovaSonicModel that talks to `endpoint` (an https:// URI) instead of the region's endpoint.

    Strands 1.62 builds the client's config inside start() with `endpoint_uri` fixed to
    `https://bedrock-runtime.<region>.amazonaws.com` (AWS_ENDPOINT_URL_BEDROCK_RUNTIME is not consulted),
    then stores the client as `self._client` before the first request. That assignment is the one
    per-instance seam: `_client` is a property here that re-points the new client's config, which the
    client copies only at its first request, and hands the client's transport this model's CRT handles
    (`_share_crt`). No module global is touched.
    """

    def __init__(self, *, endpoint: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self._crt: tuple[Any, ...] | None = None  # the first connection's CRT handles, shared by the later ones

    @property  # type: ignore[override]
    def _client(self) -> Any:
        try:
            return self.__dict__["_endpoint_client"]
        except KeyError:
            raise AttributeError("_client") from None  # hasattr() in stop() relies on this

    @_client.setter
    def _client(self, client: Any) -> None:
        if self.endpoint:
            client._config.endpoint_uri = self.endpoint
        self._share_crt(getattr(getattr(client, "_config", None), "transport", None))
        self.__dict__["_endpoint_client"] = client

    @_client.deleter
    def _client(self) -> None:
        self.__dict__.pop("_endpoint_client", None)

    def _share_crt(self, transport: object) -> None:
        """Give `transport` (the AWS CRT HTTP client Strands builds at every start) the CRT handles of this
        model's first connection, dropping the ones it just built.

        Why: a start against an unreachable endpoint (offline, retried with backoff) fails inside the SDK,
        whose tasks keep the error, and the error's frames keep that connection's transport: a reference
        cycle that only Python's full collection frees, which a daemon-sized heap rarely runs. Each failed
        attempt kept its own TLS context (the system CA store, ~1.1 MB) and two CRT threads alive: +1.1 MB
        per attempt, ~2.3 MB within the bench's 5 s of idling, and on through an outage until a full
        collection happens to run (+11.8 MB after 14 attempts in a small process). Shared, the
        handles the cycles keep are the live ones, and the ones each start builds are freed at once. One
        event loop and TLS context for many connections is how the CRT is meant to be used (smithy-http
        shares the event loop between copies of a client). A test double without these attributes (or a
        smithy-http that renamed them) is left alone."""
        if not all(hasattr(transport, name) for name in _CRT_HANDLES):
            return
        if self._crt is None:
            self._crt = tuple(getattr(transport, name) for name in _CRT_HANDLES)
            return
        for name, handle in zip(_CRT_HANDLES, self._crt, strict=True):
            setattr(transport, name, handle)
