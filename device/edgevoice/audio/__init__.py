"""The hardware edge: ALSA capture and playback threads (resampling is `edgevoice.pcm`'s)."""

from edgevoice.audio.capture import Capture, CaptureEnded
from edgevoice.audio.playback import Playback

__all__ = ["Capture", "CaptureEnded", "Playback"]
