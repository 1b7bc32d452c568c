"""Nova Sonic on an endpoint of our choosing (`model.endpoint`). Imported only when that provider is chosen.

Also where Nova's idle memory is kept down (the bench's `daemon.idle_peak_rss_mib (nova_sonic, offline)`):
aiohttp is kept out of the import (below), and every connection of a model shares one AWS CRT event loop and
TLS context, whose trust store is read lazily (`EndpointNovaSonicModel._transport`).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from .lean import UNUSED, hidden

# The AWS SDK's config module imports smithy-http's aiohttp transport (its default `transport`), and that
# imports aiohttp whenever it is installed: 56 modules, about 5.5 MB of the idle daemon's RSS, for a transport
# Nova never uses (Strands always passes its own AWS CRT one). smithy-http treats aiohttp as optional
# (`HAS_AIOHTTP`), so the SDK is imported with it hidden (`lean.py`). The daemon imports this module in the
# thread that builds the agent; nothing it runs meanwhile on the event loop imports aiohttp.
with hidden(*UNUSED):
    from strands.bidi.models.bedrock import BedrockNovaSonicModel

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
        self._crt: tuple[Any, Any] | None = None  # the CRT event loop and TLS context every connection shares

    async def start(self, *args: Any, **kwargs: Any) -> None:
        """Strands' start, with `_transport()` as the transport it builds (see `_first_step_with`)."""
        await _first_step_with(super().start(*args, **kwargs), self._transport)

    def _transport(self) -> Any:
        """Strands' own transport class over this model's AWS CRT event loop and TLS context, made once.

        Why: smithy-http's `AWSCRTHTTPClient.__init__` builds an event loop (two threads) and a TLS context at
        every start, and the default TLS context parses the system's whole CA bundle (about 1.1 MB here) to
        trust one endpoint. Offline, the daemon starts again every few seconds; each start's handles lived
        until a full garbage collection (a failed start's error keeps its transport in a reference cycle),
        and even shared afterwards, each start still built and dropped a context: peak RSS. So the transport
        is made without its `__init__`, with the attributes it sets (a test checks they are the same set),
        over one event loop and one TLS context whose trust store is read lazily (`castore.py`)."""
        from awscrt import io as crt_io
        from smithy_http.aio.crt import AWSCRTHTTPClientConfig, _AWSCRTEventLoop

        if self._crt is None:
            self._crt = (_AWSCRTEventLoop(), crt_io.ClientTlsContext(tls_options()))
        eventloop, tls = self._crt
        transport: Any = object.__new__(_STRANDS_TRANSPORT)
        transport._config = AWSCRTHTTPClientConfig()
        transport._eventloop = eventloop
        transport._client_bootstrap = eventloop.bootstrap
        transport._tls_ctx = tls
        transport._socket_options = crt_io.SocketOptions()
        transport._connections = {}
        transport._closed = False
        return transport

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
        self.__dict__["_endpoint_client"] = client

    @_client.deleter
    def _client(self) -> None:
        self.__dict__.pop("_endpoint_client", None)


def tls_options() -> Any:
    """The CRT's TLS options, trusting what `castore.trust_store` picks (its own default when nothing)."""
    from awscrt import io as crt_io

    from .castore import trust_store

    options = crt_io.TlsContextOptions()
    if (store := trust_store()) is not None:
        cafile, capath = store
        options.override_default_trust_store_from_path(ca_dirpath=capath, ca_filepath=cafile)
    return options


@types.coroutine
def _first_step_with(coro: Coroutine[Any, Any, None], transport: Callable[[], Any]) -> Generator[Any, Any, None]:
    """Await `coro` (Strands' start) with its transport class being `transport` during its first step only.

    Strands 1.62 builds the transport by that module-level name in the synchronous part of start, before its
    first await (`transport=_BedrockAWSCRTHTTPClient()` among the arguments of the awaited call). Swapping the
    name only while that step runs (no other task runs meanwhile; the loop is single-threaded) keeps the
    change out of everything else, a second model's start included. A Strands that built it later would
    simply get its own transport (a test checks that ours is used)."""
    import strands.bidi.models.bedrock

    bedrock: Any = strands.bidi.models.bedrock
    own = bedrock._BedrockAWSCRTHTTPClient
    bedrock._BedrockAWSCRTHTTPClient = transport
    try:
        value = coro.send(None)
    except StopIteration:
        return
    finally:
        bedrock._BedrockAWSCRTHTTPClient = own
    while True:  # what `yield from` does, from the second step on
        try:
            sent = yield value
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as e:
            try:
                value = coro.throw(e)
            except StopIteration:
                return
        else:
            try:
                value = coro.send(sent)
            except StopIteration:
                return


def _strands_transport() -> type:
    import strands.bidi.models.bedrock as bedrock

    return bedrock._BedrockAWSCRTHTTPClient  # type: ignore[no-any-return]


_STRANDS_TRANSPORT = _strands_transport()
"""Strands' transport class as it was imported (observes its request writers; see strands/bidi/models/bedrock.py)."""
