"""Nova Sonic on an endpoint of our choosing (`model.endpoint`). Imported only when that provider is chosen."""

from __future__ import annotations

from typing import Any

from strands.bidi.models.bedrock import BedrockNovaSonicModel


class EndpointNovaSonicModel(BedrockNovaSonicModel):
    """BedrockNovaSonicModel that talks to `endpoint` (an https:// URI) instead of the region's endpoint.

    Strands 1.62 builds the client's config inside start() with `endpoint_uri` fixed to
    `https://bedrock-runtime.<region>.amazonaws.com` (AWS_ENDPOINT_URL_BEDROCK_RUNTIME is not consulted),
    then stores the client as `self._client` before the first request. That assignment is the one
    per-instance seam: `_client` is a property here that re-points the new client's config, which the
    client copies only at its first request. No module global is touched.
    """

    def __init__(self, *, endpoint: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint

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
