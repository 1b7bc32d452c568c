"""Start-up check of the configured ALSA device names: a name nothing defines is a config error.

Only names alsa-lib's configuration does not define at all fail here ("Unknown PCM"): they cannot start
working later, because alsa-lib reads its configuration once per process. A defined device whose card
or file is absent (a USB mic not plugged in yet) passes; capture and playback wait for it.
"""

from __future__ import annotations

from ..config import AudioSettings, ConfigError
from . import alsalib


def check_devices(audio: AudioSettings) -> None:
    """Raise ConfigError naming the key when `audio.capture_device`/`playback_device` is not defined."""
    for key, name, capture in (
        ("audio.capture_device", audio.capture_device, True),
        ("audio.playback_device", audio.playback_device, False),
    ):
        if not alsalib.pcm_defined(name):
            known = ", ".join(alsalib.pcm_names(capture)) or "none"
            raise ConfigError(f"config: {key} {name!r} is not a PCM alsa-lib knows (Unknown PCM); defined: {known}")
