"""Realtime models: the provider factory. Provider modules load only when chosen (they are heavy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..apikeys import read_api_key
from ..config import ConfigError, Settings

if TYPE_CHECKING:
    from strands.bidi.models import BidiModel

# Defaults when `model.model_id` is empty.
DEFAULT_MODEL_IDS = {
    "nova_sonic": "amazon.nova-2-5-sonic",
    "openai_realtime": "gpt-realtime",
    "gemini_live": "gemini-2.5-flash-native-audio-preview-09-2025",
}
OPENAI_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"


def make_model(settings: Settings) -> BidiModel:
    """The BidiModel `model.provider` names, built from settings and the environment.

    Raises ConfigError (one line, naming the key) when a provider cannot be built here, e.g. its extra
    is not installed or its API key is missing.
    """
    m = settings.model
    provider = m.provider
    model_id = m.model_id or DEFAULT_MODEL_IDS.get(provider, "")
    if provider == "local":
        from .local import LocalModel

        return LocalModel(settings.local, system_prompt=m.system_prompt)
    try:
        if provider == "nova_sonic":
            import boto3  # type: ignore[import-untyped]  # a dependency of strands[bidi]

            from ..logs import register_aws_credentials
            from .nova_sonic import EndpointNovaSonicModel

            # Our own session, so the credentials the model will sign with (env, ~/.aws, SSO, role) are
            # known to the log filter; botocore caches them, the model resolves nothing twice.
            session = boto3.Session(region_name=m.region)
            register_aws_credentials(session)
            return EndpointNovaSonicModel(
                model_id=model_id, boto_session=session, voice=m.voice or "matthew", endpoint=m.endpoint
            )
        if provider == "openai_realtime":
            from .openai_realtime import EndpointOpenAIRealtimeModel

            key = read_api_key(m, "OPENAI_API_KEY")
            if not key:
                raise ConfigError("config: model.provider 'openai_realtime' needs OPENAI_API_KEY or model.api_key_file")
            return EndpointOpenAIRealtimeModel(
                model_id=model_id,
                transcription_model_id=OPENAI_TRANSCRIPTION_MODEL,
                api_key=key,
                voice=m.voice or "alloy",
                endpoint=m.endpoint,
            )
        if provider == "gemini_live":
            from .lean import UNUSED, hidden

            with hidden(*UNUSED):  # google-genai: aiohttp (8 MB) and httpx's command line, never used live
                from .gemini_live import GeminiLiveModel, resume_state

            key = read_api_key(m, "GOOGLE_API_KEY")
            if not key:
                raise ConfigError("config: model.provider 'gemini_live' needs GOOGLE_API_KEY or model.api_key_file")
            client_args: dict[str, Any] = {"api_key": key}
            if m.endpoint:
                # google-genai dials wss://<host>/ws/... from this base URL; it trusts SSL_CERT_FILE when set,
                # read when the client is built here.
                client_args["http_options"] = {"base_url": m.endpoint}
            # Every model built for this conversation (a new one after an abandoned stop) shares one
            # resumption state, so a reconnect resumes the Gemini session instead of starting a new one.
            resume = resume_state(m.endpoint, model_id, settings.session.dir, settings.session.agent_id)
            return GeminiLiveModel(model_id=model_id, client_args=client_args, voice=m.voice or None, resume=resume)
    except ImportError as e:
        extra = {"openai_realtime": "openai", "gemini_live": "google"}.get(provider, "")
        hint = f" (install edgevoice[{extra}])" if extra else ""
        raise ConfigError(f"config: model.provider {provider!r} cannot be loaded: {e}{hint}") from None
    raise ConfigError(f"config: model.provider {provider!r} is not known")
