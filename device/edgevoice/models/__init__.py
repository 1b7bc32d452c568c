"""Realtime models: the provider factory. Provider modules load only when chosen (they are heavy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import ConfigError, Settings, read_api_key

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
            from strands.bidi.models.bedrock import BedrockNovaSonicModel

            return BedrockNovaSonicModel(model_id=model_id, region=m.region, voice=m.voice or "matthew")
        if provider == "openai_realtime":
            from strands.bidi.models.openai.realtime import OpenAIRealtimeModel

            key = read_api_key(m, "OPENAI_API_KEY")
            if not key:
                raise ConfigError("config: model.provider 'openai_realtime' needs OPENAI_API_KEY or model.api_key_file")
            return OpenAIRealtimeModel(
                model_id=model_id,
                transcription_model_id=OPENAI_TRANSCRIPTION_MODEL,
                api_key=key,
                voice=m.voice or "alloy",
            )
        if provider == "gemini_live":
            from strands.bidi.models.google import GoogleGeminiLiveModel

            key = read_api_key(m, "GOOGLE_API_KEY")
            if not key:
                raise ConfigError("config: model.provider 'gemini_live' needs GOOGLE_API_KEY or model.api_key_file")
            return GoogleGeminiLiveModel(model_id=model_id, client_args={"api_key": key}, voice=m.voice or None)
    except ImportError as e:
        extra = {"openai_realtime": "openai", "gemini_live": "google"}.get(provider, "")
        hint = f" (install edgevoice[{extra}])" if extra else ""
        raise ConfigError(f"config: model.provider {provider!r} cannot be loaded: {e}{hint}") from None
    raise ConfigError(f"config: model.provider {provider!r} is not known")
