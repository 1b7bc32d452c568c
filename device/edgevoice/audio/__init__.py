"""The hardware edge: ALSA capture and playback threads, and resampling to and from 16 kHz."""

from edgevoice.audio.capture import Capture, CaptureEnded
from edgevoice.audio.playback import Playback
from edgevoice.audio.resample import StreamResampler, resample

__all__ = ["Capture", "CaptureEnded", "Playback", "StreamResampler", "resample"]
